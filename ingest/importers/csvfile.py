"""CSV with a header row of event field names; one event per row.

Parsed row by row with the standard library rather than polars: polars fails a
whole file on one ragged or badly quoted row and cannot hand back a row's raw
text, and a bad row must go to the dead-letter topic on its own, byte for
byte, while the rest of the file is ingested. Empty cells are missing values.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TextIO

from ingest.errors import InputError
from ingest.importers.base import SourceFile, check_columns, unreadable
from ingest.producer import Record
from ingest.validation import RejectCode, Rejection

__all__ = ["CsvFile"]


class CsvFile(SourceFile):
    def open(self) -> None:
        self.total = self._size()
        with self._open_text() as text:
            try:
                header = next(csv.reader(text), None)
            except (csv.Error, OSError, EOFError) as exc:
                raise InputError(f"{self.path}: cannot read the header: {exc}") from exc
        if header is None:
            raise InputError(f"{self.path}: empty file, expected a header row")
        check_columns(self.path, [name.strip() for name in header])

    @contextmanager
    def _open_text(self) -> Iterator[TextIO]:
        try:
            raw = self.path.open("rb")
        except OSError as exc:
            raise InputError(f"{self.path}: {exc.strerror or exc}") from exc
        with raw:
            self._raw = raw
            binary: IO[bytes] | gzip.GzipFile = (
                gzip.GzipFile(fileobj=raw) if self.path.suffix == ".gz" else raw
            )
            # surrogateescape keeps undecodable bytes, so a bad row goes to the
            # dead-letter topic exactly as it was.
            with io.TextIOWrapper(
                binary, encoding="utf-8", errors="surrogateescape", newline=""
            ) as text:
                yield text

    def records(self) -> Iterator[Record]:
        name = self.path.name
        with self._open_text() as text:
            consumed: list[str] = []

            def lines() -> Iterator[str]:
                for line in text:
                    consumed.append(line)
                    yield line

            feed = lines()
            reader = csv.reader(feed, strict=False)
            header = [column.strip() for column in next(reader)]
            start = 1 + len(consumed)  # the line the next record starts on
            consumed.clear()
            width = len(header)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except (OSError, EOFError) as exc:  # a cut or corrupt .gz: what was read is sent
                    yield Record(unreadable(RejectCode.MALFORMED_ROW, exc), f"{name}:{start}", b"")
                    break
                except csv.Error as exc:
                    if not consumed:
                        raise InputError(
                            f"{self.path}: unreadable after line {start}: {exc}"
                        ) from exc
                    row, error = None, str(exc)
                    # Refused inside a quoted cell (one over the field limit): the rest of
                    # the cell belongs to this record, not to new ones.
                    while "".join(consumed).count('"') % 2 and next(feed, None) is not None:
                        pass
                raw_text = "".join(consumed)
                source = f"{name}:{start}"
                start += len(consumed)
                consumed.clear()
                self.done = self._raw.tell()
                raw = raw_text.rstrip("\r\n").encode("utf-8", "surrogateescape")
                if row is None:
                    yield Record(Rejection(RejectCode.MALFORMED_ROW, error), source, raw)
                elif not any(cell.strip() for cell in row):
                    continue
                elif len(row) != width:
                    reason = f"row has {len(row)} fields, the header has {width}"
                    yield Record(Rejection(RejectCode.MALFORMED_ROW, reason), source, raw)
                elif _has_surrogates(raw_text):
                    reason = "row is not valid UTF-8"
                    yield Record(Rejection(RejectCode.INVALID_ENCODING, reason), source, raw)
                else:
                    data = {
                        key: value for key, value in zip(header, row, strict=True) if value != ""
                    }
                    yield Record(data, source, raw)
        self.done = self.total


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
