"""Writing canonical event files, in the formats the file importers read.

JSONL (optionally ``.gz``), CSV (optionally ``.gz``) and Parquet, chosen by
the file name. Items are raw event mappings as the simulator yields them.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson
import polars as pl
import pyarrow.parquet as pq

from ingest.errors import InputError
from ingest.importers import detect_format
from ingest.importers.base import EVENT_FIELDS

__all__ = ["PARQUET_SCHEMA", "write_events"]

_CHUNK: Final = 50_000
_JSON_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE

#: Column types of a canonical events Parquet file.
PARQUET_SCHEMA: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    **dict.fromkeys(EVENT_FIELDS, pl.String),
    "schema_version": pl.Int16,
    "occurred_at": pl.Datetime("us", "UTC"),
    "recipient_count": pl.Int64,
    "duration_s": pl.Float64,
    "planned_duration_s": pl.Float64,
    "score": pl.Int8,
}


def write_events(
    events: Iterable[Mapping[str, Any]],
    path: Path | None,
    *,
    on_written: Callable[[int], None] | None = None,
) -> int:
    """Write ``events`` to ``path`` (JSONL on stdout when ``None``); returns how many."""
    fmt = "jsonl" if path is None else detect_format(path)
    try:
        with ExitStack() as stack:
            if fmt == "parquet":
                assert path is not None
                return _write_parquet(events, path, on_written)
            binary: IO[bytes] | gzip.GzipFile
            if path is None:
                binary = sys.stdout.buffer
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                binary = stack.enter_context(path.open("wb"))
                if path.suffix == ".gz":
                    compressed = gzip.GzipFile(fileobj=binary, mode="wb")
                    stack.callback(compressed.close)
                    binary = compressed
            if fmt == "csv":
                text = stack.enter_context(io.TextIOWrapper(binary, encoding="utf-8", newline=""))
                return _write_csv(events, text, on_written)
            return _write_jsonl(events, binary, on_written)
    except OSError as exc:
        raise InputError(f"cannot write {path or 'stdout'}: {exc.strerror or exc}") from exc


def _write_jsonl(
    events: Iterable[Mapping[str, Any]],
    out: IO[bytes] | gzip.GzipFile,
    on_written: Callable[[int], None] | None,
) -> int:
    count = 0
    buffer: list[bytes] = []
    for event in events:
        buffer.append(orjson.dumps(event, option=_JSON_OPTIONS))
        count += 1
        if len(buffer) == _CHUNK:
            out.write(b"".join(buffer))
            buffer.clear()
            if on_written:
                on_written(count)
    out.write(b"".join(buffer))
    if on_written:
        on_written(count)
    return count


def _write_csv(
    events: Iterable[Mapping[str, Any]], out: IO[str], on_written: Callable[[int], None] | None
) -> int:
    writer = csv.DictWriter(out, fieldnames=EVENT_FIELDS, extrasaction="raise")
    writer.writeheader()
    count = 0
    for event in events:
        writer.writerow({key: _text(value) for key, value in event.items()})
        count += 1
        if on_written and count % _CHUNK == 0:
            on_written(count)
    if on_written:
        on_written(count)
    return count


def _text(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _write_parquet(
    events: Iterable[Mapping[str, Any]], path: Path, on_written: Callable[[int], None] | None
) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    writer: pq.ParquetWriter | None = None
    chunk: list[Mapping[str, Any]] = []
    try:
        for event in events:
            chunk.append(event)
            if len(chunk) == _CHUNK:
                writer = _flush_parquet(chunk, path, writer)
                count += len(chunk)
                chunk = []
                if on_written:
                    on_written(count)
        if chunk or writer is None:
            writer = _flush_parquet(chunk, path, writer)
            count += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    if on_written:
        on_written(count)
    return count


def _flush_parquet(
    chunk: list[Mapping[str, Any]], path: Path, writer: pq.ParquetWriter | None
) -> pq.ParquetWriter:
    table = pl.DataFrame(chunk, schema=PARQUET_SCHEMA).to_arrow()
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    return writer
