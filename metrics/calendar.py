"""Business calendars: which instants count as working time for a channel.

A :class:`BusinessCalendar` has a time zone, the working periods of a normal day
(local wall-clock times, several per day), working weekdays, holidays and make-up
days. Business time counts only seconds inside the periods: a holiday has none,
even on a weekday; a make-up day has its stated periods, or a normal day's when it
states none (on a weekday, a make-up entry replaces that day's periods).

* Hot-path instants are POSIX epoch seconds (floats); the ``datetime`` methods
  take tz-aware values and return UTC. Intervals are half-open ``[start, end)``;
  an end of ``time.max`` (``24:00`` in :func:`parse_period`) means midnight, so
  ``00:00-24:00`` is a whole day and consecutive days join without a gap.
* Deadlines land on the earliest instant: a target used up exactly at a period's
  end returns that end; a clock started off hours starts at the next period.
* DST: periods become real instants through zoneinfo, so a period spanning a jump
  is an hour shorter or longer (09:00-17:00 stays 8 real hours on change days).
  An ambiguous wall time (the repeated autumn hour) takes ``fold=0``, its first
  occurrence. A wall time that does not exist (the skipped spring hour) moves to
  the end of the gap, the transition instant (02:30 -> when clocks show 03:00);
  a period wholly inside the gap has no working time.
* :meth:`BusinessCalendar.add_business_seconds` looks about five years ahead at
  most, then raises ``ValueError``.

Working intervals are cached per date and day totals per 64-day block as prefix
sums, so long spans cost a few look-ups. The caches are bounded, live on the
calendar (not in module state) and are outside equality and hashing. Building a
calendar loads its zoneinfo data; importing this module does nothing.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["BusinessCalendar", "Period", "parse_period"]

Period: TypeAlias = tuple[time, time]
"""A working period: local wall-clock ``(start, end)``, ``start < end``, within one day."""

_DAY: Final = 86_400
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = 719_163  # date(1970, 1, 1).toordinal()
_LAST_ORDINAL: Final = date.max.toordinal()
_BLOCK: Final = 64  # days per prefix-sum block
_HORIZON_DAYS: Final = 5 * 366  # how far add_business_seconds looks ahead
_CACHE_DAYS: Final = 50_000  # bound on cached dates (~137 years)
_EPS: Final = 1e-6  # seconds; float slack when a target meets a period end
_PERIOD_RE: Final = re.compile(
    r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*[-\u2013]\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*",
    re.ASCII,
)


def parse_period(text: str) -> Period:
    """``"09:00-12:00"`` (also ``"9:00-12:00"``, an en dash, seconds) as a :data:`Period`.

    ``24:00`` is accepted as an end and means "until midnight" (``time.max``).
    """
    match = _PERIOD_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid period {text!r}: expected 'HH:MM-HH:MM', e.g. '09:00-12:00'")
    start = _clock(text, match.group(1, 2, 3), is_end=False)
    end = _clock(text, match.group(4, 5, 6), is_end=True)
    if not start < end:
        raise ValueError(
            f"invalid period {text!r}: the start must be before the end "
            "(a period may not cross midnight; end it at 24:00)"
        )
    return (start, end)


def _clock(text: str, parts: tuple[str | None, ...], *, is_end: bool) -> time:
    hour, minute, second = (int(part or 0) for part in parts)
    if is_end and (hour, minute, second) == (24, 0, 0):
        return time.max
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"invalid period {text!r}: {hour:02}:{minute:02} is not a clock time")
    return time(hour, minute, second)


def _show(period: Period) -> str:
    return "-".join("24:00" if t == time.max else t.isoformat("auto")[:8] for t in period)


class _FrozenMapping(Mapping[date, tuple[Period, ...] | None]):
    """A read-only, hashable mapping of make-up days (sorted by date)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[date, tuple[Period, ...] | None]) -> None:
        self._data = dict(sorted(data.items()))

    def __getitem__(self, key: date) -> tuple[Period, ...] | None:
        return self._data[key]

    def __iter__(self) -> Iterator[date]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


