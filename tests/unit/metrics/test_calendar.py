"""Business calendars: working periods, holidays, make-up days, DST, deadlines."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.calendar import BusinessCalendar, parse_period

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0

LUNCH = BusinessCalendar(periods=((time(9), time(12)), (time(13, 30), time(18))))
DEFAULT = BusinessCalendar()  # UTC, 09-12 and 13-18, Monday to Friday
CHINA = BusinessCalendar(
    name="cn",
    timezone="Asia/Shanghai",
    periods=((time(9), time(12)), (time(13, 30), time(18))),
    holidays=frozenset(date(2026, 10, day) for day in range(1, 8)),  # National Day, Thu-Wed
    makeup_days={date(2026, 9, 27): None, date(2026, 10, 10): None},  # Sunday, Saturday
)
EVERY_DAY_BERLIN = BusinessCalendar(
    timezone="Europe/Berlin", periods=((time(9), time(17)),), weekdays=frozenset(range(7))
)
ROUND_THE_CLOCK_BERLIN = BusinessCalendar(
    timezone="Europe/Berlin", periods=((time(0), time.max),), weekdays=frozenset(range(7))
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """Epoch seconds of a UTC wall time."""
    return utc(year, month, day, hour, minute).timestamp()


# -- days and periods ------------------------------------------------------------------


def test_day_seconds_is_a_normal_days_wall_clock_length() -> None:
    assert DEFAULT.day_seconds == 8 * HOUR
    assert LUNCH.day_seconds == 7.5 * HOUR
    assert ROUND_THE_CLOCK_BERLIN.day_seconds == 24 * HOUR


def test_periods_on_weekdays_weekends_holidays_and_makeup_days() -> None:
    short = ((time(10), time(14)),)
    cal = BusinessCalendar(
        holidays=frozenset({date(2026, 3, 4)}),
        makeup_days={date(2026, 3, 7): short, date(2026, 3, 14): None, date(2026, 3, 5): short},
    )
    assert cal.periods_on(date(2026, 3, 2)) == cal.periods  # Monday
    assert cal.periods_on(date(2026, 3, 4)) == ()  # a holiday on a Wednesday
    assert cal.periods_on(date(2026, 3, 5)) == short  # a make-up entry overrides a weekday
    assert cal.periods_on(date(2026, 3, 7)) == short  # Saturday with its own periods
    assert cal.periods_on(date(2026, 3, 14)) == cal.periods  # Saturday, the normal periods
    assert cal.periods_on(date(2026, 3, 8)) == ()  # Sunday
    assert [cal.is_working_day(date(2026, 3, d)) for d in range(2, 9)] == [
        True, True, False, True, True, True, False,
    ]  # fmt: skip


def test_working_intervals_are_utc_epoch_seconds() -> None:
    assert LUNCH.working_intervals(date(2026, 3, 2)) == (
        (ts(2026, 3, 2, 9), ts(2026, 3, 2, 12)),
        (ts(2026, 3, 2, 13, 30), ts(2026, 3, 2, 18)),
    )
    assert LUNCH.working_intervals(date(2026, 3, 7)) == ()
    # Shanghai is UTC+8 all year: 09:00 local is 01:00Z.
    assert CHINA.working_intervals(date(2026, 9, 27))[0] == (ts(2026, 9, 27, 1), ts(2026, 9, 27, 4))


# -- business seconds ------------------------------------------------------------------


def test_the_lunch_gap_does_not_count() -> None:
    # Monday 11:00-14:00 = 11-12 (1 h) + 13:30-14 (0.5 h).
    assert LUNCH.business_seconds(utc(2026, 3, 2, 11), utc(2026, 3, 2, 14)) == 1.5 * HOUR
    assert LUNCH.business_seconds(utc(2026, 3, 2, 12), utc(2026, 3, 2, 13, 30)) == 0.0


def test_business_seconds_over_weeks_with_holidays_and_makeup_days() -> None:
    monday, two_weeks_later = utc(2026, 3, 2), utc(2026, 3, 16)
    assert DEFAULT.business_seconds(monday, two_weeks_later) == 10 * 8 * HOUR
    cal = BusinessCalendar(
        holidays=frozenset({date(2026, 3, 4)}),  # Wednesday: -8 h
        makeup_days={
            date(2026, 3, 7): ((time(10), time(14)),),  # Saturday: +4 h
            date(2026, 3, 14): None,  # Saturday: +8 h
        },
    )
    assert cal.business_seconds(monday, two_weeks_later) == (80 - 8 + 4 + 8) * HOUR
    # A year of a Monday-to-Friday calendar: 2026 has 261 weekdays.
    assert DEFAULT.business_seconds(utc(2026, 1, 1), utc(2027, 1, 1)) == 261 * 8 * HOUR


def test_fractional_empty_and_reversed_spans() -> None:
    nine = ts(2026, 3, 2, 9)
    assert DEFAULT.business_seconds_between(nine + 0.25, nine + 1.0) == 0.75
    assert DEFAULT.business_seconds_between(nine - 0.5, nine + 0.5) == 0.5
    assert DEFAULT.business_seconds_between(nine + 5, nine + 5) == 0.0
    assert DEFAULT.business_seconds_between(nine + 5, nine) == 0.0
    assert DEFAULT.business_seconds(utc(2026, 3, 3), utc(2026, 3, 2)) == 0.0


# -- deadlines -------------------------------------------------------------------------


def test_a_target_used_up_at_a_period_end_lands_on_that_end() -> None:
    assert DEFAULT.add_business(utc(2026, 3, 2, 9), 3 * HOUR) == utc(2026, 3, 2, 12)
    assert DEFAULT.add_business(utc(2026, 3, 2, 9), 8 * HOUR) == utc(2026, 3, 2, 18)
    assert DEFAULT.add_business(utc(2026, 3, 2, 9), 3 * HOUR + 1) == utc(2026, 3, 2, 13, 0, 1)


def test_a_clock_started_off_hours_starts_at_the_next_period() -> None:
    # Friday 20:00 + 2 h: the weekend is off, Monday 09:00-11:00.
    deadline = DEFAULT.add_business(utc(2026, 3, 6, 20), 2 * HOUR)
    assert deadline == utc(2026, 3, 9, 11)
    assert deadline.tzinfo is UTC
    assert DEFAULT.add_business(utc(2026, 3, 2, 12, 30), 1) == utc(2026, 3, 2, 13, 0, 1)
    assert DEFAULT.add_business(utc(2026, 3, 7, 12), 0) == utc(2026, 3, 7, 12)  # zero: start


def test_add_business_days_uses_a_normal_days_length() -> None:
    # Monday 09:00 + 1.5 days (12 h): Monday's 8 h, Tuesday 09-12 and 13-14.
    assert DEFAULT.add_business_days(utc(2026, 3, 2, 9), 1.5) == utc(2026, 3, 3, 14)


def test_chinese_national_day_week() -> None:
    opened = datetime(2026, 9, 30, 17, tzinfo=SHANGHAI)  # Wednesday
    # 3 working days = 3 x 7.5 h = 22.5 h:
    #   Wed 30 Sep 17:00-18:00                      1.0 h  (21.5 h left)
    #   Thu 1 Oct - Wed 7 Oct: National Day         0      (holidays)
    #   Thu 8 Oct 09-12 + 13:30-18                  7.5 h  (14.0 h left)
    #   Fri 9 Oct                                   7.5 h  ( 6.5 h left)
    #   Sat 10 Oct (make-up day) 09-12              3.0 h  ( 3.5 h left)
    #                           13:30 + 3.5 h  ->  17:00 local = 09:00Z
    expected = datetime(2026, 10, 10, 17, tzinfo=SHANGHAI)
    assert CHINA.add_business_days(opened, 3) == expected == utc(2026, 10, 10, 9)
    assert CHINA.add_business(opened, 3 * 7.5 * HOUR) == expected
    assert CHINA.business_seconds(opened, expected) == 22.5 * HOUR
    # The Sunday make-up day counts, the Saturday before it does not.
    saturday = datetime(2026, 9, 26, tzinfo=SHANGHAI)
    assert CHINA.business_seconds(saturday, saturday + timedelta(days=2)) == 7.5 * HOUR
    assert not CHINA.is_working_day(date(2026, 10, 1))
    assert CHINA.is_working_day(date(2026, 10, 10))


# -- time zones and daylight saving time -----------------------------------------------


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_a_nine_to_five_period_is_eight_real_hours_on_dst_days(day: date) -> None:
    ((start, end),) = EVERY_DAY_BERLIN.working_intervals(day)
    assert end - start == 8 * HOUR
    assert start == datetime.combine(day, time(9), BERLIN).timestamp()


def test_a_period_spanning_the_jump_is_shorter_or_longer() -> None:
    night = BusinessCalendar(
        timezone="Europe/Berlin", periods=((time(0), time(6)),), weekdays=frozenset(range(7))
    )
    ((start, end),) = night.working_intervals(date(2026, 3, 29))
    assert (start, end) == (ts(2026, 3, 28, 23), ts(2026, 3, 29, 4))  # 00:00 CET-06:00 CEST
    ((start, end),) = night.working_intervals(date(2026, 10, 25))
    assert (start, end) == (ts(2026, 10, 24, 22), ts(2026, 10, 25, 5))  # 00:00 CEST-06:00 CET
    # Whole local days: 23 h in spring, 25 h in autumn; 24:00 means midnight.
    for day, hours in ((date(2026, 3, 29), 23), (date(2026, 10, 25), 25)):
        midnight = datetime.combine(day, time(), BERLIN)
        after = datetime.combine(day + timedelta(days=1), time(), BERLIN)
        assert ROUND_THE_CLOCK_BERLIN.business_seconds(midnight, after) == hours * HOUR


def test_wall_times_in_the_spring_gap_move_to_the_gap_end() -> None:
    # On 2026-03-29 Berlin skips 02:00-03:00 local; the jump is at 01:00Z.
    cal = BusinessCalendar(
        timezone="Europe/Berlin",
        periods=((time(1), time(2, 30)), (time(2, 30), time(4))),
        weekdays=frozenset({6}),
    )
    assert cal.working_intervals(date(2026, 3, 29)) == (
        (ts(2026, 3, 29, 0), ts(2026, 3, 29, 1)),
        (ts(2026, 3, 29, 1), ts(2026, 3, 29, 2)),
    )
    inside = BusinessCalendar(
        timezone="Europe/Berlin", periods=((time(2), time(2, 45)),), weekdays=frozenset({6})
    )
    assert inside.working_intervals(date(2026, 3, 29)) == ()  # the period never happens
    assert inside.is_working_day(date(2026, 3, 29))  # but the day is a working day
    assert inside.working_intervals(date(2026, 3, 22)) == (
        (ts(2026, 3, 22, 1), ts(2026, 3, 22, 1, 45)),
    )


def test_ambiguous_autumn_times_take_their_first_occurrence() -> None:
    cal = BusinessCalendar(
        timezone="Europe/Berlin", periods=((time(2, 30), time(3, 30)),), weekdays=frozenset({6})
    )
    # 02:30 first occurrence is CEST (00:30Z); 03:30 is CET (02:30Z): 2 real hours.
    assert cal.working_intervals(date(2026, 10, 25)) == (
        (ts(2026, 10, 25, 0, 30), ts(2026, 10, 25, 2, 30)),
    )


def test_deadlines_across_the_spring_jump() -> None:
    saturday_four = datetime(2026, 3, 28, 16, tzinfo=BERLIN)  # 1 h left on Saturday
    deadline = EVERY_DAY_BERLIN.add_business(saturday_four, 2 * HOUR)
    assert deadline == datetime(2026, 3, 29, 10, tzinfo=BERLIN) == utc(2026, 3, 29, 8)


def test_far_from_utc_time_zones() -> None:
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):  # UTC+14, UTC-11
        cal = BusinessCalendar(timezone=zone)
        monday = datetime(2026, 3, 2, 9, tzinfo=ZoneInfo(zone))
        assert cal.add_business(monday, 8 * HOUR) == monday + timedelta(hours=9)
        assert cal.business_seconds(monday, monday + timedelta(days=7)) == 40 * HOUR


# -- no working time -------------------------------------------------------------------


def test_a_calendar_without_working_time_fails_instead_of_looping() -> None:
    idle = BusinessCalendar(weekdays=frozenset())
    with pytest.raises(ValueError, match="not reached within"):
        idle.add_business(utc(2026, 1, 1), 1)
    assert idle.business_seconds(utc(2026, 1, 1), utc(2030, 1, 1)) == 0.0
    rare = BusinessCalendar(weekdays=frozenset(), makeup_days={date(2029, 6, 1): None})
    assert rare.add_business(utc(2026, 1, 1), HOUR) == utc(2029, 6, 1, 10)


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"timezone": "Europe"}, "unknown time zone"),
        ({"periods": ((time(13), time(18)), (time(9), time(12)))}, "sorted"),
        ({"periods": ((time(9), time(12)), (time(11), time(13)))}, "overlap"),
        ({"periods": ((time(12), time(9)),)}, "start before it ends"),
        ({"periods": ((time(22), time(0)),)}, "may not cross midnight"),
        ({"periods": ((time(9, tzinfo=UTC), time(12, tzinfo=UTC)),)}, "without tzinfo"),
        ({"periods": ((time(9),),)}, "pair of times"),
        ({"weekdays": frozenset({7})}, "weekdays"),
        ({"holidays": frozenset({utc(2026, 1, 1)})}, "expected a datetime.date"),
        ({"makeup_days": {date(2026, 1, 3): ()}}, "has no periods"),
        (
            {"holidays": frozenset({date(2026, 1, 3)}), "makeup_days": {date(2026, 1, 3): None}},
            "both a holiday and a make-up day: 2026-01-03",
        ),
    ],
)
def test_invalid_calendars_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(**kwargs)  # type: ignore[arg-type]


def test_bad_arguments_are_rejected() -> None:
    naive = datetime(2026, 3, 2, 9)
    with pytest.raises(ValueError, match="timezone-aware"):
        DEFAULT.business_seconds(naive, utc(2026, 3, 3))
    with pytest.raises(ValueError, match="timezone-aware"):
        DEFAULT.add_business(naive, 1)
    with pytest.raises(ValueError, match=">= 0"):
        DEFAULT.add_business_seconds(0.0, -1)
    with pytest.raises(ValueError, match=">= 0"):
        DEFAULT.add_business_seconds(0.0, float("nan"))
    with pytest.raises(ValueError, match="finite"):
        DEFAULT.business_seconds_between(0.0, float("inf"))


def test_calendars_are_frozen_hashable_values() -> None:
    makeup = {date(2026, 10, 10): None}
    one = BusinessCalendar(timezone="Asia/Shanghai", makeup_days=makeup)
    two = BusinessCalendar(timezone="Asia/Shanghai", makeup_days={date(2026, 10, 10): None})
    makeup[date(2026, 10, 11)] = None  # the calendar kept its own copy
    assert one == two and hash(one) == hash(two) and len({one, two}) == 1
    assert dict(one.makeup_days) == {date(2026, 10, 10): None}
    with pytest.raises(TypeError):
        one.makeup_days[date(2026, 10, 11)] = None  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.name = "other"  # type: ignore[misc]
    assert dataclasses.replace(one, name="x").makeup_days == one.makeup_days
    assert "_cache" not in repr(one)


# -- parse_period ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("09:00-12:00", (time(9), time(12))),
        ("9:00-12:00", (time(9), time(12))),
        ("09:00\u201312:00", (time(9), time(12))),
        (" 13:30 - 18:00 ", (time(13, 30), time(18))),
        ("08:15:30-09:00", (time(8, 15, 30), time(9))),
        ("18:00-24:00", (time(18), time.max)),
    ],
)
def test_parse_period(text: str, period: tuple[time, time]) -> None:
    assert parse_period(text) == period


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-12", "expected 'HH:MM-HH:MM'"),
        ("", "expected 'HH:MM-HH:MM'"),
        ("09:00", "expected 'HH:MM-HH:MM'"),
        ("12:00-09:00", "start must be before the end"),
        ("22:00-00:00", "may not cross midnight"),
        ("25:00-26:00", "not a clock time"),
        ("09:60-10:00", "not a clock time"),
        ("24:00-24:00", "not a clock time"),
    ],
)
def test_parse_period_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_period(text)


# -- properties ------------------------------------------------------------------------

CALENDARS = [
    CHINA,
    LUNCH,
    ROUND_THE_CLOCK_BERLIN,
    BusinessCalendar(
        timezone="Europe/Berlin",
        periods=((time(0, 30), time(2, 30)), (time(2, 45), time(3, 15)), (time(22), time.max)),
        holidays=frozenset({date(2026, 3, 30), date(2026, 12, 24)}),
        makeup_days={date(2026, 10, 25): None, date(2026, 3, 29): ((time(1), time(5)),)},
    ),
    BusinessCalendar(timezone="Pacific/Kiritimati", weekdays=frozenset({2})),
    BusinessCalendar(timezone="America/Sao_Paulo", periods=((time(8, 0, 0, 250_000), time(9)),)),
    # UTC-11: the afternoon period falls on the next UTC date.
    BusinessCalendar(
        timezone="Pacific/Pago_Pago", periods=((time(6), time(8)), (time(13), time(23)))
    ),
]
instants = st.floats(ts(2025, 12, 1), ts(2027, 2, 1))
calendars = st.sampled_from(CALENDARS)


def brute_force(cal: BusinessCalendar, start: float, end: float) -> float:
    day = datetime.fromtimestamp(start, UTC).date() - timedelta(days=2)
    total = 0.0
    while day <= datetime.fromtimestamp(end, UTC).date() + timedelta(days=2):
        for lo, hi in cal.working_intervals(day):
            total += max(0.0, min(hi, end) - max(lo, start))
        day += timedelta(days=1)
    return total


@settings(max_examples=150)
@given(calendars, instants, st.floats(0, 120 * 86_400))
def test_business_seconds_match_a_day_by_day_sum(
    cal: BusinessCalendar, start: float, span: float
) -> None:
    expected = brute_force(cal, start, start + span)
    assert cal.business_seconds_between(start, start + span) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=150)
@given(calendars, instants, st.floats(0, 20 * 86_400))
def test_adding_then_measuring_gives_the_target_at_the_earliest_instant(
    cal: BusinessCalendar, start: float, seconds: float
) -> None:
    deadline = cal.add_business_seconds(start, seconds)
    assert deadline >= start
    assert cal.business_seconds_between(start, deadline) == pytest.approx(seconds, abs=1e-6)
    if seconds > 1e-6:  # earliest: the deadline closes working time, never sits in a gap
        day = datetime.fromtimestamp(deadline, UTC).date()
        intervals = [iv for d in (-1, 0, 1) for iv in cal.working_intervals(day + timedelta(d))]
        assert any(lo < deadline <= hi + 1e-6 for lo, hi in intervals)


@settings(max_examples=150)
@given(calendars, st.lists(instants, min_size=3, max_size=3).map(sorted))
def test_business_seconds_are_additive_and_monotone(
    cal: BusinessCalendar, points: list[float]
) -> None:
    a, b, c = points
    whole, first, second = (
        cal.business_seconds_between(a, c),
        cal.business_seconds_between(a, b),
        cal.business_seconds_between(b, c),
    )
    assert whole == pytest.approx(first + second, abs=1e-6)
    assert whole >= first - 1e-6 and whole >= second - 1e-6
    assert first >= 0 and second >= 0


@pytest.mark.parametrize("cal", CALENDARS)
def test_every_period_end_is_a_reachable_deadline(cal: BusinessCalendar) -> None:
    # 150 days from a fixed start crosses several 64-day cache blocks and both DST changes.
    start = ts(2026, 2, 27, 10, 17)
    day = date(2026, 2, 27)
    for offset in range(150):
        for lo, hi in cal.working_intervals(day + timedelta(days=offset)):
            if lo > start:
                assert (
                    cal.add_business_seconds(start, cal.business_seconds_between(start, hi)) == hi
                )
                assert (
                    cal.add_business_seconds(start, cal.business_seconds_between(start, lo)) <= lo
                )
