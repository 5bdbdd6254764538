"""Facts from events: the core tables, by the rules the stream uses too.

The rules themselves live in :mod:`metrics.requests` (what opens a request,
what answers it, bot replies, hand-offs, resolutions, reopens) and
:mod:`metrics.messages` (who read a message in time); this module only feeds
them every event of the warehouse, in event-time order, and turns the states
into rows. Unlike the stream it never drops a late event: the warehouse is the
corrected history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from metrics.channels import ChannelCatalog
from metrics.facts import (
    ACTIVITY_EVENTS,
    MESSAGE_EVENTS,
    PEOPLE_ROLES,
    MeetingFact,
    MessageFact,
    RequestFact,
    SurveyFact,
)
from metrics.messages import MessageState
from metrics.requests import RequestState, concerns_request, opening_type, role_in_request
from metrics.windows import WindowClock

__all__ = ["ChannelRow", "FactBuilder", "Facts"]


@dataclass(slots=True)
class ChannelRow:
    channel_id: str
    kind: str
    scope: str
    first_event_at: float
    last_activity_at: float
    archived_at: float | None = None
    events: int = 0


@dataclass
class Facts:
    channels: dict[str, ChannelRow] = field(default_factory=dict)
    requests: list[RequestFact] = field(default_factory=list)
    messages: list[MessageFact] = field(default_factory=list)
    meetings: list[MeetingFact] = field(default_factory=list)
    surveys: list[SurveyFact] = field(default_factory=list)
    #: (channel_id, day ordinal in the reporting time zone, actor_id)
    activity: set[tuple[str, int, str]] = field(default_factory=set)
    #: the time SLA statuses are judged at
    as_of: float = 0.0


class FactBuilder:
    """Feed events (mappings with ``occurred_at`` as epoch seconds in ``_t``), then :meth:`facts`."""

    def __init__(self, catalog: ChannelCatalog, clock: WindowClock) -> None:
        self._catalog = catalog
        self._clock = clock
        self._channels: dict[str, ChannelRow] = {}
        self._requests: dict[tuple[str, str], RequestState] = {}
        self._messages: dict[tuple[str, str], MessageState] = {}
        self._meetings: list[MeetingFact] = []
        self._surveys: list[SurveyFact] = []
        self._activity: set[tuple[str, int, str]] = set()
        self._latest = 0.0
        self._max_age = catalog.rules.max_request_age.calendar_seconds

    def add_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Apply events; they should come in event-time order, as the stream sees them."""
        for event in events:
            self.add(event)

    def add(self, e: Mapping[str, Any]) -> None:
        t: float = e["_t"]
        channel_id: str = e["channel_id"]
        kind: str = e["channel_kind"]
        event_type: str = e["event_type"]
        self._latest = max(self._latest, t)
        row = self._channels.get(channel_id)
        if row is None:
            row = self._channels[channel_id] = ChannelRow(channel_id, kind, e["scope"], t, t)
        row.events += 1
        row.first_event_at = min(row.first_event_at, t)
        row.last_activity_at = max(row.last_activity_at, t)
        if event_type == "channel_archived" and (row.archived_at is None or t < row.archived_at):
            row.archived_at = t

        if concerns_request(event_type, kind):
            self._request_event(channel_id, e, t)
        if event_type in MESSAGE_EVENTS and e.get("message_id") is not None:
            self._message_event(channel_id, e, t)
        if event_type in ACTIVITY_EVENTS and e["actor_role"] in PEOPLE_ROLES:
            self._activity.add((channel_id, self._clock.day(t), e["actor_id"]))
        elif event_type == "meeting_held":
            planned = e.get("planned_duration_s")
            self._meetings.append(
                MeetingFact(
                    channel_id,
                    t,
                    float(e["duration_s"]),
                    None if planned is None else float(planned),
                )
            )
        elif event_type == "survey_answered":
            self._surveys.append(SurveyFact(channel_id, t, int(e["score"])))

    def _request_event(self, channel_id: str, e: Mapping[str, Any], t: float) -> None:
        conversation = e.get("conversation_id")
        if conversation is None:
            return
        key = (channel_id, conversation)
        state = self._requests.get(key)
        opened = opening_type(e)
        if opened is not None:
            if state is None:
                state = self._requests[key] = RequestState()
            state.open(opened, t, e["actor_id"], e.get("category"))
            return
        role = role_in_request(
            e, state.request_type if state else None, state.requester if state else None
        )
        if role is None:
            return
        if state is None:
            state = self._requests[key] = RequestState()  # before its opening
        elif state.opened_at is not None and t - state.opened_at > self._max_age:
            return
        state.apply(role, t, e["actor_id"])

    def _message_event(self, channel_id: str, e: Mapping[str, Any], t: float) -> None:
        key = (channel_id, e["message_id"])
        state = self._messages.get(key)
        if state is None:
            state = self._messages[key] = MessageState()
        event_type = e["event_type"]
        if event_type == "message_sent":
            state.send(t, e["actor_id"], e.get("recipient_count"))
        elif event_type == "message_read":
            state.read(t, e["actor_id"])
        else:
            state.flag(event_type, t)

    def facts(self, now: float | None = None) -> Facts:
        """The facts, with SLA statuses as of the later of ``now`` and the latest event."""
        as_of = max(self._latest, now if now is not None else datetime.now(UTC).timestamp())
        catalog, rules = self._catalog, self._catalog.rules
        requests = []
        for (channel_id, conversation), state in self._requests.items():
            if state.opened_at is None:
                continue  # answered, but its opening was never seen
            policy = catalog.policy(channel_id, self._channels[channel_id].kind)
            requests.append(state.fact(channel_id, conversation, policy, rules, as_of))
        messages = [
            state.fact(channel_id, message_id, rules)
            for (channel_id, message_id), state in self._messages.items()
            if state.sent_at is not None
        ]
        return Facts(
            channels=self._channels,
            requests=requests,
            messages=messages,
            meetings=self._meetings,
            surveys=self._surveys,
            activity=self._activity,
            as_of=as_of,
        )
