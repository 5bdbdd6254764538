"""File importers: canonical events from JSONL, CSV and Parquet files.

Importers of foreign formats map their input onto canonical events and live
beside these: :class:`MboxArchive` (mailbox archives) and :class:`GhArchive`
(GH Archive hourly files); docs/importers.md describes their mappings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from ingest.errors import InputError
from ingest.importers.base import EVENT_FIELDS, SourceFile
from ingest.importers.csvfile import CsvFile
from ingest.importers.foreign import Problem
from ingest.importers.gharchive import GhArchive, GhArchiveStats
from ingest.importers.jsonl import JsonLinesFile
from ingest.importers.mbox import MboxArchive, MboxStats
from ingest.importers.parquet import ParquetFile

__all__ = [
    "EVENT_FIELDS",
    "FORMATS",
    "CsvFile",
    "FileFormat",
    "GhArchive",
    "GhArchiveStats",
    "JsonLinesFile",
    "MboxArchive",
    "MboxStats",
    "ParquetFile",
    "Problem",
    "SourceFile",
    "open_file",
]

FileFormat = Literal["jsonl", "csv", "parquet"]
FORMATS: Final[dict[str, type[SourceFile]]] = {
    "jsonl": JsonLinesFile,
    "csv": CsvFile,
    "parquet": ParquetFile,
}
_SUFFIXES: Final[dict[str, FileFormat]] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}  # fmt: skip


def detect_format(path: Path) -> FileFormat:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise InputError(
        f"{path}: cannot tell the format from the name; use --format jsonl|csv|parquet"
    )


def open_file(path: Path, fmt: FileFormat | None = None) -> SourceFile:
    """A checked, ready-to-read source for ``path`` (format from the suffix unless given)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    reader = FORMATS[fmt or detect_format(path)]
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty: there is nothing to ingest")
    source = reader(path)
    source.open()
    return source
