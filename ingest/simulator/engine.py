"""The scheduler: exactly N events, in time order, in bounded memory.

The simulated span ``(end - days, end]`` is cut into hourly slots. Each slot
gets an exact event budget (the budgets add up to N), weighted by how busy
that hour is: working hours of working days most, evenings, weekends and
holidays less, nights least. A slot is filled with stories that start in it,
on channels drawn from the slot's traffic mix, until their events (those at
or before ``end`` and before their channel went quiet) fill its budget; the
last story's tail is cut off.

Stories only start inside their slot and their events never precede their
start, so once slot *s* is filled, nothing can still land before its end: its
bucket is sorted and emitted. Memory holds the pending buckets only (the
current hour plus the tails of open stories: replies due tomorrow, late
reads), never the whole output.
"""

from __future__ import annotations

import logging
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from operator import itemgetter
from random import Random
from typing import Any, Final
from zoneinfo import ZoneInfo

from ingest.events import ActorRole, EventType, Scope
from ingest.simulator import messaging, service
from ingest.simulator.clock import BusinessClock
from ingest.simulator.kit import Kit, Pending, StoryFn, event
from ingest.simulator.org import Channel, Story, build_organisation

__all__ = ["generate"]

log = logging.getLogger(__name__)

_SLOT: Final = 3600.0
_DAY: Final = 86_400.0
#: Business hours are laid out a little past the end; later events are dropped anyway.
_HORIZON_DAYS: Final = 2

_STORIES: Final[dict[Story, StoryFn]] = {
    "email": messaging.email,
    "im": messaging.im,
    "meeting": messaging.meeting,
    "announcement": messaging.announcement,
    "forum": messaging.forum,
    "knowledge_base": messaging.knowledge_base,
    "request": service.request,
    "chat": service.chat,
    "hotline": service.call,
    "service_mail": service.service_mail,
}

# Per (kind, scope): stories started per working hour (relative), how much of
# that carries on outside working time (relative to the hour's off-hours
# level), and roughly how many events a story makes.
_MIX: Final[dict[tuple[str, str], tuple[float, float, float]]] = {
    ("im", "internal"): (10.0, 0.15, 11.0),
    ("email", "internal"): (5.0, 0.2, 12.0),
    ("meeting", "internal"): (6.0, 0.02, 1.0),
    ("announcement", "internal"): (0.08, 0.02, 200.0),
    ("forum", "internal"): (1.0, 0.3, 12.0),
    ("knowledge_base", "internal"): (0.6, 0.3, 30.0),
    ("ticket", "internal"): (0.6, 0.1, 6.0),
    ("hotline", "external"): (10.0, 0.8, 2.2),
    ("live_chat", "external"): (4.0, 1.0, 7.0),
    ("social", "external"): (2.0, 1.2, 5.0),
    ("ticket", "external"): (4.0, 0.7, 6.0),
    ("crm", "external"): (2.0, 0.3, 6.0),
    ("partner_portal", "external"): (1.0, 0.4, 6.0),
    ("email", "external"): (1.5, 1.0, 5.0),
}

_time = itemgetter("occurred_at")


@dataclass(frozen=True, slots=True)
class _Group:
    """Channels of one kind and scope, with cumulative weights for drawing one."""

    channels: tuple[Channel, ...]
    cumulative: tuple[float, ...]
    stories: float
    off_hours: float
    events: float

    def draw(self, random: Callable[[], float], at: float) -> Channel:
        """A channel of the group that is live at ``at`` (the first one always is)."""
        channels, cumulative = self.channels, self.cumulative
        last = len(channels) - 1
        for _ in range(8):
            channel = channels[min(bisect(cumulative, random() * cumulative[-1]), last)]
            if channel.since < at < channel.until:
                return channel
        return channels[0]


def generate(
    events: int, days: int, seed: int, end: datetime, zone: ZoneInfo
) -> Iterator[dict[str, Any]]:
    """Exactly ``events`` raw events over ``(end - days, end]``, in time order."""
    schedule = _Schedule(events, days, seed, end, zone)
    from_ts = datetime.fromtimestamp
    for slot in range(schedule.slots + 1):
        for raw in schedule.fill(slot):
            raw["occurred_at"] = from_ts(raw["occurred_at"], UTC)
            yield raw


