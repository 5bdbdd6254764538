"""What a partition engine emits after a batch: changed KPI windows, and final ones.

Changed (non-final) windows are recomputed at most once per emit interval,
so a worker catching up on history does not send every intermediate value.
Per channel, windows become final in time order, separately for each settle
class (KPIs whose facts stop changing at the same time); the channel's meta
remembers, per granularity and class, the end of the last window emitted
final. A kind's window (per scope) is final once every channel with events
in it is final there and no group of the kind (one per source partition)
can still add an event to it; the partition's clock remembers those markers.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterator, Mapping
from itertools import combinations, islice, pairwise
from typing import TYPE_CHECKING, Final

from metrics.catalog import CATALOG, Result
from metrics.windows import Granularity, Window
from streams.engine.evaluate import ChannelWindow, KindWindow, KpiPlan

if TYPE_CHECKING:
    from streams.engine.partition import KpiUpdate, PartitionEngine

__all__ = ["Timeline", "collect_updates", "final_time"]

_SETTLES: Final = ("none", "read_window", "response", "reopen_window")
_SETTLE_OF: Final = {kpi.name: kpi.settle for kpi in CATALOG}
_BY_SETTLE: Final[dict[str, KpiPlan]] = {
    s: KpiPlan(k for k in CATALOG if k.settle == s) for s in _SETTLES
}
#: the KPIs of each combination of settle classes (those not yet final in a window)
_OF_SETTLES: Final[dict[tuple[str, ...], KpiPlan]] = {
    settles: KpiPlan(k for k in CATALOG if k.settle in settles)
    for n in range(len(_SETTLES) + 1)
    for settles in combinations(_SETTLES, n)
}
_GRANULARITIES: Final[tuple[Granularity, ...]] = ("hour", "day")
_NEVER: Final = float("-inf")


def final_time(engine: PartitionEngine, channel_id: str, window: Window, settle: str) -> float:
    """When ``window``'s KPIs of ``settle`` class become final for ``channel_id`` (event time)."""
    config = engine.config
    rules = config.rules
    end = window.end
    if settle == "none":
        settled = end
    elif settle == "read_window":
        settled = end + rules.read_window.calendar_seconds
    elif settle == "response":
        settled = engine.policy(channel_id).latest_deadline(
            end + rules.response_horizon.calendar_seconds
        )
    else:
        settled = rules.reopen_window.end(end, engine.policy(channel_id).calendar)
    return settled + config.grace_s


class _Pass:
    """One round of updates: what it reads from the state is derived once and shared.

    The state does not change during a round, so each channel's facts per
    window (shared with its kind) and its hours with events are built at most
    once per round.
    """

    def __init__(self, engine: PartitionEngine) -> None:
        self.engine = engine
        self._windows: dict[tuple[str, str, float], ChannelWindow] = {}
        self._hours: dict[tuple[str, int], list[float]] = {}
        self._inside: dict[tuple[str, str, str, float, int], list[str]] = {}
        self._final_times: dict[tuple[Hashable, ...], float] = {}
        self._policy_keys: dict[str, tuple[Hashable, ...]] = {}

    def final_time(self, channel_id: str, window: Window, settle: str) -> float:
        """:func:`final_time`, worked out once per round for channels whose policies agree.

        The response and reopen rules need business-time arithmetic on the
        channel's calendar and targets, which most channels of a kind share.
        """
        if settle == "none" or settle == "read_window":
            return final_time(self.engine, channel_id, window, settle)
        policy = self._policy_keys.get(channel_id)
        if policy is None:
            found = self.engine.policy(channel_id)
            # The calendar by identity (hashing one is slow; the catalog builds each calendar
            # once, so channels on the same calendar share the object); targets are small values.
            policy = self._policy_keys[channel_id] = (
                id(found.calendar),
                found.first_response,
                *found.categories.values(),
            )
        key = (settle, window.end, *policy)
        settled = self._final_times.get(key)
        if settled is None:
            settled = self._final_times[key] = final_time(self.engine, channel_id, window, settle)
        return settled

    def windows_of(
        self, channel_id: str, granularity: Granularity, after: float
    ) -> Iterator[tuple[Window, int]]:
        """The channel's windows with any event, in time order, ending after ``after``.

        An hour window counts as ending at its day's end if that came first.
        """
        return self.timeline(channel_id, granularity).after(after)

    def timeline(self, channel_id: str, granularity: Granularity) -> Timeline:
        key = (channel_id, granularity)
        timeline: Timeline | None = self.engine.windows.get(key)
        if timeline is None:
            timeline = self.engine.windows[key] = Timeline(self, channel_id, granularity)
        return timeline

    def hours(self, channel_id: str, day: int) -> list[float]:
        """The starts of the hours with events of the channel's ``day``, in order."""
        key = (channel_id, day)
        hours = self._hours.get(key)
        if hours is None:
            bucket = self.engine.buckets.get(key)
            hours = self._hours[key] = sorted(bucket.volume) if bucket is not None else []
        return hours

    def has_events(self, channel_id: str, window: Window, day: int) -> bool:
        """Whether the channel has an event in ``window`` (of ``day``)."""
        hours = self.hours(channel_id, day)
        first = bisect_left(hours, window.start)
        return first < len(hours) and hours[first] < window.end

    def channel(self, channel_id: str, window: Window, day: int) -> ChannelWindow:
        key = (channel_id, window.granularity, window.start)
        facts = self._windows.get(key)
        if facts is None:
            facts = self._windows[key] = ChannelWindow(self.engine, channel_id, window, day)
        return facts

    def inside(self, kind: str, scope: str, window: Window, day: int) -> list[str]:
        """The kind's channels (in ``scope``) with events in ``window`` (of ``day``)."""
        key = (kind, scope, window.granularity, window.start, day)
        inside = self._inside.get(key)
        if inside is None:
            inside = self._inside[key] = [
                c for c in self.engine.channels_of(kind, scope) if self.has_events(c, window, day)
            ]
        return inside

    def kind(self, kind: str, scope: str, window: Window, day: int) -> KindWindow | None:
        """The kind's window over its channels with events in it."""
        members = self.inside(kind, scope, window, day)
        if not members:
            return None
        return KindWindow([self.channel(c, window, day) for c in members])


