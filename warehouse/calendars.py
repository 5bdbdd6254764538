"""The calendar tables of a build: ``core.working_periods`` and ``core.calendar``.

Both come from the channel catalog's calendars, per day, never per event:

* ``core.working_periods`` (see :mod:`metrics.calendar_table`) covers the
  events' days and :data:`AHEAD_DAYS` after the latest, so that every
  deadline, reopen window and idle time is a lookup. It is made again only
  when the events leave the range it covers (a year after it was made, or an
  event older than its start).
* ``core.calendar`` has a row per calendar and day, from the day before the
  first event to the day after the build's "as of" time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

import duckdb
import polars as pl

from metrics.calendar_table import PeriodRange, working_periods
from metrics.channels import ChannelCatalog

__all__ = ["AHEAD_DAYS", "refresh_calendar_days", "refresh_periods"]

#: How far past the latest event the working periods reach (deadlines, reopen windows).
AHEAD_DAYS: Final = 400
#: The periods are made again once the latest event is less than this far from their end.
_MARGIN_DAYS: Final = 34


def _utc_day(epoch_s: float) -> date:
    return datetime.fromtimestamp(epoch_s, UTC).date()


def refresh_periods(
    con: duckdb.DuckDBPyConnection,
    catalog: ChannelCatalog,
    first_s: float,
    last_s: float,
    covered: PeriodRange | None,
) -> PeriodRange:
    """Make sure ``core.working_periods`` covers instants ``first_s`` … ``last_s`` (epoch
    seconds) with room ahead; returns the range it covers."""
    first = _utc_day(first_s) - timedelta(days=2)  # a local date may start a day earlier
    needed = PeriodRange(first, _utc_day(last_s) + timedelta(days=AHEAD_DAYS - _MARGIN_DAYS))
    if covered is not None and covered.covers(needed):
        return covered
    span = PeriodRange(first, _utc_day(last_s) + timedelta(days=AHEAD_DAYS))
    frame = working_periods(catalog.calendars, span)
    con.execute("DELETE FROM core.working_periods")
    con.register("_cp_periods", frame)
    try:
        con.execute(
            "INSERT INTO core.working_periods SELECT calendar, to_timestamp(start_s), "
            "to_timestamp(end_s), start_s, end_s, before_s, after_s FROM _cp_periods "
            "ORDER BY calendar, start_s"
        )
    finally:
        con.unregister("_cp_periods")
    return span


def refresh_calendar_days(
    con: duckdb.DuckDBPyConnection,
    catalog: ChannelCatalog,
    first_s: float | None,
    as_of: float,
    *,
    full: bool,
) -> None:
    """``core.calendar``: every day of every calendar from the day before the first event to
    the day after ``as_of``; rewritten by a full build, or when that range changed."""
    if first_s is None:
        con.execute("DELETE FROM core.calendar")
        return
    first = _utc_day(first_s) - timedelta(days=1)
    last = _utc_day(as_of) + timedelta(days=1)
    found = con.execute(
        "SELECT min(day), max(day), count(DISTINCT calendar) FROM core.calendar"
    ).fetchone()
    if not full and found == (first, last, len(catalog.calendars)):
        return
    rows = []
    for name, calendar in catalog.calendars.items():
        day = first
        while day <= last:
            seconds = sum(end - start for start, end in calendar.working_intervals(day))
            rows.append(
                {
                    "day": day,
                    "calendar": name,
                    "timezone": calendar.timezone,
                    "workday": calendar.is_working_day(day),
                    "holiday": day in calendar.holidays,
                    "makeup_day": day in calendar.makeup_days,
                    "business_s": float(seconds),
                    "quarter": f"{day.year}Q{(day.month - 1) // 3 + 1}",
                }
            )
            day += timedelta(days=1)
    con.execute("DELETE FROM core.calendar")
    con.register("_cp_calendar_days", pl.DataFrame(rows))
    try:
        con.execute("INSERT INTO core.calendar SELECT * FROM _cp_calendar_days")
    finally:
        con.unregister("_cp_calendar_days")
