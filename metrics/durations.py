"""Durations in calendar or business time, as written in settings and the channel catalog.

Text form: a number, a unit, and optionally ``business``::

    "60s"  "3min"  "2h"  "24h"  "7d"          calendar time
    "2h business"  "3d business"              business time; a business day is
                                              one normal working day of the calendar

A :class:`Duration` turns into seconds only against a calendar
(:meth:`Duration.end`), because a business day's length is the calendar's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from metrics.calendar import BusinessCalendar

__all__ = ["Clock", "Duration", "parse_duration"]

Clock = Literal["calendar", "business"]

_UNITS: Final = {
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_PATTERN: Final = re.compile(
    r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>s|sec|min|m|h|d|days?)\s*(?P<business>business)?\s*$"
)


@dataclass(frozen=True, slots=True)
class Duration:
    """``amount`` of ``unit`` seconds on a ``clock``; days of business time are working days."""

    amount: float
    unit_s: float
    clock: Clock = "calendar"

    @property
    def calendar_seconds(self) -> float:
        """Length in calendar seconds (for calendar durations only)."""
        if self.clock != "calendar":
            raise ValueError("a business duration has no fixed length in calendar seconds")
        return self.amount * self.unit_s

    def business_seconds(self, calendar: BusinessCalendar) -> float:
        """Length in business seconds on ``calendar`` (days count as working days)."""
        if self.unit_s == 86400.0:
            return self.amount * calendar.day_seconds
        return self.amount * self.unit_s

    def end(self, start: float, calendar: BusinessCalendar) -> float:
        """When this duration, started at epoch second ``start``, ends."""
        if self.clock == "calendar":
            return start + self.amount * self.unit_s
        return calendar.add_business_seconds(start, self.business_seconds(calendar))

    def elapsed(self, start: float, end: float, calendar: BusinessCalendar) -> float:
        """Seconds between ``start`` and ``end`` on this duration's clock."""
        if self.clock == "calendar":
            return end - start
        return calendar.business_seconds_between(start, end)

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}[self.unit_s]
        amount = f"{self.amount:g}"
        return f"{amount}{unit}" + (" business" if self.clock == "business" else "")


def parse_duration(text: str) -> Duration:
    """``"2h business"`` → ``Duration(2, 3600, "business")``; clear ``ValueError`` otherwise."""
    match = _PATTERN.match(text.lower())
    if not match:
        raise ValueError(
            f"not a duration: {text!r} (write e.g. '60s', '3min', '2h', '7d', '2h business', '3d business')"
        )
    clock: Clock = "business" if match["business"] else "calendar"
    return Duration(float(match["number"]), _UNITS[match["unit"]], clock)
