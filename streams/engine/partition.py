"""The stream's state machine for one partition of the packed topic.

:meth:`PartitionEngine.apply` takes events in source order and updates the
state (each event applied to each piece of state at most once, by offset);
:meth:`PartitionEngine.updates` says which KPI windows changed or became
final, and :meth:`PartitionEngine.checkpoint` what to write to the table.
Nothing here does I/O: the faust app drives it.

Lateness and finality: each channel's events arrive in order, and its
watermark is the latest event time it has seen; events of one kind from one
source partition form a *group*, whose watermark is the latest of its
channels'. A channel that is delivering events follows its own watermark, one
that has stopped follows its group's as well (:meth:`PartitionEngine.channel_mark`).
An event more than ``grace`` older than its channel's watermark is late and
dropped. A window's KPIs become final once the watermark passes the window's
end, plus the time its facts can still change (the KPI's settle rule), plus
grace; the same rules bound the facts (:mod:`metrics.policy`), so a final
window never changes again. A kind's window also waits for the kind's group
in every source partition and for its active channels, so that no channel
known to be on its way can still join it. A source partition the packer has
caught up with (read all its last fetch found) at two ticks in a row is idle:
its groups' watermarks move up to the kind's (see :meth:`tick`), so that a
quiet partition does not hold the kind's windows back for ever, and its
channels stop being active.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from metrics.catalog import CATALOG, Result
from metrics.channels import ChannelCatalog
from metrics.facts import ACTIVITY_EVENTS, MESSAGE_EVENTS, PEOPLE_ROLES
from metrics.messages import MessageState
from metrics.policy import ChannelPolicy, KpiRules
from metrics.requests import RequestState, concerns_request, opening_type, role_in_request
from metrics.windows import Granularity, Window, WindowClock
from streams.engine.evaluate import TRAILING_DAYS
from streams.engine.listed import Listed, catalog_listing, listed_key
from streams.engine.state import (
    ChannelMeta,
    Clock,
    DayBucket,
    bucket_key,
    chunk_head,
    chunk_key,
    clock_key,
    meta_key,
    parse_chunk_key,
    parse_key,
    read_chunk_head,
)

if TYPE_CHECKING:
    from streams.engine.outputs import Timeline

__all__ = ["AlertTransition", "EngineConfig", "KpiUpdate", "PartitionEngine"]

log = logging.getLogger(__name__)

_DAY: Final = 86400.0
_SETTLES: Final = ("none", "read_window", "response", "reopen_window")
_KPIS_BY_SETTLE: Final = {s: tuple(k.name for k in CATALOG if k.settle == s) for s in _SETTLES}
_GRANULARITIES: Final[tuple[Granularity, ...]] = ("hour", "day")
#: a channel with no event among the last this many records of its source partition has
#: stopped delivering: it follows its group's watermark again (see channel_mark)
CURRENT_RECORDS: Final = 10_000


@dataclass(frozen=True, slots=True)
class EngineConfig:
    catalog: ChannelCatalog
    clock: WindowClock
    grace_s: float = 600.0
    #: changed (non-final) windows are sent at most this often; finals at once
    emit_interval_s: float = 1.0
    #: ... and at most this often while the worker is behind (catching up on history, whose
    #: windows mostly turn final in the same batch: evaluating them as changed is wasted work)
    behind_emit_interval_s: float = 10.0
    #: partitions of the events topic: a kind's window waits for its group in each of them
    sources: int = 1
    #: partitions of the packed topic: which engine lists which of the catalog's channels
    packed_partitions: int = 1
    #: a state record's largest value; a bigger day bucket is written in chunks of this size
    #: (:mod:`streams.engine.state`), below Kafka's default limit of 1 MiB per record
    max_record_bytes: int = 512 * 1024

    @property
    def rules(self) -> KpiRules:
        return self.catalog.rules

    @property
    def request_days(self) -> int:
        return int(self.rules.max_request_age.calendar_seconds // _DAY) + 1

    @property
    def read_days(self) -> int:
        return int(self.rules.read_window.calendar_seconds // _DAY) + 1

    @property
    def retention_s(self) -> float:
        """How long a day's state is kept after the day: long enough for every rule."""
        rules = self.rules
        longest = max(
            rules.max_request_age.calendar_seconds, 28 * _DAY, rules.read_window.calendar_seconds
        )
        return longest + rules.response_horizon.calendar_seconds + 14 * _DAY + self.grace_s


@dataclass(frozen=True, slots=True)
class KpiUpdate:
    channel_id: str | None  # None: the whole kind (and scope)
    channel_kind: str
    scope: str
    kpi: str
    window: Window
    result: Result
    final: bool


@dataclass(frozen=True, slots=True)
class AlertTransition:
    channel_id: str
    channel_kind: str
    scope: str
    status: str  # "firing" or "resolved"
    last_activity_at: float | None  # None: a listed channel that never had an event
    threshold_business_s: float
    idle_business_s: float
    starts_at: float
    ends_at: float | None


