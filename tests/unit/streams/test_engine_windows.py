"""The outputs find each channel's and kind's windows with events by search and merge.

Checked against the plain definitions, also in time zones whose hours and
days do not line up around a change of offset (Lord Howe moves by 30 minutes).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from metrics.windows import Granularity, Window
from streams.engine import PartitionEngine
from streams.engine.outputs import _kind_windows, _kind_windows_sorted, _Pass
from tests.unit.streams.harness import Run, ts

GRANULARITIES: tuple[Granularity, ...] = ("hour", "day")


def _windows_of(
    engine: PartitionEngine, channel_id: str, granularity: Granularity, after: float
) -> Iterator[tuple[Window, int]]:
    """The definition: the channel's windows with any event, in time order, ending after
    ``after`` (an hour window ending after its day counts as ending with the day)."""
    clock = engine.config.clock
    for day in sorted(engine.days_of(channel_id)):
        window = clock.day_window(day)
        if window.end <= after:
            continue
        bucket = engine.buckets[(channel_id, day)]
        if not bucket.volume:
            continue
        if granularity == "day":
            yield window, day
        else:
            for hour in sorted(bucket.volume):
                if hour + 3600 > after:
                    yield clock.hour_window(hour), day


@pytest.mark.parametrize(
    ("timezone", "around"),
    [
        ("UTC", "2026-11-16 00:00"),
        ("Europe/Berlin", "2026-10-25 00:00"),
        ("Australia/Lord_Howe", "2026-10-03 12:00"),
    ],
)
def test_windows_found_by_search_and_merge_are_those_of_the_definition(
    timezone: str, around: str
) -> None:
    run = Run(timezone=timezone)
    rng = random.Random(timezone)
    channels = ["chat-1", "chat-2", "chat-3"]
    start = ts(around) - 2 * 86400
    for _ in range(300):
        at = start + rng.uniform(0, 4 * 86400)
        run.engine.apply(
            0,
            [
                {
                    "event_type": "message_sent",
                    "channel_id": rng.choice(channels),
                    "channel_kind": "im",
                    "scope": "internal",
                    "actor_id": "someone",
                    "actor_role": "employee",
                    "_t": at,
                    "_o": run.offsets.setdefault(0, 0),
                }
            ],
        )
        run.offsets[0] += 1
    engine = run.engine
    run_ = _Pass(engine)
    afters = [float("-inf"), *(start + rng.uniform(0, 5 * 86400) for _ in range(40))]
    for granularity in GRANULARITIES:
        for after in afters:
            for channel_id in channels:
                assert list(run_.windows_of(channel_id, granularity, after)) == list(
                    _windows_of(engine, channel_id, granularity, after)
                )
            assert list(_kind_windows(run_, channels, granularity, after)) == (
                _kind_windows_sorted(run_, channels, granularity, after)
            )
    # Where a channel's window ends are out of order, a scan takes the place of the search.
    for channel_id in channels:
        for granularity in GRANULARITIES:
            timeline = run_.timeline(channel_id, granularity)
            searched = [list(timeline.after(after)) for after in afters]
            timeline._in_order = False
            assert [list(timeline.after(after)) for after in afters] == searched
