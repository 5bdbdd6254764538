"""Compare the stream's final day windows with the warehouse's ``metrics.kpi_daily``.

The stream judges each window once, live, and drops events later than its
grace period; the warehouse recomputes from every event. On windows whose
events all arrived in time the two agree exactly; every difference is listed.
A window the warehouse has no row for counts as the KPI's empty value (no
facts: a count of 0, a ratio of nothing), which is what the stream sends for
a window whose facts all fell out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import duckdb

from metrics.catalog import CATALOG, evaluate

__all__ = ["Difference", "ReconcileResult", "StreamWindow", "reconcile"]

_EMPTY = {kpi.name: evaluate(kpi.measure, []) for kpi in CATALOG}
Value = tuple[float | None, float | None, float | None]


class StreamWindow(NamedTuple):
    """A final day window from the KPI topic; ``channel_id`` None for a kind roll-up."""

    day: date
    channel_id: str | None
    channel_kind: str
    scope: str
    kpi: str
    value: Value


@dataclass(frozen=True)
class Difference:
    window: StreamWindow
    warehouse: Value | None  # None: no row

    def __str__(self) -> str:
        w = self.window
        who = w.channel_id if w.channel_id is not None else f"{w.channel_kind} ({w.scope})"
        found = "no row" if self.warehouse is None else _show(self.warehouse)
        return f"{w.day} {who} {w.kpi}: stream {_show(w.value)}, warehouse {found}"


@dataclass(frozen=True)
class ReconcileResult:
    compared: int
    differences: list[Difference]
    #: day windows (one per KPI) in the KPI topic that are not final yet, so not compared
    not_final: int = 0


def _show(value: Value) -> str:
    return "(" + ", ".join("null" if v is None else f"{v:g}" for v in value) + ")"


def _same(a: float | None, b: float | None) -> bool:
    """Equal up to float noise: the stream takes times from ISO text, DuckDB from microseconds,
    so response times may differ in their last bits (a 1e-7 s difference on 50 s)."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def reconcile(con: duckdb.DuckDBPyConnection, windows: Iterable[StreamWindow]) -> ReconcileResult:
    rows = con.execute(
        "SELECT day, channel_id, channel_kind, scope, kpi, value, numerator, denominator "
        "FROM metrics.kpi_daily"
    ).fetchall()
    warehouse = {(r[0], r[1], r[2], r[3], r[4]): (r[5], r[6], r[7]) for r in rows}
    compared = 0
    differences = []
    for window in windows:
        compared += 1
        key = (window.day, window.channel_id, window.channel_kind, window.scope, window.kpi)
        found = warehouse.get(key)
        expected = found if found is not None else tuple(_EMPTY[window.kpi])
        if not all(_same(a, b) for a, b in zip(window.value, expected, strict=True)):
            differences.append(Difference(window, found))
    differences.sort(key=lambda d: (d.window.day, d.window.channel_id is None, str(d)))
    return ReconcileResult(compared, differences)
