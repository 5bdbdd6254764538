"""What every file importer provides: records to ingest, and how far it got."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

from ingest.errors import InputError
from ingest.events import Event
from ingest.producer import Record
from ingest.validation import RejectCode, Rejection

__all__ = ["EVENT_FIELDS", "SourceFile", "check_columns", "unreadable"]

#: Field names a tabular file (CSV, Parquet) may use as columns.
EVENT_FIELDS = tuple(Event.model_fields)
_REQUIRED_COLUMNS = tuple(name for name, info in Event.model_fields.items() if info.is_required())


class SourceFile(ABC):
    """A file being read. ``records()`` yields; ``done`` of ``total`` tells how far.

    Constructing one does no I/O; :meth:`open` checks that the file can be read
    (and its columns, for tabular files) before anything is sent.
    """

    unit: ClassVar[Literal["bytes", "rows"]] = "bytes"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = 0
        self.total = 0

    @property
    def label(self) -> str:
        return self.path.name

    @abstractmethod
    def open(self) -> None:
        """Check the file and learn ``total``; raise :class:`InputError` if unusable."""

    @abstractmethod
    def records(self) -> Iterator[Record]:
        """Every input item of the file, bad ones included (as rejections)."""

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError as exc:
            raise InputError(f"{self.path}: {exc.strerror or exc}") from exc


def check_columns(path: Path, columns: list[str]) -> None:
    """Fail early, before anything is sent, when a file's columns cannot work."""
    unknown = [name for name in columns if name not in EVENT_FIELDS]
    if unknown:
        raise InputError(
            f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"columns must be event fields: {', '.join(EVENT_FIELDS)}"
        )
    missing = [name for name in _REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(map(repr, missing))}")


def unreadable(code: RejectCode, error: BaseException) -> Rejection:
    """The input a file breaks off in (a cut or corrupt .gz): the rest cannot be read."""
    return Rejection(code, f"the file ends unreadably here: {error}")
