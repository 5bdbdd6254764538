"""Readers never wait for the writer: while a sink holds the warehouse, read its snapshot.

DuckDB lets one process write a file or many read it, and a running sink (alone or under
``up``) writes the warehouse for as long as it runs. ``sql``, ``report``, ``quality`` and
``reconcile`` used to stop with ``Conflicting lock``; now they look first, and when the
warehouse is held they read the BI snapshot the sink republishes (:mod:`metrics.snapshot`:
``core`` and ``metrics``, the same contents as ``commpulse publish``), and say so in one
line on stderr with the snapshot's age.

Freshness: a running sink republishes the snapshot after a build at most every
``warehouse.build_interval_s`` (60 s by default), and after the last build of a run. So
what a reader sees is at most ``build_interval_s``, plus the time of one build and one
publish, behind what the sink has loaded. ``raw`` and ``ops`` are not in the snapshot:
what needs them (the events suite, a query on ``raw.events``) waits for the sink to stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from commpulse.settings import Settings
from warehouse.schema import WarehouseError, lock_conflict, open_warehouse

__all__ = ["ReadFrom", "held_by", "open_for_reading", "read_from"]


@dataclass(frozen=True, slots=True)
class ReadFrom:
    """The file a reader opens: the warehouse, or the snapshot while a sink holds it."""

    path: Path
    snapshot: bool
    #: one line for stderr when it is the snapshot
    note: str | None = None


def held_by(path: Path) -> str | None:
    """Who holds ``path`` for writing (``PID 123``, or "another process"), or None when a
    reader may open it (or it does not exist)."""
    if not path.exists():
        return None
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as exc:
        conflict = lock_conflict(exc)  # not a lock: the reader's own open says what is wrong
        return conflict.holder if conflict else None
    return None


def read_from(settings: Settings) -> ReadFrom:
    """Where to read the warehouse's ``core`` and ``metrics`` now (see the module)."""
    path = settings.warehouse_path
    holder = held_by(path)
    if holder is None:
        return ReadFrom(path, snapshot=False)
    serving = settings.serving_path
    if not serving.exists():
        raise WarehouseError(
            f"the warehouse {path} is held by a running sink ({holder}) and it has not "
            f"published a snapshot at {serving} yet: try again after its first build"
        )
    published, as_of = _published(serving)
    return ReadFrom(
        serving,
        snapshot=True,
        note=(
            f"the warehouse is held by a running sink ({holder}): reading its snapshot "
            f"{serving}, published {published}, events to {as_of}"
        ),
    )


def open_for_reading(
    settings: Settings, note: Callable[[str], None] = lambda _: None
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse, or to its snapshot while a running sink
    holds it (``note`` gets the line that says so)."""
    source = read_from(settings)
    if not source.snapshot:
        return open_warehouse(source.path, read_only=True)
    if source.note:
        note(source.note)
    try:
        return duckdb.connect(str(source.path), read_only=True)
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open the snapshot {source.path}: {exc}") from exc


def _published(serving: Path) -> tuple[str, str]:
    try:
        con = duckdb.connect(str(serving), read_only=True)
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open the snapshot {serving}: {exc}") from exc
    try:
        row = con.execute("SELECT published_at, data_as_of FROM meta.snapshot").fetchone()
    except duckdb.Error:
        row = None
    finally:
        con.close()
    if row is None:
        return "at an unknown time", "an unknown time"
    return _when(row[0]), _when(row[1])


def _when(moment: datetime | None) -> str:
    return "an unknown time" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S %Z}".strip()
