"""Parquet files whose columns are event fields; streamed in row slices with polars."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Final, Literal

import polars as pl

from ingest.errors import InputError
from ingest.importers.base import SourceFile, check_columns
from ingest.producer import Record

__all__ = ["ParquetFile"]

_SLICE_ROWS: Final = 10_000


class ParquetFile(SourceFile):
    """Rows are read ``_SLICE_ROWS`` at a time (only the row groups needed); nulls are missing values."""

    unit: ClassVar[Literal["bytes", "rows"]] = "rows"

    def open(self) -> None:
        try:
            frame = pl.scan_parquet(self.path)
            columns = frame.collect_schema().names()
            self.total = int(frame.select(pl.len()).collect().item())
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{self.path}: not a readable Parquet file: {exc}") from exc
        check_columns(self.path, columns)

    def records(self) -> Iterator[Record]:
        name = self.path.name
        frame = pl.scan_parquet(self.path)
        for offset in range(0, self.total, _SLICE_ROWS):
            try:
                rows = frame.slice(offset, _SLICE_ROWS).collect()
            except (OSError, pl.exceptions.PolarsError) as exc:
                raise InputError(f"{self.path}: unreadable from row {offset + 1}: {exc}") from exc
            for number, row in enumerate(rows.iter_rows(named=True), start=offset + 1):
                self.done = number
                data = {key: value for key, value in row.items() if value is not None}
                yield Record(data, f"{name}:row {number}")