class Timeline:
    """A channel's windows of one granularity with any event, in time order, with their ends.

    Kept by the engine until the channel's windows change (:meth:`PartitionEngine.forget_windows`).
    Most of a channel's windows are final already, and each round asks for the
    ones after the last final one: when the ends are in order (always, except
    perhaps around a time-zone change), a binary search finds them.
    """

    def __init__(self, run: _Pass, channel_id: str, granularity: Granularity) -> None:
        engine = run.engine
        #: (end, window, day); an hour's end is its day's end if that comes first
        entries: list[tuple[float, Window, int]] = []
        for day in sorted(engine.days_of(channel_id)):
            key = (channel_id, day, granularity)
            of_day = engine.day_windows.get(key)
            if of_day is None:
                of_day = engine.day_windows[key] = _day_entries(run, channel_id, day, granularity)
            entries += of_day
        self._ends = [end for end, _, _ in entries]
        self._windows = [(window, day) for _, window, day in entries]
        self._in_order = all(a <= b for a, b in pairwise(self._ends))
        self.starts_in_order = all(a.start <= b.start for (a, _), (b, _) in pairwise(self._windows))

    def after(self, after: float) -> Iterator[tuple[Window, int]]:
        """The windows ending after ``after``, in time order."""
        if self._in_order:
            return islice(self._windows, bisect_right(self._ends, after), None)
        return (entry for end, entry in zip(self._ends, self._windows) if end > after)


def _day_entries(
    run: _Pass, channel_id: str, day: int, granularity: Granularity
) -> list[tuple[float, Window, int]]:
    """A :class:`Timeline`'s entries for one day of the channel."""
    hours = run.hours(channel_id, day)
    if not hours:
        return []
    clock = run.engine.config.clock
    window = clock.day_window(day)
    if granularity == "day":
        return [(window.end, window, day)]
    return [(min(window.end, hour + 3600), clock.hour_window(hour), day) for hour in hours]


