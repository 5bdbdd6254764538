"""Comparing a stream's final KPI windows with the polars reference (kpi_reference.py).

Used by the 200,000-event acceptance run (test_stream_reference.py) and the broker
restart test (test_faults.py). Channel windows and kind windows can be compared apart:
a kind window's subject is ``'<kind> (<scope>)'``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tests.integration.kpi_reference import Key, Value


def is_kind(key: Key) -> bool:
    """A kind window's subject is '<kind> (<scope>)'; channel ids have no spaces."""
    return " " in key[0]


def channels(values: Mapping[Key, Any]) -> dict[Key, Any]:
    return {key: value for key, value in values.items() if not is_kind(key)}


def kinds(values: Mapping[Key, Any]) -> dict[Key, Any]:
    return {key: value for key, value in values.items() if is_kind(key)}


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@dataclass
class Comparison:
    compared: int = 0
    matched: int = 0
    #: (key, stream value, reference value or None if the reference has no such window)
    differences: list[tuple[Key, Value, Value | None]] = field(default_factory=list)

    def show(self, limit: int = 15) -> str:
        by_kpi = count_kpis({key for key, _, _ in self.differences})
        lines = [f"{len(self.differences)} of {self.compared} final windows differ: {by_kpi}"]
        lines += [
            f"  {key}: stream {got}, reference {want}"
            for key, got, want in self.differences[:limit]
        ]
        return "\n".join(lines)


def compare(stream: Mapping[Key, Value], reference: Mapping[Key, Value]) -> Comparison:
    """Every final window of the stream against the reference."""
    result = Comparison()
    for key, got in sorted(stream.items()):
        result.compared += 1
        want = reference.get(key)
        if want is not None and all(_same(a, b) for a, b in zip(got, want, strict=True)):
            result.matched += 1
        else:
            result.differences.append((key, got, want))
    return result


def count_kpis(keys: Iterable[Key]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key[1]] = counts.get(key[1], 0) + 1
    return dict(sorted(counts.items()))


def keys(frame: pl.DataFrame) -> set[Key]:
    rows = frame.select("subject", "kpi", "granularity", "window_start").iter_rows()
    return {(s, k, g, w) for s, k, g, w in rows}


def reference_values(frame: pl.DataFrame) -> dict[Key, Value]:
    """A reference frame's windows as ``{key: (value, numerator, denominator)}``."""
    rows = frame.select(
        "subject", "kpi", "granularity", "window_start", "value", "numerator", "denominator"
    ).iter_rows()
    return {(s, k, g, w): (v, n, d) for s, k, g, w, v, n, d in rows}


def settled_by_kinds(events: Iterable[Mapping[str, Any]], reference: pl.DataFrame) -> set[Key]:
    """Reference windows whose final time their kind's latest event time has passed.

    Once a worker has caught up with every source partition, their groups are idle and
    each one's watermark is its kind's latest event time (docs/kpis.md, "Late events and
    final windows"), so exactly these windows are final.
    """
    latest: dict[str, float] = {}
    for event in events:
        t = event["occurred_at"].timestamp()
        kind = event["channel_kind"]
        latest[kind] = max(t, latest.get(kind, t))
    marks = pl.DataFrame({"channel_kind": list(latest), "watermark": list(latest.values())})
    ready = reference.join(marks, on="channel_kind").filter(
        pl.col("watermark") >= pl.col("final_at")
    )
    return keys(ready)
