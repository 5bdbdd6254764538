"""What every story draws on: randomness, business hours, people and fresh ids.

A story is a function ``(kit, channel, start) -> list[Pending]``: everything
that will happen on one conversation, thread, call or meeting that begins at
``start``, as raw events whose ``occurred_at`` is still epoch seconds. The
engine drops what falls after the end, adds event ids, orders, and turns
``occurred_at`` into a datetime.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Callable
from itertools import accumulate
from math import exp, log
from random import Random
from typing import Any, Final, TypeAlias

from ingest.events import ActorRole, EventType
from ingest.simulator.clock import BusinessClock
from ingest.simulator.org import Channel, Organisation

__all__ = ["Kit", "Pending", "StoryFn", "event"]

#: A raw event in the making: ``occurred_at`` is a float (epoch seconds), no ``event_id`` yet.
Pending: TypeAlias = dict[str, Any]
StoryFn: TypeAlias = Callable[["Kit", Channel, float], list[Pending]]

#: The actor id of the system that reports bounces.
MAILER: Final = "system-mailer"

_MINUTE: Final = 60.0
_HOUR: Final = 3600.0
_DAY: Final = 86_400.0

# Satisfaction scores 1..5: mostly 4-5, complaints less so.
_SCORES: Final = (1, 2, 3, 4, 5)
_HAPPY: Final = tuple(accumulate((0.05, 0.05, 0.12, 0.33, 0.45)))
_UNHAPPY: Final = tuple(accumulate((0.18, 0.17, 0.25, 0.22, 0.18)))

_SURVEY: Final = EventType.SURVEY_ANSWERED.value
_CUSTOMER: Final = ActorRole.CUSTOMER.value


def event(channel: Channel, ts: float, event_type: str, actor: str, role: str) -> Pending:
    """The common fields of a raw event on ``channel`` at ``ts``."""
    return {
        "occurred_at": ts,
        "event_type": event_type,
        "channel_id": channel.id,
        "channel_kind": channel.kind,
        "scope": channel.scope,
        "actor_id": actor,
        "actor_role": role,
    }


class Kit:
    """Shared tools of the stories of one simulation run."""

    def __init__(self, rng: Random, clock: BusinessClock, org: Organisation, tag: str) -> None:
        self.rng = rng
        self.random = rng.random
        self.next_working = clock.next_working
        self.add_working = clock.add_working
        self.org = org
        self._tag = tag
        self._serial = 0

    def new_id(self, prefix: str) -> str:
        """A conversation or message id: unique within the run, and the run's tag
        (drawn from the seed) keeps runs with other seeds apart."""
        self._serial += 1
        return f"{prefix}-{self._tag}-{self._serial:x}"

    def chance(self, probability: float) -> bool:
        return self.random() < probability

    def pick(self, items: tuple[str, ...]) -> str:
        return items[int(self.random() * len(items))]

    def expo(self, mean: float) -> float:
        """An exponential delay with this mean (> 0)."""
        return -mean * log(1.0 - self.random())

    def lognormal(self, median: float, sigma: float) -> float:
        return median * exp(sigma * self.rng.gauss())

    def working_delay(self, ts: float, working_seconds: float) -> float:
        """``ts`` plus so much working time: someone who answers only in business hours."""
        return self.add_working(ts, working_seconds)

    def soon_or_next_morning(self, ts: float, mean: float, off_hours_cover: float) -> float:
        """A reply by a 24/7 desk that is thin outside business hours."""
        if self.next_working(ts) == ts or self.random() < off_hours_cover:
            return ts + self.expo(mean)
        return self.add_working(ts, self.expo(mean))

    def customer(self) -> str:
        """A customer id; some customers come back more often than others."""
        return f"cust-{int(self.org.customers * self.random() ** 2):06d}"

    def department_member(self, department: str) -> str:
        return self.pick(self.org.members[department] or self.org.employees)

    def survey(
        self,
        channel: Channel,
        ts: float,
        actor: str,
        conversation: str,
        unhappy: bool = False,
        role: str = _CUSTOMER,
    ) -> Pending:
        """A satisfaction survey answered after the conversation closed."""
        weights = _UNHAPPY if unhappy else _HAPPY
        raw = event(channel, ts + 60.0 + self.expo(4 * _HOUR), _SURVEY, actor, role)
        raw["conversation_id"] = conversation
        raw["score"] = _SCORES[bisect(weights, self.random() * weights[-1])]
        return raw
