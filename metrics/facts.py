"""Facts: what the KPIs are computed from, one row per request, message, meeting, survey.

The stream derives them incrementally, the warehouse stores them as its core
tables; both use these classes and the rules in :mod:`metrics.requests` and
:mod:`metrics.messages`, so their KPIs agree. Times are epoch seconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ACTIVITY_EVENTS",
    "MESSAGE_EVENTS",
    "PEOPLE_ROLES",
    "REQUEST_EVENTS",
    "ActivityFact",
    "EventFact",
    "MeetingFact",
    "MessageFact",
    "RequestFact",
    "RequestType",
    "SlaStatus",
    "SurveyFact",
]

#: Roles of people (not bots or systems): who counts as an active user.
PEOPLE_ROLES: Final = frozenset({"employee", "agent", "customer", "partner"})
#: Events that make their actor active on the channel (if a person).
ACTIVITY_EVENTS: Final = frozenset({"message_sent", "message_read"})
#: Events about a message (with a ``message_id``): its send, reads, bounces.
MESSAGE_EVENTS: Final = frozenset(
    {"message_sent", "message_read", "message_bounced", "message_misdelivered"}
)
#: Events about a request (``message_sent`` on some kinds is one too: metrics.requests).
REQUEST_EVENTS: Final = frozenset(
    {
        "ticket_opened", "ticket_replied", "ticket_handed_off", "ticket_resolved", "ticket_reopened",
        "call_received", "call_answered", "post_submitted", "post_reviewed",
    }
)  # fmt: skip

RequestType = Literal["ticket", "call", "message", "post"]
SlaStatus = Literal["met", "breached", "pending"]


@dataclass(frozen=True, slots=True)
class RequestFact:
    """One request (ticket, call, message conversation, post awaiting review)."""

    channel_id: str
    conversation_id: str
    request_type: RequestType
    category: str | None
    opened_at: float
    #: when the response clock started: the opening, or the hand-off after a bot answered first
    clock_start: float | None
    deadline: float | None
    sla_target_s: float | None
    first_response_at: float | None
    #: seconds from clock start to first response, if it came within the response horizon
    first_response_s: float | None
    first_response_business_s: float | None
    sla_status: SlaStatus
    resolved_at: float | None
    #: counting replies up to the first resolution (all of them if unresolved)
    agent_reply_count: int
    reopen_count: int
    #: resolved at first contact; None when not resolved (or resolved too late to count)
    fcr: bool | None


@dataclass(frozen=True, slots=True)
class MessageFact:
    channel_id: str
    message_id: str
    sent_at: float
    sender: str
    recipients: int | None
    #: distinct readers (not the sender) within the read window, at most ``recipients``
    readers: int
    first_read_at: float | None
    bounced: bool
    misdelivered: bool

    @property
    def counts_for_read_rate(self) -> bool:
        return bool(self.recipients) and not self.bounced and not self.misdelivered


@dataclass(frozen=True, slots=True)
class MeetingFact:
    channel_id: str
    held_at: float
    duration_s: float
    planned_duration_s: float | None

    @property
    def overrun(self) -> bool | None:
        if self.planned_duration_s is None:
            return None
        return self.duration_s > self.planned_duration_s


@dataclass(frozen=True, slots=True)
class SurveyFact:
    channel_id: str
    answered_at: float
    score: int


@dataclass(frozen=True, slots=True)
class ActivityFact:
    """An actor who sent or read something on a channel on a day (the day's ordinal)."""

    channel_id: str
    day: int
    actor_id: str


@dataclass(frozen=True, slots=True)
class EventFact:
    """Any event, for volume."""

    channel_id: str
    occurred_at: float