class _Schedule:
    """The state of one run: the organisation, the slot budgets and the pending buckets."""

    def __init__(self, events: int, days: int, seed: int, end: datetime, zone: ZoneInfo) -> None:
        master = Random(seed)
        org_rng, rng = Random(master.getrandbits(64)), Random(master.getrandbits(64))
        tag = f"{master.getrandbits(32):08x}"
        self.end = end_ts = end.timestamp()
        self.start = start_ts = end_ts - days * _DAY
        first_day = (datetime.fromtimestamp(start_ts, zone) - timedelta(days=1)).date()
        last_day = (end.astimezone(zone) + timedelta(days=_HORIZON_DAYS)).date()
        clock = BusinessClock(zone, first_day, last_day)
        org = build_organisation(org_rng, start_ts, end_ts)
        self.kit = Kit(rng, clock, org, tag)
        self.random, self.getrandbits = rng.random, rng.getrandbits
        self.groups = _groups(org.channels)
        self.slots = days * 24
        self.profiles = [
            _profile(clock, start_ts + s * _SLOT, self._slot_end(s)) for s in range(self.slots)
        ]
        self.budgets = _budgets(events, self.profiles, self.groups, rng) + [0]
        self.lifecycle = sorted(_lifecycle_events(self.kit, org.channels), key=_time)
        self.lifecycle_at = 0
        #: buckets[s]: events in [start + s hours, start + s + 1 hours); the last one holds ``end``
        self.buckets: list[list[Pending]] = [[] for _ in range(self.slots + 1)]
        log.debug(
            "simulating events=%d days=%d seed=%d channels=%d",
            events, days, seed, len(org.channels),
        )  # fmt: skip

    def _slot_end(self, slot: int) -> float:
        return min(self.start + (slot + 1) * _SLOT, self.end)

    def fill(self, slot: int) -> list[Pending]:
        """Start the slot's stories until its budget is spent; return its bucket, in time order."""
        remaining = self.budgets[slot]
        slot_end = self._slot_end(slot)
        lifecycle = self.lifecycle
        while (
            self.lifecycle_at < len(lifecycle)
            and lifecycle[self.lifecycle_at]["occurred_at"] <= slot_end
        ):
            if remaining:
                self._keep([lifecycle[self.lifecycle_at]])
                remaining -= 1
            self.lifecycle_at += 1
        if remaining:
            random, kit, groups, end = self.random, self.kit, self.groups, self.end
            working, off_level = self.profiles[slot]
            rates = list(
                accumulate(
                    g.stories * (working + (1 - working) * off_level * g.off_hours) for g in groups
                )
            )
            last_group = len(groups) - 1
            while remaining:
                at = slot_end - (_SLOT - 1.0) * random()
                channel = groups[min(bisect(rates, random() * rates[-1]), last_group)].draw(
                    random, at
                )
                limit = channel.until - 1e-3 if channel.until <= end else end
                kept = [
                    raw
                    for raw in _STORIES[channel.story](kit, channel, at)
                    if raw["occurred_at"] <= limit
                ]
                if len(kept) > remaining:
                    kept.sort(key=_time)
                    del kept[remaining:]
                remaining -= len(kept)
                self._keep(kept)
        bucket = self.buckets[slot]
        self.buckets[slot] = []
        bucket.sort(key=_time)
        return bucket

    def _keep(self, kept: list[Pending]) -> None:
        """Give events their ids and put them in the buckets of their hours."""
        buckets, start, getrandbits = self.buckets, self.start, self.getrandbits
        for raw in kept:
            # str(uuid.UUID(int=getrandbits(128), version=4)), only faster
            h = "%032x" % (getrandbits(128) & _VERSION_MASK | _VERSION_BITS)
            raw["event_id"] = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            buckets[int((raw["occurred_at"] - start) / _SLOT)].append(raw)


_VERSION_MASK: Final = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS: Final = (0x4000 << 64) | (0x8000 << 48)


def _groups(channels: tuple[Channel, ...]) -> list[_Group]:
    by_group: dict[tuple[str, str], list[Channel]] = {}
    for channel in channels:
        by_group.setdefault(channel.group, []).append(channel)
    groups = []
    for key, members in by_group.items():
        stories, off_hours, size = _MIX[key]
        cumulative = tuple(accumulate(channel.weight for channel in members))
        groups.append(_Group(tuple(members), cumulative, stories, off_hours, size))
    return groups


def _profile(clock: BusinessClock, start: float, end: float) -> tuple[float, float]:
    """(share of working time, off-hours level) of one slot."""
    if end <= start:
        return 0.0, 0.0
    return clock.working_fraction(start, end), clock.off_hours_level((start + end) / 2)


def _budgets(
    events: int, profiles: list[tuple[float, float]], groups: list[_Group], rng: Random
) -> list[int]:
    """Per-slot event budgets adding up to exactly ``events``, by systematic rounding."""
    in_hours = sum(g.stories * g.events for g in groups)
    off_hours = sum(g.stories * g.events * g.off_hours for g in groups)
    weights = [
        working * in_hours + (1 - working) * level * off_hours for working, level in profiles
    ]
    total = sum(weights)
    offset = rng.random()
    budgets = []
    done = 0
    cumulative = 0.0
    for weight in weights[:-1]:
        cumulative += weight
        reached = int(min(events * cumulative / total, events) + offset)
        budgets.append(reached - done)
        done = reached
    budgets.append(events - done)  # int(events + offset) == events
    return budgets


def _lifecycle_events(kit: Kit, channels: tuple[Channel, ...]) -> Iterator[Pending]:
    """``channel_created`` / ``channel_archived`` for channels that begin or end during the span."""
    for channel in channels:
        changes = (
            (channel.created_at, EventType.CHANNEL_CREATED),
            (channel.archived_at, EventType.CHANNEL_ARCHIVED),
        )
        for at, event_type in changes:
            if at is None:
                continue
            admin = kit.pick(kit.org.admins or kit.org.employees)
            raw = event(channel, at, event_type.value, admin, ActorRole.EMPLOYEE.value)
            if channel.scope == Scope.INTERNAL:
                raw["department"] = kit.org.department_of[admin]
            yield raw
