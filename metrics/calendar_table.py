"""Business time as a table: every working period with the business seconds before it.

SQL cannot call :class:`metrics.calendar.BusinessCalendar`, so the warehouse
gets the same calendar as rows: for each calendar and each local date of a
range, the date's working periods as UTC epoch seconds ``[start_s, end_s)``
(from :meth:`BusinessCalendar.working_intervals`, so holidays, make-up days,
several periods a day and time-zone changes are exactly the calendar's), in
order, with ``before_s`` and ``after_s``: the business seconds from the start
of the range to the period's start and end. Then

* the business seconds up to an instant ``x`` are ``before_s + max(0, x - start_s)``
  of the first period that ends after ``x`` (an ASOF join), so business time
  between two instants is the difference of two lookups;
* ``N`` business seconds after ``x`` end in the first period whose ``after_s`` reaches
  the lookup of ``x`` plus ``N`` (another ASOF join), at the same place
  :meth:`BusinessCalendar.add_business_seconds` finds.

The functions here only make the rows and the SQL text; :mod:`warehouse` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

import polars as pl

from metrics.calendar import BusinessCalendar

__all__ = [
    "EPS",
    "PERIOD_SCHEMA",
    "PeriodRange",
    "add_business",
    "business_at",
    "period_after",
    "period_reaching",
    "working_periods",
]

#: Float slack, in seconds, where a target is used up at a period's end (as the calendar's).
EPS: Final = 1e-6

PERIOD_SCHEMA: Final = {
    "calendar": pl.String,
    "start_s": pl.Float64,
    "end_s": pl.Float64,
    "before_s": pl.Float64,
    "after_s": pl.Float64,
}


@dataclass(frozen=True)
class PeriodRange:
    """The local dates a periods table covers, both ends included."""

    first: date
    last: date

    def covers(self, other: PeriodRange) -> bool:
        return self.first <= other.first and other.last <= self.last


def working_periods(calendars: Mapping[str, BusinessCalendar], span: PeriodRange) -> pl.DataFrame:
    """Every working period of every calendar over ``span``, with business seconds before/after."""
    names: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    before: list[float] = []
    after: list[float] = []
    days = (span.last - span.first).days + 1
    for name, calendar in sorted(calendars.items()):
        total = 0.0
        for offset in range(days):
            for start, end in calendar.working_intervals(span.first + timedelta(days=offset)):
                names.append(name)
                starts.append(start)
                ends.append(end)
                before.append(total)
                total += end - start
                after.append(total)
    return pl.DataFrame(
        {"calendar": names, "start_s": starts, "end_s": ends, "before_s": before, "after_s": after},
        schema=PERIOD_SCHEMA,
    )


def period_after(periods: str, calendar: str, instant: str, alias: str) -> str:
    """``ASOF LEFT JOIN`` naming ``alias`` the first period of ``calendar`` that ends after ``instant``."""
    return (
        f"ASOF LEFT JOIN {periods} {alias} "
        f"ON {alias}.calendar = {calendar} AND {instant} < {alias}.end_s"
    )


def business_at(instant: str, alias: str) -> str:
    """Business seconds from the table's start up to ``instant``, ``alias`` joined by
    :func:`period_after` on that instant."""
    return f"({alias}.before_s + greatest(0.0, {instant} - {alias}.start_s))"


def period_reaching(periods: str, calendar: str, target: str, alias: str) -> str:
    """``ASOF LEFT JOIN`` naming ``alias`` the period in which ``target`` business seconds
    (counted from the table's start) are reached."""
    return (
        f"ASOF LEFT JOIN {periods} {alias} "
        f"ON {alias}.calendar = {calendar} AND {target} - {EPS!r} <= {alias}.after_s"
    )


def add_business(start: str, seconds: str, first: str, reaching: str) -> str:
    """SQL for :meth:`BusinessCalendar.add_business_seconds` (``start`` plus ``seconds`` of
    business time): ``first`` is the period after ``start`` (:func:`period_after`),
    ``reaching`` the one that reaches ``business_at(start) + seconds`` (:func:`period_reaching`).

    As the calendar does, a target the start's own period can hold ends at
    ``max(period start, start) + seconds`` (so both round alike), and a target used
    up at a period's end ends there. NULL when the table does not reach that far.
    """
    inside = f"greatest({first}.start_s, {start})"
    return f"""CASE WHEN {seconds} = 0 THEN {start}
     WHEN {seconds} <= {first}.end_s - {inside} + {EPS!r} THEN least({inside} + {seconds}, {first}.end_s)
     ELSE least({reaching}.start_s + (({business_at(start, first)} + {seconds}) - {reaching}.before_s),
                {reaching}.end_s) END"""
