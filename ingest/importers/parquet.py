"""Parquet files whose columns are event fields; streamed in row batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

import pyarrow.parquet as pq

from ingest.errors import InputError
from ingest.importers.base import SourceFile, check_columns
from ingest.producer import Record

__all__ = ["ParquetFile"]

_BATCH_ROWS = 10_000


class ParquetFile(SourceFile):
    """Rows are read in batches (pyarrow's streaming reader); nulls are missing values."""

    unit: ClassVar[Literal["bytes", "rows"]] = "rows"

    def open(self) -> None:
        try:
            metadata = pq.read_metadata(self.path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: not a readable Parquet file: {exc}") from exc
        self.total = metadata.num_rows
        check_columns(self.path, list(metadata.schema.to_arrow_schema().names))

    def records(self) -> Iterator[Record]:
        name = self.path.name
        try:
            reader = pq.ParquetFile(self.path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: not a readable Parquet file: {exc}") from exc
        with reader:
            row_number = 0
            for batch in reader.iter_batches(batch_size=_BATCH_ROWS):
                for row in batch.to_pylist():
                    row_number += 1
                    self.done = row_number
                    data = {key: value for key, value in row.items() if value is not None}
                    yield Record(data, f"{name}:row {row_number}")