class _Cache:
    """Per-calendar memo: the zone, working intervals per date, block prefix sums."""

    __slots__ = ("blocks", "days", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.days: dict[int, tuple[tuple[float, float], ...]] = {}
        self.blocks: dict[int, list[float]] = {}


_NO_MAKEUP_DAYS: Final = _FrozenMapping({})


@dataclass(frozen=True)
class BusinessCalendar:
    """Working time in one time zone: periods per day, weekdays, holidays, make-up days."""

    name: str = "default"
    timezone: str = "UTC"
    periods: tuple[Period, ...] = ((time(9), time(12)), (time(13), time(18)))
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday=0 ... Sunday=6
    holidays: frozenset[date] = frozenset()
    makeup_days: Mapping[date, tuple[Period, ...] | None] = _NO_MAKEUP_DAYS

    def __post_init__(self) -> None:
        where = f"calendar {self.name!r}"
        try:
            tz = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
            raise ValueError(f"{where}: unknown time zone {self.timezone!r}") from exc
        periods = _check_periods(self.periods, f"{where}: periods")
        weekdays = frozenset(self.weekdays)
        if any(type(day) is not int or not 0 <= day <= 6 for day in weekdays):
            raise ValueError(f"{where}: weekdays must be 0 (Monday) to 6 (Sunday), got {weekdays}")
        holidays = frozenset(_check_date(day, f"{where}: holidays") for day in self.holidays)
        makeup: dict[date, tuple[Period, ...] | None] = {}
        for day, day_periods in dict(self.makeup_days).items():
            label = f"{where}: make-up day {_check_date(day, f'{where}: makeup_days')}"
            if day_periods is not None:
                day_periods = _check_periods(day_periods, label)
                if not day_periods:
                    raise ValueError(f"{label} has no periods (None means the normal ones)")
            makeup[day] = day_periods
        both = sorted(holidays.intersection(makeup))
        if both:
            listed = ", ".join(day.isoformat() for day in both)
            raise ValueError(
                f"{where}: a date cannot be both a holiday and a make-up day: {listed}"
            )
        object.__setattr__(self, "periods", periods)
        object.__setattr__(self, "weekdays", weekdays)
        object.__setattr__(self, "holidays", holidays)
        object.__setattr__(self, "makeup_days", _FrozenMapping(makeup))
        self.__dict__["_cache"] = _Cache(tz)  # what the cached property would build

    # -- days ---------------------------------------------------------------------------

    def periods_on(self, day: date) -> tuple[Period, ...]:
        """The day's working periods (local wall-clock); ``()`` on a day off."""
        if day in self.holidays:
            return ()
        if day in self.makeup_days:
            return self.makeup_days[day] or self.periods
        return self.periods if day.weekday() in self.weekdays else ()

    def is_working_day(self, day: date) -> bool:
        """Whether the day has any working period."""
        return bool(self.periods_on(day))

    def working_intervals(self, day: date) -> tuple[tuple[float, float], ...]:
        """The day's periods as UTC epoch seconds ``[start, end)``, DST-correct, empty ones dropped."""
        return self._intervals(day.toordinal())

    @property
    def day_seconds(self) -> float:
        """Wall-clock length of a normal working day (the sum of :attr:`periods`)."""
        return float(
            sum(_seconds(end, is_end=True) - _seconds(start) for start, end in self.periods)
        )

    # -- epoch seconds (hot path) -------------------------------------------------------

    def business_seconds_between(self, start: float, end: float) -> float:
        """Working seconds in ``[start, end)``; ``0.0`` if ``end <= start``."""
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"instants must be finite, got {start!r} and {end!r}")
        if end <= start:
            return 0.0
        # A local date is within a day of the UTC date (|UTC offset| < 24 h), so only the
        # three dates around each end can be cut by it; the dates between are whole.
        first = int(start // _DAY) + _EPOCH_ORDINAL
        last = int(end // _DAY) + _EPOCH_ORDINAL
        intervals = self._intervals
        total = 0.0
        if last - first < 3:
            for ordinal in range(first - 1, last + 2):
                for lo, hi in intervals(ordinal):
                    lo = max(lo, start)
                    hi = min(hi, end)
                    if hi > lo:
                        total += hi - lo
            return total
        for ordinal in range(first - 1, first + 2):
            for lo, hi in intervals(ordinal):
                if hi > start:
                    total += hi - max(lo, start)
        total += self._whole_days(first + 2, last - 1)
        for ordinal in range(last - 1, last + 2):
            for lo, hi in intervals(ordinal):
                if lo < end:
                    total += min(hi, end) - lo
        return total

    def add_business_seconds(self, start: float, seconds: float) -> float:
        """The earliest instant ``t >= start`` with ``seconds`` working seconds in ``[start, t)``."""
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, got {start!r}")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"business seconds must be finite and >= 0, got {seconds!r}")
        if seconds == 0:
            return start
        remaining = float(seconds)
        first = int(start // _DAY) + _EPOCH_ORDINAL
        for ordinal in range(first - 1, first + 2):
            for lo, hi in self._intervals(ordinal):
                if hi <= start:
                    continue
                lo = max(lo, start)
                if remaining <= hi - lo + _EPS:
                    return min(lo + remaining, hi)
                remaining -= hi - lo
        # From here on whole dates: skip blocks by their totals, bisect for the date.
        ordinal = first + 2
        horizon = first + _HORIZON_DAYS
        while ordinal < horizon:
            block, index = divmod(ordinal, _BLOCK)
            sums = self._block(block)
            rest = sums[_BLOCK] - sums[index]
            if remaining > rest + _EPS:
                remaining -= rest
                ordinal = (block + 1) * _BLOCK
                continue
            found = bisect_left(sums, sums[index] + remaining - _EPS, index + 1)
            remaining -= sums[found - 1] - sums[index]
            ordinal = block * _BLOCK + found - 1
            for lo, hi in self._intervals(ordinal):
                if remaining <= hi - lo + _EPS:
                    return min(lo + remaining, hi)
                remaining -= hi - lo
            ordinal += 1  # only reached through float rounding; go on from the next date
        raise ValueError(
            f"calendar {self.name!r}: {seconds} business seconds after {start} are not "
            f"reached within {_HORIZON_DAYS} days (no working time?)"
        )

    # -- datetime conveniences ----------------------------------------------------------

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Working seconds between two tz-aware datetimes (``0.0`` if ``end <= start``)."""
        return self.business_seconds_between(_epoch(start, "start"), _epoch(end, "end"))

    def add_business(self, start: datetime, seconds: float) -> datetime:
        """The earliest UTC datetime ``seconds`` working seconds after tz-aware ``start``."""
        instant = self.add_business_seconds(_epoch(start, "start"), seconds)
        return datetime.fromtimestamp(instant, UTC)

    def add_business_days(self, start: datetime, days: float) -> datetime:
        """``add_business(start, days * day_seconds)``: working days of a normal day's length."""
        if days > 0 and not self.day_seconds:
            raise ValueError(f"calendar {self.name!r} has no normal working periods")
        return self.add_business(start, days * self.day_seconds)

    # -- internals ----------------------------------------------------------------------

    @cached_property
    def _cache(self) -> _Cache:
        """Memo for the hot path; not a field, so outside equality, hashing and repr."""
        return _Cache(ZoneInfo(self.timezone))

    def _intervals(self, ordinal: int) -> tuple[tuple[float, float], ...]:
        cache = self._cache.days
        found = cache.get(ordinal)
        if found is not None:
            return found
        if len(cache) >= _CACHE_DAYS:
            cache.clear()
        result: list[tuple[float, float]] = []
        if 0 < ordinal < _LAST_ORDINAL:
            day = date.fromordinal(ordinal)
            for start, end in self.periods_on(day):
                lo, hi = self._instant(day, start), self._instant(day, end)
                if hi > lo:  # a period inside a spring-forward gap has no time
                    result.append((lo, hi))
        cache[ordinal] = found = tuple(result)
        return found

    def _instant(self, day: date, clock: time) -> float:
        """Epoch seconds of a local wall-clock time: fold=0; a time in a gap -> the gap's end."""
        if clock == time.max:
            wall = datetime.combine(day + timedelta(days=1), time())
        else:
            wall = datetime.combine(day, clock)
        local = (wall - _EPOCH).total_seconds()
        first = wall.replace(tzinfo=self._cache.tz)
        before, after = first.utcoffset(), first.replace(fold=1).utcoffset()
        assert before is not None and after is not None  # a ZoneInfo always answers
        if before < after:  # in a gap: fold=0 reads the old offset, fold=1 the new one
            return self._transition(
                math.floor(local - after.total_seconds()), math.ceil(local - before.total_seconds())
            )
        return local - before.total_seconds()

    def _transition(self, lo: int, hi: int) -> float:
        """The first instant in ``(lo, hi]`` with a new UTC offset (transitions are whole seconds)."""
        tz = self._cache.tz
        old = datetime.fromtimestamp(lo, tz).utcoffset()
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, tz).utcoffset() == old:
                lo = mid
            else:
                hi = mid
        return float(hi)

    def _block(self, block: int) -> list[float]:
        """Prefix sums of working seconds over the block's 64 dates (65 entries)."""
        blocks = self._cache.blocks
        sums = blocks.get(block)
        if sums is None:
            if len(blocks) >= _CACHE_DAYS // _BLOCK:
                blocks.clear()
            sums = [0.0]
            total = 0.0
            for ordinal in range(block * _BLOCK, (block + 1) * _BLOCK):
                for lo, hi in self._intervals(ordinal):
                    total += hi - lo
                sums.append(total)
            blocks[block] = sums
        return sums

    def _whole_days(self, first: int, stop: int) -> float:
        """Working seconds of the dates with ordinals in ``[first, stop)``."""
        if stop <= first:
            return 0.0
        block_lo, index_lo = divmod(first, _BLOCK)
        block_hi, index_hi = divmod(stop, _BLOCK)
        sums = self._block(block_lo)
        if block_lo == block_hi:
            return sums[index_hi] - sums[index_lo]
        total = sums[_BLOCK] - sums[index_lo]
        for block in range(block_lo + 1, block_hi):
            total += self._block(block)[_BLOCK]
        return total + self._block(block_hi)[index_hi]


def _check_periods(value: Iterable[Period], where: str) -> tuple[Period, ...]:
    """Periods as a tuple of (start, end) naive, fold=0 times, each non-empty, sorted, disjoint."""
    result: list[Period] = []
    for item in value:
        pair = tuple(item)
        if len(pair) != 2 or not all(isinstance(t, time) for t in pair):
            raise ValueError(f"{where}: a period is a (start, end) pair of times, got {item!r}")
        start, end = pair
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError(f"{where}: period times are wall-clock times without tzinfo")
        start, end = start.replace(fold=0), end.replace(fold=0)
        if not start < end:
            raise ValueError(
                f"{where}: period {_show((start, end))} must start before it ends "
                "(a period may not cross midnight; end it at time.max for midnight)"
            )
        if result and start < result[-1][1]:
            raise ValueError(
                f"{where}: periods must be sorted and may not overlap, "
                f"got {_show(result[-1])} before {_show((start, end))}"
            )
        result.append((start, end))
    return tuple(result)


def _check_date(value: object, where: str) -> date:
    if not isinstance(value, date) or isinstance(value, datetime):
        # ValueError like every other configuration error, so catalog loaders report it.
        raise ValueError(f"{where}: expected a datetime.date, got {value!r}")  # noqa: TRY004
    return value


def _seconds(clock: time, *, is_end: bool = False) -> float:
    if is_end and clock == time.max:
        return float(_DAY)
    return clock.hour * 3600 + clock.minute * 60 + clock.second + clock.microsecond / 1e6


def _epoch(value: datetime, what: str) -> float:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value.isoformat()}")
    return value.timestamp()