def collect_updates(engine: PartitionEngine, *, emit_changes: bool) -> list[KpiUpdate]:
    """KPI records for windows that became final, and (if ``emit_changes``) that changed."""
    updates: list[KpiUpdate] = []
    run = _Pass(engine)
    advanced = engine.take_advanced_groups()
    advanced_channels = engine.take_advanced_channels()

    # 1. Channel windows that became final.
    for channel_id, meta in engine.metas.items():
        group = f"{meta.source}/{meta.kind}"
        if group not in advanced and channel_id not in advanced_channels:
            continue
        mark = engine.channel_mark(meta)
        if mark is None:
            continue
        for granularity in _GRANULARITIES:
            for settle in _SETTLES:
                key = f"{granularity}/{settle}"
                through = meta.finalized.get(key, _NEVER)
                for window, day in run.windows_of(channel_id, granularity, through):
                    if run.final_time(channel_id, window, settle) > mark:
                        break
                    results = _BY_SETTLE[settle].evaluate(run.channel(channel_id, window, day))
                    updates += _finals(
                        engine, channel_id, meta.kind, meta.scope, window, results, settle
                    )
                    through = window.end
                if through != meta.finalized.get(key, _NEVER):
                    meta.finalized[key] = through
                    engine.mark_meta_dirty(channel_id)

    # 2. Kind windows that became final, in order: once no group of the kind can still add
    #    an event to the window, and every member channel with events in it is final there.
    advanced_kinds = {group.split("/", 1)[1] for group in advanced}
    advanced_kinds |= {engine.metas[c].kind for c in advanced_channels if c in engine.metas}
    touched = {
        (meta.kind, meta.scope) for meta in engine.metas.values() if meta.kind in advanced_kinds
    }
    grace = engine.config.grace_s
    for kind, scope in sorted(touched):
        members = engine.channels_of(kind, scope)
        closed_until = engine.kind_watermark(kind) - grace  # no event before this can come
        for granularity in _GRANULARITIES:
            for settle in _SETTLES:
                key = f"{kind}/{scope}/{granularity}/{settle}"
                through = engine.clock.kind_finalized.get(key, _NEVER)
                for window, day in _kind_windows(run, members, granularity, through):
                    if window.end > closed_until:
                        break
                    inside = run.inside(kind, scope, window, day)
                    marker = f"{granularity}/{settle}"
                    if any(
                        engine.metas[c].finalized.get(marker, _NEVER) < window.end for c in inside
                    ):
                        break
                    facts = run.kind(kind, scope, window, day)
                    if facts is not None:
                        results = _BY_SETTLE[settle].evaluate(facts)
                        updates += _finals(engine, None, kind, scope, window, results, settle)
                    through = window.end
                if through != engine.clock.kind_finalized.get(key, _NEVER):
                    engine.clock.kind_finalized[key] = through
                    engine.mark_clock_dirty()

    if not emit_changes:
        return updates

    # 3. Windows that changed, channel then kind, for the settle classes not yet final.
    dirty_kinds: set[tuple[str, str, Granularity, float, int]] = set()
    for channel_id, granularity, start, day in sorted(engine.take_dirty_windows()):
        meta = engine.metas[channel_id]
        window = _window(engine, granularity, start, day)
        open_kpis = _open_kpis(meta.finalized, f"{granularity}/", window)
        if not open_kpis:
            continue
        results = open_kpis.evaluate(run.channel(channel_id, window, day))
        updates += _changed(engine, channel_id, meta.kind, meta.scope, window, results)
        dirty_kinds.add((meta.kind, meta.scope, granularity, start, day))
    for kind, scope, granularity, start, day in sorted(dirty_kinds):
        window = _window(engine, granularity, start, day)
        open_kpis = _open_kpis(
            engine.clock.kind_finalized, f"{kind}/{scope}/{granularity}/", window
        )
        facts = run.kind(kind, scope, window, day)
        if open_kpis and facts is not None:
            updates += _changed(engine, None, kind, scope, window, open_kpis.evaluate(facts))
    return updates


def _open_kpis(markers: Mapping[str, float], prefix: str, window: Window) -> KpiPlan:
    """The KPIs not yet final in ``window``, by the final markers ``prefix + settle class``."""
    return _OF_SETTLES[tuple(s for s in _SETTLES if markers.get(prefix + s, _NEVER) < window.end)]


def _kind_windows(
    run: _Pass, members: list[str], granularity: Granularity, after: float
) -> Iterator[tuple[Window, int]]:
    """The members' windows ending after ``after`` by start, each as the first member has it.

    Lazily, by merging the members' windows, since the caller mostly stops at
    the first window that is not final yet.
    """
    timelines = [run.timeline(channel_id, granularity) for channel_id in members]
    if not all(timeline.starts_in_order for timeline in timelines):
        yield from _kind_windows_sorted(run, members, granularity, after)
        return
    # heapq.merge is stable: of equal starts, the first member's window comes first.
    merged = heapq.merge(*(timeline.after(after) for timeline in timelines), key=_start)
    last = None
    for window, day in merged:
        if window.start != last:
            last = window.start
            yield window, day


def _start(entry: tuple[Window, int]) -> float:
    return entry[0].start


def _kind_windows_sorted(
    run: _Pass, members: list[str], granularity: Granularity, after: float
) -> list[tuple[Window, int]]:
    """:func:`_kind_windows` for members whose windows are not in order of their starts."""
    seen: dict[float, tuple[Window, int]] = {}
    for channel_id in members:
        for window, day in run.windows_of(channel_id, granularity, after):
            seen.setdefault(window.start, (window, day))
    return [seen[start] for start in sorted(seen)]


def _window(engine: PartitionEngine, granularity: Granularity, start: float, day: int) -> Window:
    clock = engine.config.clock
    return clock.hour_window(start) if granularity == "hour" else clock.day_window(day)


def _changed(
    engine: PartitionEngine,
    channel_id: str | None,
    kind: str,
    scope: str,
    window: Window,
    results: dict[str, Result],
) -> list[KpiUpdate]:
    from streams.engine.partition import KpiUpdate

    out = []
    subject = f"{kind}/{scope}"
    for name, result in results.items():
        key = (channel_id, subject, name, window.granularity, window.start)
        if engine.emitted.get(key) == result:
            continue
        engine.emitted[key] = result
        out.append(KpiUpdate(channel_id, kind, scope, name, window, result, final=False))
    return out


def _finals(
    engine: PartitionEngine,
    channel_id: str | None,
    kind: str,
    scope: str,
    window: Window,
    results: dict[str, Result],
    settle: str,
) -> list[KpiUpdate]:
    from streams.engine.partition import KpiUpdate

    out = []
    subject = f"{kind}/{scope}"
    for name, result in results.items():
        assert _SETTLE_OF[name] == settle
        engine.emitted.pop((channel_id, subject, name, window.granularity, window.start), None)
        out.append(KpiUpdate(channel_id, kind, scope, name, window, result, final=True))
    return out
