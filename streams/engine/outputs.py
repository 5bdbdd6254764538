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

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Final

from metrics.catalog import CATALOG, Kpi, Result
from metrics.windows import Granularity, Window
from streams.engine.evaluate import ChannelWindow, KindWindow, evaluate_window

if TYPE_CHECKING:
    from streams.engine.partition import KpiUpdate, PartitionEngine

__all__ = ["collect_updates", "final_time"]

_SETTLES: Final = ("none", "read_window", "response", "reopen_window")
_SETTLE_OF: Final = {kpi.name: kpi.settle for kpi in CATALOG}
_BY_SETTLE: Final[dict[str, tuple[Kpi, ...]]] = {
    s: tuple(k for k in CATALOG if k.settle == s) for s in _SETTLES
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
    """One round of updates: channel windows' facts are built once and shared with their kind."""

    def __init__(self, engine: PartitionEngine) -> None:
        self.engine = engine
        self._windows: dict[tuple[str, str, float], ChannelWindow] = {}

    def channel(self, channel_id: str, window: Window, day: int) -> ChannelWindow:
        key = (channel_id, window.granularity, window.start)
        facts = self._windows.get(key)
        if facts is None:
            engine = self.engine
            meta = engine.metas[channel_id]
            facts = self._windows[key] = ChannelWindow(
                channel_id,
                window,
                day,
                lambda d: engine.buckets.get((channel_id, d)),
                lambda: engine.resolved_on(channel_id, day),
                engine.policy(channel_id),
                engine.config.rules,
                engine.clock.watermarks.get(f"{meta.source}/{meta.kind}", window.end),
            )
        return facts

    def kind(
        self, kind: str, scope: str, window: Window, day: int, inside: list[str] | None = None
    ) -> KindWindow | None:
        """The kind's window over its channels with events in it (``inside``, if known)."""
        members = (
            inside
            if inside is not None
            else [
                c
                for c in self.engine.channels_of(kind, scope)
                if _has_events(self.engine, c, window, day)
            ]
        )
        if not members:
            return None
        return KindWindow([self.channel(c, window, day) for c in members])


def collect_updates(engine: PartitionEngine, *, emit_changes: bool) -> list[KpiUpdate]:
    """KPI records for windows that became final, and (if ``emit_changes``) that changed."""
    updates: list[KpiUpdate] = []
    run = _Pass(engine)
    advanced = engine.take_advanced_groups()

    # 1. Channel windows that became final.
    for channel_id, meta in engine.metas.items():
        group = f"{meta.source}/{meta.kind}"
        if group not in advanced:
            continue
        mark = engine.clock.watermarks[group]
        for granularity in _GRANULARITIES:
            for settle in _SETTLES:
                key = f"{granularity}/{settle}"
                through = meta.finalized.get(key, _NEVER)
                for window, day in windows_of(engine, channel_id, granularity, through):
                    if final_time(engine, channel_id, window, settle) > mark:
                        break
                    results = evaluate_window(
                        run.channel(channel_id, window, day), _BY_SETTLE[settle]
                    )
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
                for window, day in _kind_windows(engine, members, granularity, through):
                    if window.end > closed_until:
                        break
                    inside = [c for c in members if _has_events(engine, c, window, day)]
                    marker = f"{granularity}/{settle}"
                    if any(
                        engine.metas[c].finalized.get(marker, _NEVER) < window.end for c in inside
                    ):
                        break
                    facts = run.kind(kind, scope, window, day, inside)
                    if facts is not None:
                        results = evaluate_window(facts, _BY_SETTLE[settle])
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
        results = evaluate_window(run.channel(channel_id, window, day), open_kpis)
        updates += _changed(engine, channel_id, meta.kind, meta.scope, window, results)
        dirty_kinds.add((meta.kind, meta.scope, granularity, start, day))
    for kind, scope, granularity, start, day in sorted(dirty_kinds):
        window = _window(engine, granularity, start, day)
        open_kpis = _open_kpis(
            engine.clock.kind_finalized, f"{kind}/{scope}/{granularity}/", window
        )
        facts = run.kind(kind, scope, window, day)
        if open_kpis and facts is not None:
            updates += _changed(
                engine, None, kind, scope, window, evaluate_window(facts, open_kpis)
            )
    return updates


def windows_of(
    engine: PartitionEngine, channel_id: str, granularity: Granularity, after: float
) -> Iterator[tuple[Window, int]]:
    """The channel's windows with any event, in time order, ending after ``after``."""
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


def _open_kpis(markers: Mapping[str, float], prefix: str, window: Window) -> tuple[Kpi, ...]:
    """The KPIs not yet final in ``window``, by the final markers ``prefix + settle class``."""
    return tuple(kpi for kpi in CATALOG if markers.get(prefix + kpi.settle, _NEVER) < window.end)


def _has_events(engine: PartitionEngine, channel_id: str, window: Window, day: int) -> bool:
    bucket = engine.buckets.get((channel_id, day))
    return bucket is not None and any(window.start <= hour < window.end for hour in bucket.volume)


def _kind_windows(
    engine: PartitionEngine, members: list[str], granularity: Granularity, after: float
) -> list[tuple[Window, int]]:
    seen: dict[float, tuple[Window, int]] = {}
    for channel_id in members:
        for window, day in windows_of(engine, channel_id, granularity, after):
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
    for name, result in results.items():
        key = (channel_id, f"{kind}/{scope}", name, window.granularity, window.start)
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
    for name, result in results.items():
        engine.emitted.pop(
            (channel_id, f"{kind}/{scope}", name, window.granularity, window.start), None
        )
        out.append(KpiUpdate(channel_id, kind, scope, name, window, result, final=True))
    assert all(_SETTLE_OF[update.kpi] == settle for update in out)
    return out
