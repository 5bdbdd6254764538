"""Event-time windows: hours and days in the reporting time zone.

Day windows run from local midnight to local midnight in
``metrics.timezone`` (UTC by default); hour windows are local clock hours.
Days are identified by their date ordinal, hours by their start.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

__all__ = ["Granularity", "Window", "WindowClock"]

Granularity = Literal["hour", "day"]
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


class Window(NamedTuple):
    granularity: Granularity
    start: float
    end: float


class WindowClock:
    """Maps epoch seconds to hour and day windows of one time zone (cached, fast for UTC)."""

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self._zone = ZoneInfo(timezone)
        self._utc = timezone in {"UTC", "Etc/UTC"}
        self._offset = lru_cache(maxsize=65_536)(self._offset_of_utc_hour)
        self._bounds = lru_cache(maxsize=65_536)(self._day_bounds)

    def day(self, t: float) -> int:
        """The local date ordinal of epoch second ``t``."""
        if self._utc:
            return int(t // 86400) + _EPOCH_ORDINAL
        return int((t + self._offset(int(t // 3600))) // 86400) + _EPOCH_ORDINAL

    def day_window(self, day: int) -> Window:
        start, end = self._bounds(day)
        return Window("day", start, end)

    def hour_window(self, t: float) -> Window:
        if self._utc:
            start = t - t % 3600
        else:
            offset = self._offset(int(t // 3600))
            start = (t + offset) - (t + offset) % 3600 - offset
        return Window("hour", start, start + 3600)

    def windows(self, t: float) -> tuple[Window, Window]:
        """The hour and the day window holding ``t``."""
        return self.hour_window(t), self.day_window(self.day(t))

    def hours_of(self, day: int) -> list[Window]:
        start, end = self._bounds(day)
        hours, t = [], start
        while t < end:
            hour = self.hour_window(t)
            hours.append(hour)
            t = hour.end
        return hours

    def label(self, day: int) -> str:
        return date.fromordinal(day).isoformat()

    def _offset_of_utc_hour(self, utc_hour: int) -> float:
        offset = datetime.fromtimestamp(utc_hour * 3600, UTC).astimezone(self._zone).utcoffset()
        return offset.total_seconds() if offset else 0.0

    def _day_bounds(self, day: int) -> tuple[float, float]:
        local = date.fromordinal(day)
        start = datetime.combine(local, time(0), self._zone)
        end = datetime.combine(local + timedelta(days=1), time(0), self._zone)
        return start.timestamp(), end.timestamp()