@dataclass(slots=True)
class _Event:
    """The event being applied: which state pieces it found fresh, which it changed."""

    offset: int
    fresh: dict[int, bool] = field(default_factory=dict)
    touched: list[DayBucket] = field(default_factory=list)

    def is_fresh(self, bucket: DayBucket) -> bool:
        key = id(bucket)
        fresh = self.fresh.get(key)
        if fresh is None:
            fresh = self.fresh[key] = self.offset > bucket.applied
            if fresh:
                self.touched.append(bucket)
        return fresh


class PartitionEngine:
    """All state of one packed partition: channels of a kind (or several kinds)."""

    def __init__(self, partition: int, config: EngineConfig) -> None:
        self.partition = partition
        self.config = config
        self.clock = Clock()
        self.metas: dict[str, ChannelMeta] = {}
        self.buckets: dict[tuple[str, int], DayBucket] = {}
        self.late_dropped = 0
        #: events stamped more than grace ahead of the worker's clock: without the cap on the
        #: watermark (see :meth:`apply`), they would have made other events late
        self.ahead_of_clock = 0
        self._clock_now = math.inf
        self.applied_events = 0
        self._dirty_buckets: set[tuple[str, int]] = set()
        self._deleted: set[tuple[str, int]] = set()
        #: buckets written in chunks: (channel, day) -> (generation, chunks) in the changelog
        self._chunked: dict[tuple[str, int], tuple[int, int]] = {}
        #: the latest chunk generation per bucket that ever had chunks
        self._generations: dict[tuple[str, int], int] = {}
        #: chunk keys a crash left behind, deleted at the next checkpoint
        self._stale_chunks: list[bytes] = []
        self._dirty_metas: set[str] = set()
        #: catalog channels with no event yet (:mod:`streams.engine.listed`), and whether the
        #: catalog has been read for them since this engine was made
        self.listed: dict[str, Listed] = {}
        self._dirty_listed: set[str] = set()
        self._catalog_read = False
        self._dirty_windows: set[tuple[str, Granularity, float, int]] = set()
        self._advanced: set[str] = set()
        #: channels whose own watermark rules them (active) and moved on
        self._advanced_channels: set[str] = set()
        #: per kind, the lowest watermark of its active channels (worked out once per round)
        self._active_marks: dict[str, float] | None = None
        self._dirty_clock = False
        self._alerts: list[AlertTransition] = []
        #: last non-final result sent per (channel or None, kind/scope, kpi, granularity, start)
        self.emitted: dict[tuple[str | None, str, str, str, float], Result] = {}
        self._policies: dict[str, ChannelPolicy] = {}
        self._days: dict[str, set[int]] = {}
        self._members: dict[tuple[str, str], list[str]] = {}
        #: (channel, day of first resolution) -> {conversation: day it opened}
        self._resolutions: dict[tuple[str, int], dict[str, int]] = {}
        self._last_emit = float("-inf")
        #: per (channel, granularity), its windows with events as the outputs found them
        #: (:class:`streams.engine.outputs.Timeline`); dropped when they change
        self.windows: dict[tuple[str, Granularity], Timeline] = {}
        #: per (channel, day, granularity), the timeline's entries for that day; dropped when
        #: the day's hours with events change, so a timeline is rebuilt from the days' lists
        self.day_windows: dict[tuple[str, int, Granularity], list[tuple[float, Window, int]]] = {}

    # -- restore -------------------------------------------------------------

    @classmethod
    def restore(
        cls, partition: int, config: EngineConfig, entries: Iterable[tuple[bytes, bytes]]
    ) -> PartitionEngine:
        """Rebuild from the table's entries for ``partition`` (recovered from the changelog)."""
        engine = cls(partition, config)
        heads: list[tuple[str, int, int, int]] = []
        chunks: dict[tuple[str, int], dict[tuple[int, int], bytes]] = {}
        for key, value in entries:
            part, kind, day, channel_id = parse_key(key)
            if part != partition:
                continue
            if kind == "b":
                assert day is not None and channel_id is not None
                head = read_chunk_head(value)
                if head is None:
                    engine.buckets[(channel_id, day)] = DayBucket.load(channel_id, day, value)
                else:
                    heads.append((channel_id, day, *head))
            elif kind == "c":
                channel_id, day, generation, index = parse_chunk_key(key)
                chunks.setdefault((channel_id, day), {})[(generation, index)] = value
            elif kind == "m":
                assert channel_id is not None
                engine.metas[channel_id] = ChannelMeta.load(channel_id, value)
            elif kind == "l":
                assert channel_id is not None
                engine.listed[channel_id] = Listed.load(value)
            elif kind == "clock":
                engine.clock = Clock.load(value)
        for channel_id, day, generation, count in heads:
            parts = chunks.get((channel_id, day), {})
            missing = [i for i in range(count) if (generation, i) not in parts]
            if missing:
                raise ValueError(
                    f"the changelog of partition {partition} names {count} chunks of generation "
                    f"{generation} for channel {channel_id!r} on day {day}, and lacks {missing}"
                )
            raw = b"".join(parts.pop((generation, i)) for i in range(count))
            engine.buckets[(channel_id, day)] = DayBucket.load(channel_id, day, raw)
            engine._chunked[(channel_id, day)] = (generation, count)
            engine._generations[(channel_id, day)] = generation
        for (channel_id, day), left in chunks.items():
            for generation, index in left:  # a write of chunks that a crash cut short
                engine._stale_chunks.append(
                    chunk_key(partition, channel_id, day, generation, index)
                )
                latest = max(generation, engine._generations.get((channel_id, day), generation))
                engine._generations[(channel_id, day)] = latest
        for (channel_id, day), bucket in engine.buckets.items():
            engine._days.setdefault(channel_id, set()).add(day)
            for conversation, state in bucket.requests.items():
                engine._index_resolution(channel_id, conversation, state, day, None)
        for meta in engine.metas.values():
            engine._members.setdefault((meta.kind, meta.scope), []).append(meta.channel_id)
        return engine

    # -- applying events -------------------------------------------------------

    def apply(
        self, source: int, events: Sequence[Mapping[str, Any]], now: float | None = None
    ) -> None:
        """Apply a source partition's events, in their order.

        ``now`` is the worker's wall clock. An event stamped later than that still counts,
        but moves its group's watermark no further than ``now``: one client whose clock runs
        ahead (or that stamps local time as UTC, 8 hours ahead in China) would otherwise
        make every other channel of its group late, and dropped, for as long.
        """
        self._clock_now = math.inf if now is None else now
        self._active_marks = None
        for event in events:
            self._apply(source, event)

    def _apply(self, source: int, e: Mapping[str, Any]) -> None:
        channel_id: str = e["channel_id"]
        meta = self.metas.get(channel_id)
        if meta is not None and e["_o"] <= meta.applied:
            return  # applied before a restart (the state is written before the offsets)
        t: float = e["_t"]
        kind: str = e["channel_kind"]
        group = f"{source}/{kind}"
        watermarks = self.clock.watermarks
        mark = watermarks.get(group)
        # Late against the channel's own watermark while it is active: another channel's
        # history in the same partition does not make this one's late (see channel_mark).
        reference = self.channel_mark(meta) if meta is not None else None
        if reference is not None and t < reference - self.config.grace_s:
            self.late_dropped += 1
            return
        if t > self._clock_now:
            if t > self._clock_now + self.config.grace_s:
                self.ahead_of_clock += 1
            advance = self._clock_now
        else:
            advance = t
        if mark is None or advance > mark:
            watermarks[group] = advance
            self._advanced.add(group)
        self.applied_events += 1

        current = _Event(e["_o"])
        offsets = self.clock.source_offsets
        if current.offset > offsets.get(str(source), -1):
            offsets[str(source)] = current.offset
        if meta is None:
            meta = self._meta(channel_id, kind, e["scope"], source)
            listing = self.listed.pop(channel_id, None)
            if listing is not None:  # its first event: an ordinary channel from now on
                self._dirty_listed.add(channel_id)
                meta.alert = listing.alert  # resolved below if this event ends the silence
        # Going active, the channel keeps the watermark that ruled it, so it never moves back.
        ruling = advance if reference is None else max(reference, advance)
        if reference is None or ruling > reference or not meta.active:
            self._advanced_channels.add(channel_id)
        meta.mark = ruling
        meta.active = True
        self._update_meta(meta, e, t)
        meta.applied = current.offset
        self._dirty_metas.add(channel_id)

        clock = self.config.clock
        day = clock.day(t)
        own = self._bucket(channel_id, day)
        event_type: str = e["event_type"]
        if concerns_request(event_type, kind):
            self._request_event(current, channel_id, e, t, day)
        if event_type in MESSAGE_EVENTS and e.get("message_id") is not None:
            self._message_event(current, channel_id, e, t, day)

        if current.is_fresh(own):
            hour = clock.hour_window(t).start
            count = own.volume.get(hour)
            if count is None:
                count = 0
                self.forget_windows(channel_id, day)
            own.volume[hour] = count + 1
            role: str = e["actor_role"]
            if event_type in ACTIVITY_EVENTS and role in PEOPLE_ROLES:
                if e["actor_id"] not in own.actors:
                    own.actors.add(e["actor_id"])
                    self._dirty_trailing(channel_id, day)
            elif event_type == "meeting_held":
                own.meetings.append((t, float(e["duration_s"]), e.get("planned_duration_s")))
            elif event_type == "survey_answered":
                own.surveys.append((t, int(e["score"])))
            self._dirty_time(channel_id, t)
        for bucket in current.touched:
            bucket.applied = current.offset
            self._dirty_buckets.add((bucket.channel_id, bucket.day))

    def _update_meta(self, meta: ChannelMeta, e: Mapping[str, Any], t: float) -> None:
        if meta.last_activity_at is None or t > meta.last_activity_at:
            meta.last_activity_at = t
        if e["event_type"] == "channel_archived" and (
            meta.archived_at is None or t < meta.archived_at
        ):
            meta.archived_at = t
        alert = meta.alert
        if alert is None:
            return
        last = alert.get("last_activity_at")  # none: listed, and silent since
        if ((last is None or t > last) and not self._still_idle(meta, t)) or (
            meta.archived_at is not None
        ):
            self._resolve(meta.channel_id, meta.kind, meta.scope, alert, t)
            meta.alert = None

    def _resolve(
        self, channel_id: str, kind: str, scope: str, alert: dict[str, float], at: float
    ) -> None:
        """The ``resolved`` transition of an open alert, ending at ``at``."""
        self._alerts.append(
            AlertTransition(
                channel_id,
                kind,
                scope,
                "resolved",
                alert.get("last_activity_at"),
                alert["threshold_s"],
                alert["idle_s"],
                alert["since"],
                at,
            )
        )

    def _still_idle(self, meta: ChannelMeta, t: float) -> bool:
        """Whether activity at ``t`` leaves the channel past its idle threshold at the last tick.

        Activity resolves an alert only if it ends the silence: an old event that arrives
        late (an import of history, a client that was offline) only shortens it.
        """
        policy = self.policy(meta.channel_id)
        now = self.clock.last_tick
        return now is not None and (
            policy.calendar.business_seconds_between(t, now) > policy.idle_business_seconds()
        )

    def _request_event(
        self, current: _Event, channel_id: str, e: Mapping[str, Any], t: float, day: int
    ) -> None:
        conversation = e.get("conversation_id")
        if conversation is None:
            return
        opened = opening_type(e)
        home = self._find(channel_id, conversation, day, self.config.request_days, "requests")
        state = home.requests[conversation] if home is not None else None
        if opened is not None:
            target = self._bucket(channel_id, day)
            if state is None:
                if current.is_fresh(target):
                    state = target.requests[conversation] = RequestState()
                    state.open(opened, t, e["actor_id"], e.get("category"))
                    self._dirty_request(channel_id, state)
                return
            before = state.resolved_at
            assert home is not None
            if state.opened_at is not None and state.opened_at <= t:
                return  # a second opening changes nothing
            fresh_home = current.is_fresh(home)
            if home is not target:
                # The request now opens on another day: it moves to that day's bucket.
                if fresh_home:
                    del home.requests[conversation]
                if not current.is_fresh(target):
                    return
                target.requests[conversation] = state
            elif not fresh_home:
                return
            self._dirty_request(channel_id, state)
            state.open(opened, t, e["actor_id"], e.get("category"))
            self._dirty_request(channel_id, state)
            self._index_resolution(channel_id, conversation, state, target.day, before)
            return

        role = role_in_request(e)
        if role is None:
            return
        if state is None:
            target = self._bucket(channel_id, day)
            if current.is_fresh(target):
                state = target.requests[conversation] = RequestState()  # before its opening arrives
                state.apply(role, t, e["actor_id"])
                self._index_resolution(channel_id, conversation, state, target.day, None)
            return
        assert home is not None
        if (
            state.opened_at is not None
            and t - state.opened_at > self.config.rules.max_request_age.calendar_seconds
        ):
            return
        before = state.resolved_at
        if current.is_fresh(home) and state.apply(role, t, e["actor_id"]):
            self._dirty_request(channel_id, state)
            if before is not None:
                self._dirty_time(channel_id, before)
            self._index_resolution(channel_id, conversation, state, home.day, before)

    def _message_event(
        self, current: _Event, channel_id: str, e: Mapping[str, Any], t: float, day: int
    ) -> None:
        message_id: str = e["message_id"]
        home = self._find(channel_id, message_id, day, self.config.read_days, "messages")
        event_type = e["event_type"]
        state = home.messages[message_id] if home is not None else None
        if event_type == "message_sent":
            target = self._bucket(channel_id, day)
            if state is None:
                if current.is_fresh(target):
                    state = target.messages[message_id] = MessageState()
                    state.send(t, e["actor_id"], e.get("recipient_count"))
                    self._dirty_time(channel_id, t)
                return
            assert home is not None
            if state.sent_at is not None and state.sent_at <= t:
                return
            if home is not target:
                if current.is_fresh(home):
                    del home.messages[message_id]
                if not current.is_fresh(target):
                    return
                target.messages[message_id] = state
            elif not current.is_fresh(home):
                return
            if state.sent_at is not None:
                self._dirty_time(channel_id, state.sent_at)
            state.send(t, e["actor_id"], e.get("recipient_count"))
            self._dirty_time(channel_id, t)
            return
        if state is None:
            target = self._bucket(channel_id, day)
            if not current.is_fresh(target):
                return
            state = target.messages[message_id] = MessageState()  # before its send arrives
        elif home is not None and not current.is_fresh(home):
            return
        changed = (
            state.read(t, e["actor_id"])
            if event_type == "message_read"
            else state.flag(event_type, t)
        )
        if changed and state.sent_at is not None:
            self._dirty_time(channel_id, state.sent_at)

    # -- lookups and dirt ------------------------------------------------------

    def _find(self, channel_id: str, key: str, day: int, days: int, what: str) -> DayBucket | None:
        """The bucket holding request/message ``key``: the nearest day first, ``days`` either way."""
        buckets = self.buckets
        for offset in range(days + 2):
            for candidate in (day - offset, day + offset) if offset else (day,):
                bucket = buckets.get((channel_id, candidate))
                if bucket is not None and key in getattr(bucket, what):
                    return bucket
        return None

    def _meta(self, channel_id: str, kind: str, scope: str, source: int) -> ChannelMeta:
        meta = self.metas.get(channel_id)
        if meta is None:
            meta = self.metas[channel_id] = ChannelMeta(channel_id, kind, scope, source)
            self._members.setdefault((kind, scope), []).append(channel_id)
            self._dirty_metas.add(channel_id)
            info = self.config.catalog.info(channel_id)
            if info is not None and info.kind is not None and info.kind.value != kind:
                log.warning(
                    "channel=%s its events say kind=%s, the catalog says kind=%s: the stream "
                    "counts them under %s, the warehouse under %s, and the catalog's entry "
                    "stays without events (it will be reported idle); correct the catalog",
                    channel_id,
                    kind,
                    info.kind.value,
                    kind,
                    info.kind.value,
                )
        return meta

    def _bucket(self, channel_id: str, day: int) -> DayBucket:
        bucket = self.buckets.get((channel_id, day))
        if bucket is None:
            bucket = self.buckets[(channel_id, day)] = DayBucket(channel_id, day)
            self._days.setdefault(channel_id, set()).add(day)
            self._deleted.discard((channel_id, day))
        return bucket

    def policy(self, channel_id: str) -> ChannelPolicy:
        policy = self._policies.get(channel_id)
        if policy is None:
            meta = self.metas[channel_id]
            policy = self._policies[channel_id] = self.config.catalog.policy(channel_id, meta.kind)
        return policy

    def _dirty_time(self, channel_id: str, t: float) -> None:
        clock = self.config.clock
        day = clock.day(t)
        self._dirty_windows.add((channel_id, "hour", clock.hour_window(t).start, day))
        self._dirty_windows.add((channel_id, "day", clock.day_window(day).start, day))

    def _dirty_request(self, channel_id: str, state: RequestState) -> None:
        if state.opened_at is not None:
            self._dirty_time(channel_id, state.opened_at)
        if state.resolved_at is not None:
            self._dirty_time(channel_id, state.resolved_at)

    def _index_resolution(
        self,
        channel_id: str,
        conversation: str,
        state: RequestState,
        home_day: int,
        before: float | None,
    ) -> None:
        """Keep the resolutions index right after ``state`` changed (resolved at ``before`` until now)."""
        clock = self.config.clock
        if before is not None:
            self._resolutions.get((channel_id, clock.day(before)), {}).pop(conversation, None)
        if state.resolved_at is not None:
            self._resolutions.setdefault((channel_id, clock.day(state.resolved_at)), {})[
                conversation
            ] = home_day

    def resolved_on(self, channel_id: str, day: int) -> Iterator[tuple[str, RequestState]]:
        """Requests of ``channel_id`` first resolved on ``day``, with their state."""
        for conversation, home_day in list(self._resolutions.get((channel_id, day), {}).items()):
            bucket = self.buckets.get((channel_id, home_day))
            state = bucket.requests.get(conversation) if bucket is not None else None
            if state is not None:
                yield conversation, state

    def _dirty_trailing(self, channel_id: str, day: int) -> None:
        """A new actor on ``day`` changes the trailing active-user windows of the days after it
        that count ``day`` (27 by default)."""
        clock = self.config.clock
        for later in range(day, day + TRAILING_DAYS):
            if (channel_id, later) in self.buckets:
                self._dirty_windows.add((channel_id, "day", clock.day_window(later).start, later))

    # -- what the outputs need -------------------------------------------------

    def days_of(self, channel_id: str) -> set[int]:
        return self._days.get(channel_id, set())

    def forget_windows(self, channel_id: str, day: int) -> None:
        """The channel's windows with events change on ``day`` (an hour with its first event,
        the day gone)."""
        for granularity in _GRANULARITIES:
            self.windows.pop((channel_id, granularity), None)
            self.day_windows.pop((channel_id, day, granularity), None)

    def channels_of(self, kind: str, scope: str) -> list[str]:
        return self._members.get((kind, scope), [])

    def take_dirty_windows(self) -> set[tuple[str, Granularity, float, int]]:
        dirty, self._dirty_windows = self._dirty_windows, set()
        return dirty

    def take_advanced_groups(self) -> set[str]:
        advanced, self._advanced = self._advanced, set()
        return advanced

    def take_advanced_channels(self) -> set[str]:
        advanced, self._advanced_channels = self._advanced_channels, set()
        return advanced

    def _current(self, meta: ChannelMeta) -> bool:
        """Whether the channel is active and still delivering: it had an event among the last
        :data:`CURRENT_RECORDS` records of its source partition."""
        if not meta.active:
            return False
        latest = self.clock.source_offsets.get(str(meta.source), meta.applied)
        return latest - meta.applied <= CURRENT_RECORDS

    def channel_mark(self, meta: ChannelMeta) -> float | None:
        """The watermark that rules a channel's windows, lateness and SLA statuses.

        A channel that has had events since its source partition was last found idle,
        and one among the last :data:`CURRENT_RECORDS` records of the partition, follows
        its own watermark: its history may come after another channel's in the same
        partition (an export written channel by channel), and the group's watermark would
        make it late and close its windows before it has arrived. Otherwise it follows
        its group's as well, so that a quiet channel's last windows turn final as the
        partition moves on, also while the worker catches up on history.
        """
        own = meta.mark
        if own is not None and self._current(meta):
            return own
        group = self.clock.watermarks.get(f"{meta.source}/{meta.kind}")
        if own is None or group is None:
            return group if own is None else own
        return max(own, group)

    def mark_meta_dirty(self, channel_id: str) -> None:
        self._dirty_metas.add(channel_id)

    def mark_clock_dirty(self) -> None:
        self._dirty_clock = True

    # -- after a batch -----------------------------------------------------------

    def updates(
        self, now: float, *, behind: bool = False
    ) -> tuple[list[KpiUpdate], list[AlertTransition]]:
        """KPI windows that became final (and, once per emit interval, that changed), and alerts.

        ``behind``: more input is waiting and it is old (catching up); changes go out less often.
        """
        from streams.engine.outputs import collect_updates

        config = self.config
        interval = config.behind_emit_interval_s if behind else config.emit_interval_s
        emit_changes = now - self._last_emit >= interval
        if emit_changes:
            self._last_emit = now
        kpis = collect_updates(self, emit_changes=emit_changes)
        self._expire()
        alerts, self._alerts = self._alerts, []
        return kpis, alerts

    def tick(
        self,
        now: float,
        sources: Iterable[int],
        assigned: Iterable[int] | None = None,
        *,
        offset: int | None = None,
        backfill: Iterable[int] = (),
    ) -> None:
        """A packer (reading ``assigned``) has caught up with ``sources`` at wall-clock ``now``.

        A source caught up at two ticks in a row is idle: its groups move up to
        their kind's watermark as it stood at the earlier tick, so a quiet
        partition does not hold the kind's windows back, and a burst still
        being written to several partitions at once does not make its own
        events late. Channels of caught-up sources quiet for too long get an
        idle alert, except on the sources in ``backfill``: those have just
        delivered old events, so history is being imported, and a channel's
        later history may still be on its way (the packer can read all there
        is between two parts of an import).

        ``offset`` is the tick's offset in the packed partition. A tick at or
        before the last one applied is a replay (offsets are committed after
        the state is written) and is ignored: judged against the newer state,
        an old tick would call a busy source idle and make its next events late.
        """
        if offset is not None:
            if offset <= self.clock.tick_offset:
                return
            self.clock.tick_offset = offset
            self._dirty_clock = True
        caught_up = set(sources)
        self._idle_groups(caught_up, set(assigned) if assigned is not None else caught_up)
        clock = self.clock
        if clock.last_tick is None or now > clock.last_tick:
            clock.last_tick = now
            self._dirty_clock = True
        # Another worker's tick can be a little older than the last one (their clocks and
        # sends are not in step): it still judges its own sources, against its own time.
        judged = caught_up.difference(backfill)
        for meta in self.metas.values():
            if meta.source not in judged or meta.archived_at is not None or meta.alert is not None:
                continue
            if meta.last_activity_at is None:
                continue
            last = meta.last_activity_at
            meta.alert = self._idle_alert(meta.channel_id, meta.kind, meta.scope, last, last, now)
            if meta.alert is not None:
                self._dirty_metas.add(meta.channel_id)
        self._list_catalog(now)
        for channel_id, listing in self.listed.items():
            if listing.source not in judged or listing.alert is not None:
                continue
            listing.alert = self._idle_alert(
                channel_id, listing.kind, listing.scope, listing.since, None, now
            )
            if listing.alert is not None:
                self._dirty_listed.add(channel_id)

    def _idle_alert(
        self,
        channel_id: str,
        kind: str,
        scope: str,
        quiet_since: float,
        last: float | None,
        now: float,
    ) -> dict[str, float] | None:
        """A firing alert if the channel, silent since ``quiet_since``, is past its idle
        threshold at ``now``. ``last``: its last activity (None: listed, never active)."""
        policy = self.config.catalog.policy(channel_id, kind)
        threshold = policy.idle_business_seconds()
        idle = policy.calendar.business_seconds_between(quiet_since, now)
        if idle <= threshold:
            return None
        since = policy.calendar.add_business_seconds(quiet_since, threshold)
        alert = {"since": since, "idle_s": idle, "threshold_s": threshold}
        if last is not None:
            alert["last_activity_at"] = last
        self._alerts.append(
            AlertTransition(channel_id, kind, scope, "firing", last, threshold, idle, since, None)
        )
        return alert

    def _list_catalog(self, now: float) -> None:
        """List the catalog's channels of this partition that have had no event, once per
        engine (a worker reads the catalog at start); unlist those the catalog dropped."""
        if self._catalog_read:
            return
        self._catalog_read = True
        config = self.config
        wanted = catalog_listing(
            config.catalog, self.partition, config.packed_partitions, config.sources
        )
        for channel_id, listing in list(self.listed.items()):
            if wanted.get(channel_id) == (listing.kind, listing.scope, listing.source):
                continue
            del self.listed[channel_id]
            self._dirty_listed.add(channel_id)
            if listing.alert is not None:
                self._resolve(channel_id, listing.kind, listing.scope, listing.alert, now)
        for channel_id, (kind, scope, source) in wanted.items():
            if channel_id not in self.metas and channel_id not in self.listed:
                self.listed[channel_id] = Listed(kind, scope, source, now)
                self._dirty_listed.add(channel_id)

    def _idle_groups(self, caught_up: set[int], assigned: set[int]) -> None:
        clock = self.clock
        watermarks = clock.watermarks
        latest: dict[str, float] = {}
        for group, mark in watermarks.items():
            kind = group.split("/", 1)[1]
            latest[kind] = max(mark, latest.get(kind, mark))
        for source in assigned - caught_up:
            if clock.idle.pop(str(source), None) is not None:
                self._dirty_clock = True
        # Caught up at this tick and the one before: the channels of the source have
        # delivered all they had, and follow their groups again.
        quiet = {source for source in caught_up if str(source) in clock.idle}
        if quiet:
            for meta in self.metas.values():
                if meta.active and meta.source in quiet:
                    meta.active = False
                    self._dirty_metas.add(meta.channel_id)
                    self._advanced_channels.add(meta.channel_id)
            self._active_marks = None
        for source in caught_up:
            for kind, mark in clock.idle.get(str(source), {}).items():
                group = f"{source}/{kind}"
                if watermarks.get(group, float("-inf")) < mark:
                    watermarks[group] = mark
                    self._advanced.add(group)
            clock.idle[str(source)] = dict(latest)
            self._dirty_clock = True

    def kind_watermark(self, kind: str) -> float:
        """The lowest watermark of ``kind``'s groups over every source partition, and of its
        active channels (one that delivers history later than the others holds it back)."""
        watermarks = self.clock.watermarks
        sources = set(range(self.config.sources))
        sources.update(
            int(group.split("/", 1)[0]) for group in watermarks if group.endswith(f"/{kind}")
        )
        lowest = min(watermarks.get(f"{source}/{kind}", float("-inf")) for source in sources)
        if self._active_marks is None:
            marks: dict[str, float] = {}
            for meta in self.metas.values():
                if meta.mark is not None and self._current(meta):
                    marks[meta.kind] = min(meta.mark, marks.get(meta.kind, meta.mark))
            self._active_marks = marks
        return min(lowest, self._active_marks.get(kind, lowest))

    def checkpoint(self) -> list[tuple[bytes, bytes | None]]:
        """Table writes for everything changed since the last checkpoint; the clock comes last."""
        writes: list[tuple[bytes, bytes | None]] = [(key, None) for key in self._stale_chunks]
        self._stale_chunks.clear()
        p = self.partition
        for channel_id, day in sorted(self._dirty_buckets):
            bucket = self.buckets.get((channel_id, day))
            if bucket is not None:
                writes += self._bucket_writes(channel_id, day, bucket.dump())
        for channel_id, day in sorted(self._deleted):
            writes.append((bucket_key(p, channel_id, day), None))
            writes += self._chunks_gone(channel_id, day)
            self._generations.pop((channel_id, day), None)
        for channel_id in sorted(self._dirty_metas):
            writes.append((meta_key(p, channel_id), self.metas[channel_id].dump()))
        for channel_id in sorted(self._dirty_listed):
            listing = self.listed.get(channel_id)
            writes.append((listed_key(p, channel_id), None if listing is None else listing.dump()))
        if writes or self._dirty_clock:
            writes.append((clock_key(p), self.clock.dump()))
        self._dirty_buckets.clear()
        self._deleted.clear()
        self._dirty_metas.clear()
        self._dirty_listed.clear()
        self._dirty_clock = False
        return writes

    def _bucket_writes(
        self, channel_id: str, day: int, raw: bytes
    ) -> list[tuple[bytes, bytes | None]]:
        """A bucket's records: the bucket whole, or its chunks and then their head; and then
        tombstones for the chunks it had before (see :mod:`streams.engine.state`)."""
        limit = self.config.max_record_bytes
        before = self._chunks_gone(channel_id, day)
        if len(raw) <= limit:
            return [(bucket_key(self.partition, channel_id, day), raw), *before]
        generation = self._generations.get((channel_id, day), -1) + 1
        self._generations[(channel_id, day)] = generation
        starts = range(0, len(raw), limit)
        writes: list[tuple[bytes, bytes | None]] = [
            (chunk_key(self.partition, channel_id, day, generation, i), raw[start : start + limit])
            for i, start in enumerate(starts)
        ]
        writes.append(
            (bucket_key(self.partition, channel_id, day), chunk_head(generation, len(starts)))
        )
        self._chunked[(channel_id, day)] = (generation, len(starts))
        return writes + before

    def _chunks_gone(self, channel_id: str, day: int) -> list[tuple[bytes, bytes | None]]:
        """Tombstones for the chunks the bucket has in the changelog, if any."""
        chunked = self._chunked.pop((channel_id, day), None)
        if chunked is None:
            return []
        generation, count = chunked
        return [
            (chunk_key(self.partition, channel_id, day, generation, i), None) for i in range(count)
        ]

    def _expire(self) -> None:
        """Forget days whose every rule has run out (their windows are final by then)."""
        retention = self.config.retention_s
        clock = self.config.clock
        for channel_id, days in self._days.items():
            meta = self.metas.get(channel_id)
            if meta is None:
                # Restored from a checkpoint that a kill cut short: its days were written,
                # not the channel. The replay of that batch brings the channel back.
                continue
            mark = self.channel_mark(meta)
            if mark is None:
                continue
            expired = [
                d
                for d in days
                if clock.day_window(d).end + retention < mark and self._kind_final(meta, d)
            ]
            for day in expired:
                days.discard(day)
                del self.buckets[(channel_id, day)]
                self.forget_windows(channel_id, day)
                # Resolutions on that day belong to requests of that day or before: gone too.
                self._resolutions.pop((channel_id, day), None)
                self._dirty_buckets.discard((channel_id, day))
                self._deleted.add((channel_id, day))

    def _kind_final(self, meta: ChannelMeta, day: int) -> bool:
        """Whether the kind windows that read ``meta``'s channel's ``day`` are all final: those
        it has events in, those its requests were resolved in, and the active users of the days
        after it that look back on it.

        A kind's window turns final once the kind has moved on in every source partition,
        which can be long after the channel's own windows did.
        """
        bucket = self.buckets[(meta.channel_id, day)]
        if not bucket.volume:
            return True
        clock = self.config.clock
        ends = [
            (granularity, settle, end)
            for granularity, end in (
                ("day", clock.day_window(day).end),
                ("hour", max(bucket.volume) + 3600),
            )
            for settle in _SETTLES
        ]
        resolved = [
            state.resolved_at for state in bucket.requests.values() if state.resolved_at is not None
        ]
        if resolved:
            # The day's requests count (first-contact resolution) where they were resolved.
            last_resolved = max(resolved)
            ends.append(("hour", "reopen_window", clock.hour_window(last_resolved).end))
            ends.append(("day", "reopen_window", clock.day_window(clock.day(last_resolved)).end))
        markers = self.clock.kind_finalized
        prefix = f"{meta.kind}/{meta.scope}"
        if not all(
            markers.get(f"{prefix}/{granularity}/{settle}", float("-inf")) >= end
            for granularity, settle, end in ends
        ):
            return False
        if not bucket.actors:
            return True
        # The kind's windows with events up to the last day that looks back on this one:
        # none can come any more, and those there are have been made final.
        last = day + TRAILING_DAYS - 1
        if self.kind_watermark(meta.kind) - self.config.grace_s < clock.day_window(last).end:
            return False
        latest = self._latest_kind_day(meta.kind, meta.scope, day, last)
        return markers.get(f"{prefix}/day/none", float("-inf")) >= clock.day_window(latest).end

    def _latest_kind_day(self, kind: str, scope: str, first: int, last: int) -> int:
        """The last day from ``first`` to ``last`` on which a channel of the kind has events."""
        latest = first
        for channel_id in self.channels_of(kind, scope):
            for day in self._days.get(channel_id, ()):
                if latest < day <= last and self.buckets[(channel_id, day)].volume:
                    latest = day
        return latest
