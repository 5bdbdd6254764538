"""JSON Lines (``.jsonl``, ``.ndjson``, optionally gzip-compressed): one event per line."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import IO, BinaryIO

from ingest.errors import InputError
from ingest.importers.base import SourceFile, unreadable
from ingest.producer import Record
from ingest.validation import RejectCode

__all__ = ["JsonLinesFile"]


class JsonLinesFile(SourceFile):
    """Streams lines; blank lines are skipped, every other line is one input."""

    def open(self) -> None:
        self.total = self._size()
        try:
            with self._open_raw() as raw:
                if self.path.suffix == ".gz":
                    gzip.GzipFile(fileobj=raw).read(1)
        except (OSError, EOFError) as exc:
            raise InputError(f"{self.path}: cannot read: {exc}") from exc

    def _open_raw(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise InputError(f"{self.path}: {exc.strerror or exc}") from exc

    def records(self) -> Iterator[Record]:
        name = self.path.name
        with self._open_raw() as raw:
            lines: IO[bytes] | gzip.GzipFile = (
                gzip.GzipFile(fileobj=raw) if self.path.suffix == ".gz" else raw
            )
            number = 0
            try:
                for number, line in enumerate(lines, start=1):
                    self.done = raw.tell()
                    line = line.rstrip(b"\r\n")
                    if line.strip():
                        yield Record(line, f"{name}:{number}")
            except (OSError, EOFError) as exc:  # a cut or corrupt .gz: what was read is sent
                yield Record(
                    unreadable(RejectCode.MALFORMED_JSON, exc), f"{name}:{number + 1}", b""
                )
        self.done = self.total
