"""The workload simulator: a mid-size organisation's channel activity, as raw events.

A seeded, synthetic organisation (departments, a few hundred to a few thousand
employees, dozens of agents, thousands of customers, partners, bots) with
about 300 channels of all twelve kinds, internal and external, working in
business hours in one time zone. Requests follow the request rules the SLA and
first-contact-resolution KPIs are computed from; messages are read, late or
never; a few channels are created, archived, or go quiet near the end.

>>> from datetime import UTC, datetime
>>> config = SimulationConfig(events=3, end=datetime(2026, 9, 30, tzinfo=UTC))
>>> len(list(simulate(config)))
3

Each item is a dict of :class:`ingest.events.Event` fields (``occurred_at`` a
UTC datetime, enums as their values, ``None`` fields left out) with a *raw*
``actor_id``: the producer validates and pseudonymises it. The same config
(with an explicit ``end``) gives the same events, ids included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.errors import ConfigurationError
from ingest.simulator.engine import generate

__all__ = ["SimulationConfig", "simulate"]


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Invalid values raise :class:`ingest.errors.ConfigurationError`.

    The history is the ``days`` × 24 hours of elapsed time up to ``end``:
    every event has ``end - timedelta(days=days) < occurred_at <= end``, as
    instants (the organisation's own clock may have changed for summer time).
    """

    #: exact number of events to produce
    events: int
    #: span of simulated history, a quarter by default
    days: int = 90
    seed: int = 0
    #: tz-aware end of the history; None means now (UTC)
    end: datetime | None = None
    #: the organisation's time zone (a zoneinfo name)
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if isinstance(self.events, bool) or not isinstance(self.events, int) or self.events < 0:
            raise ConfigurationError(f"events must be a whole number >= 0, not {self.events!r}")
        if isinstance(self.days, bool) or not isinstance(self.days, int) or self.days < 1:
            raise ConfigurationError(f"days must be a whole number >= 1, not {self.days!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigurationError(f"seed must be a whole number, not {self.seed!r}")
        if self.end is not None and (self.end.tzinfo is None or self.end.utcoffset() is None):
            raise ConfigurationError(f"end must be timezone-aware, not {self.end.isoformat()}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"unknown time zone {self.timezone!r}") from exc


def simulate(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    """Yield exactly ``config.events`` raw events, in non-decreasing ``occurred_at`` order.

    Lazy: events are generated hour by hour as they are consumed, so memory
    does not grow with ``config.events``.
    """
    end = config.end if config.end is not None else datetime.now(UTC)
    return generate(config.events, config.days, config.seed, end, ZoneInfo(config.timezone))
