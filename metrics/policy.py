"""SLA policies, idle thresholds and the rules that bound every KPI in time.

Defaults follow the communication guide (DESIGN.md): hotline answered within
60 s, live chat within 3 min, customer-service messages within 2 h, e-mail
within 24 h, complaints within 24 h, staff suggestions within 3 working days,
cross-department requests within 2 h. A channel's policy comes from the
channel catalog (:mod:`metrics.channels`), falling back to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from ingest.events import ChannelKind, RequestCategory
from metrics.calendar import BusinessCalendar
from metrics.durations import Duration, parse_duration

__all__ = [
    "DEFAULT_CATEGORY_TARGETS",
    "DEFAULT_FIRST_RESPONSE",
    "DEFAULT_IDLE_THRESHOLDS",
    "ChannelPolicy",
    "KpiRules",
]

_d = parse_duration

#: First-response (or answer, or review) target per channel kind.
DEFAULT_FIRST_RESPONSE: Final[Mapping[ChannelKind, Duration]] = MappingProxyType(
    {
        ChannelKind.HOTLINE: _d("60s"),
        ChannelKind.LIVE_CHAT: _d("3min"),
        ChannelKind.SOCIAL: _d("2h business"),
        ChannelKind.CRM: _d("2h business"),
        ChannelKind.TICKET: _d("2h business"),
        ChannelKind.PARTNER_PORTAL: _d("2h business"),
        ChannelKind.EMAIL: _d("24h"),
        ChannelKind.FORUM: _d("1d business"),
        ChannelKind.KNOWLEDGE_BASE: _d("1d business"),
        ChannelKind.IM: _d("24h"),
        ChannelKind.MEETING: _d("24h"),
        ChannelKind.ANNOUNCEMENT: _d("24h"),
    }
)

#: Targets that depend on what a request is about; they win over the kind's.
DEFAULT_CATEGORY_TARGETS: Final[Mapping[RequestCategory, Duration]] = MappingProxyType(
    {
        RequestCategory.COMPLAINT: _d("24h"),
        RequestCategory.SUGGESTION: _d("3d business"),
        RequestCategory.CROSS_DEPARTMENT: _d("2h business"),
    }
)

#: How long a channel may be silent (business time) before it counts as idle.
DEFAULT_IDLE_THRESHOLDS: Final[Mapping[ChannelKind, Duration]] = MappingProxyType(
    {
        ChannelKind.HOTLINE: _d("2h business"),
        ChannelKind.LIVE_CHAT: _d("2h business"),
        ChannelKind.TICKET: _d("1d business"),
        ChannelKind.SOCIAL: _d("1d business"),
        ChannelKind.CRM: _d("2d business"),
        ChannelKind.PARTNER_PORTAL: _d("3d business"),
        ChannelKind.EMAIL: _d("3d business"),
        ChannelKind.IM: _d("3d business"),
        ChannelKind.MEETING: _d("5d business"),
        ChannelKind.FORUM: _d("5d business"),
        ChannelKind.ANNOUNCEMENT: _d("10d business"),
        ChannelKind.KNOWLEDGE_BASE: _d("10d business"),
    }
)


@dataclass(frozen=True, slots=True)
class KpiRules:
    """Time bounds shared by the stream and the warehouse, so that both agree exactly.

    * ``read_window``: a read (or bounce) counts for a message only this long after it was sent.
    * ``response_horizon``: a hand-off counts, and a first response enters the
      response-time statistics, only within this time after the opening.
    * ``reopen_window``: a reopen within this time after the first resolution
      means the request was not resolved at first contact.
    * ``max_request_age``: replies, resolutions and reopens more than this long
      after the opening are ignored (this bounds the state a stream keeps).
    """

    read_window: Duration = field(default_factory=lambda: _d("7d"))
    response_horizon: Duration = field(default_factory=lambda: _d("7d"))
    reopen_window: Duration = field(default_factory=lambda: _d("3d business"))
    max_request_age: Duration = field(default_factory=lambda: _d("30d"))

    def __post_init__(self) -> None:
        for name in ("read_window", "response_horizon", "max_request_age"):
            if getattr(self, name).clock != "calendar":
                raise ValueError(f"{name} must be calendar time, not business time")


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """Everything time-related about one channel: its calendar, targets and idle threshold."""

    calendar: BusinessCalendar
    first_response: Duration
    categories: Mapping[str, Duration]
    idle_threshold: Duration

    def target(self, category: str | None) -> Duration:
        """The response target of a request of ``category`` on this channel."""
        if category is not None:
            override = self.categories.get(category)
            if override is not None:
                return override
        return self.first_response

    def deadline(self, start: float, category: str | None) -> float:
        return self.target(category).end(start, self.calendar)

    def latest_deadline(self, start: float) -> float:
        """The deadline of the slowest kind of request that starts at ``start``."""
        targets = [self.first_response, *self.categories.values()]
        return max(target.end(start, self.calendar) for target in targets)

    def idle_business_seconds(self) -> float:
        """Idleness is always measured in business time; "2h" means two working hours."""
        return self.idle_threshold.business_seconds(self.calendar)
