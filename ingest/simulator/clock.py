"""Business hours of the simulated organisation, as arithmetic on epoch seconds.

The simulator works in float POSIX seconds (UTC) throughout; this module knows
the organisation's time zone, its working periods (default 09:00–12:00 and
13:30–18:00, Monday to Friday) and its fixed-date public holidays, and answers
three questions fast: when does work next happen, what is a time plus so many
*working* seconds, and how busy is an hour of the day likely to be.

All periods of the simulated span (plus a horizon after its end) are laid out
once as sorted lists, so every question is one or two bisections. Times past
the horizon have no working time at all (:data:`math.inf`); the simulator
drops events after its end anyway.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from math import inf
from typing import Final
from zoneinfo import ZoneInfo

__all__ = ["DEFAULT_HOLIDAYS", "DEFAULT_PERIODS", "BusinessClock"]

#: A normal working day's periods, local wall-clock time.
DEFAULT_PERIODS: Final[tuple[tuple[time, time], ...]] = (
    (time(9), time(12)),
    (time(13, 30), time(18)),
)

#: Public holidays as (month, day): New Year, Labour Day, National Day week.
#: Moveable feasts (Spring Festival, Dragon Boat, Mid-Autumn) are left out:
#: they only shape the simulated traffic, not any KPI.
DEFAULT_HOLIDAYS: Final[frozenset[tuple[int, int]]] = frozenset(
    {(1, 1), (5, 1), (5, 2), (5, 3)} | {(10, day) for day in range(1, 8)}
)

# How busy the non-working time of an hour is, relative to working time.
_LUNCH: Final = 0.5
_FRINGE: Final = 0.3  # a working day's early morning and evening
_DAYTIME_OFF: Final = 0.3  # a weekend's or holiday's daytime
_NIGHT: Final = 0.05


class BusinessClock:
    """Working periods of one organisation between two local dates (inclusive)."""

    def __init__(
        self,
        zone: ZoneInfo,
        first: date,
        last: date,
        *,
        periods: Sequence[tuple[time, time]] = DEFAULT_PERIODS,
        holidays: frozenset[tuple[int, int]] = DEFAULT_HOLIDAYS,
    ) -> None:
        self.zone = zone
        self._holidays = holidays
        self._day_start = (
            min(start.hour + start.minute / 60 for start, _ in periods) if periods else 9.0
        )
        self._day_end = max(end.hour + end.minute / 60 for _, end in periods) if periods else 18.0
        starts: list[float] = []
        ends: list[float] = []
        day = first
        while day <= last:
            if self.is_working_day(day):
                for begin, finish in periods:
                    starts.append(datetime.combine(day, begin, zone).timestamp())
                    ends.append(datetime.combine(day, finish, zone).timestamp())
            day += timedelta(days=1)
        # before[i]: working seconds from the table's start to the start of period i
        before: list[float] = []
        through: list[float] = []
        total = 0.0
        for start, end in zip(starts, ends, strict=True):
            before.append(total)
            total += end - start
            through.append(total)
        self._starts = starts
        self._ends = ends
        self._before = before
        self._through = through
        self._total = total

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and (day.month, day.day) not in self._holidays

    def next_working(self, ts: float) -> float:
        """``ts`` if it is working time, else the start of the next working period."""
        i = bisect_right(self._ends, ts)
        if i == len(self._starts):
            return inf
        start = self._starts[i]
        if start > ts:
            return start
        return ts

    def position(self, ts: float) -> float:
        """Working seconds between the table's start and ``ts``."""
        i = bisect_right(self._ends, ts)
        if i == len(self._starts):
            return self._total
        start = self._starts[i]
        return self._before[i] + (ts - start if ts > start else 0.0)

    def add_working(self, ts: float, seconds: float) -> float:
        """The time ``seconds`` (> 0) of working time after ``ts``; ``inf`` past the table."""
        target = self.position(ts) + seconds
        j = bisect_right(self._through, target)
        if j == len(self._starts):
            return inf
        return self._starts[j] + (target - self._before[j])

    def working_fraction(self, start: float, end: float) -> float:
        """Share of ``[start, end)`` that is working time."""
        return (self.position(end) - self.position(start)) / (end - start)

    def off_hours_level(self, ts: float) -> float:
        """How busy non-working time around ``ts`` is, relative to working time (0–1)."""
        local = datetime.fromtimestamp(ts, UTC).astimezone(self.zone)
        hour = local.hour + local.minute / 60
        if self.is_working_day(local.date()):
            if self._day_start <= hour < self._day_end:
                return _LUNCH
            if self._day_start - 2 <= hour < self._day_start or self._day_end <= hour < 22:
                return _FRINGE
            return _NIGHT
        if self._day_start <= hour < 22:
            return _DAYTIME_OFF
        return _NIGHT
