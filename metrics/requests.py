"""The request rules, once, for the stream and the warehouse.

A request starts at ``ticket_opened``, ``call_received``, ``post_submitted``
(awaiting review), or a conversation-opening inbound message: a
``message_sent`` with a ``conversation_id``, no ``in_reply_to``, by a customer
or partner, on an e-mail, live-chat or social channel.

Within a request (same channel and ``conversation_id``), counting only events
at or after the opening and at most ``max_request_age`` after it:

* a **response** is a reply by an agent or employee who is not the requester
  and not an internal note: ``ticket_replied`` or ``message_sent`` for tickets
  and conversations, ``call_answered`` for calls, ``post_reviewed`` for posts;
  the first response is the earliest one;
* a **bot reply** (``ticket_replied`` or ``message_sent`` by a bot, not
  internal) before any response, then a ``ticket_handed_off``, moves the
  response clock's start to the hand-off (if it comes within the response
  horizon); while a bot has answered and nobody handed off, there is no clock
  unless a response comes within the horizon;
* ``ticket_resolved`` (the earliest counts) and ``ticket_reopened``;
* replies by the requester are follow-ups and change nothing.

This module is the rules' Python form, kept by the stream as a compact state
per request; :mod:`metrics.rules_sql` is their SQL form, which the warehouse
runs over its events. The state keeps only order-independent summaries (the
earliest opening, and the earliest candidates of each role, judged against the
opening only when the fact is made), so a fact does not depend on the order
events arrive in, and both forms agree exactly:
tests/unit/metrics/test_rules_agree.py runs both over generated histories in
random orders. The state keeps at most :data:`CAP` candidates of each role (the
earliest); a request with more replies, hand-offs or reopens than that counts
only those in the stream (``agent_reply_count`` and ``reopen_count`` stop there;
the warehouse counts all). Two openings at the same instant: the warehouse takes
the first in log order, the stream the first to arrive.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final, Literal

from metrics.facts import REQUEST_EVENTS, RequestFact, RequestType, SlaStatus
from metrics.policy import ChannelPolicy, KpiRules

__all__ = [
    "BOT_REPLY_EVENTS",
    "CAP",
    "MESSAGE_REQUEST_KINDS",
    "OPENINGS",
    "REQUESTER_ROLES",
    "RESPONDER_ROLES",
    "RESPONSE_EVENTS",
    "RequestState",
    "Role",
    "concerns_request",
    "opening_type",
    "role_in_request",
]

MESSAGE_REQUEST_KINDS: Final = frozenset({"email", "live_chat", "social"})
REQUESTER_ROLES: Final = frozenset({"customer", "partner"})
RESPONDER_ROLES: Final = frozenset({"agent", "employee"})
#: The event that opens each type of request.
OPENINGS: Final[Mapping[str, RequestType]] = {
    "ticket_opened": "ticket",
    "call_received": "call",
    "post_submitted": "post",
}
#: The events that respond to each type of request (by an agent or employee).
RESPONSE_EVENTS: Final[Mapping[RequestType, frozenset[str]]] = {
    "ticket": frozenset({"ticket_replied", "message_sent"}),
    "message": frozenset({"ticket_replied", "message_sent"}),
    "call": frozenset({"call_answered"}),
    "post": frozenset({"post_reviewed"}),
}
#: A bot's reply (whatever the request's type).
BOT_REPLY_EVENTS: Final = frozenset({"ticket_replied", "message_sent"})
#: A request keeps at most this many candidates of each role (the earliest ones).
CAP: Final = 64

#: What a (non-opening) event may be in a request: a candidate response by the
#: event that made it, a bot reply, a hand-off, a resolution or a reopen.
Role = Literal[
    "ticket_replied", "message_sent", "call_answered", "post_reviewed",
    "bot_reply", "handoff", "resolution", "reopen",
]  # fmt: skip
_REPLIES: Final = frozenset().union(*RESPONSE_EVENTS.values())


def concerns_request(event_type: str, channel_kind: str) -> bool:
    """Whether an event of this type on a channel of this kind may belong to a request."""
    return event_type in REQUEST_EVENTS or (
        event_type == "message_sent" and channel_kind in MESSAGE_REQUEST_KINDS
    )


def opening_type(event: Mapping[str, Any]) -> RequestType | None:
    """The kind of request ``event`` opens, if it opens one."""
    event_type = event["event_type"]
    opened = OPENINGS.get(event_type)
    if opened is not None:
        return opened
    if (
        event_type == "message_sent"
        and event.get("in_reply_to") is None
        and event.get("conversation_id") is not None
        and event["actor_role"] in REQUESTER_ROLES
        and event["channel_kind"] in MESSAGE_REQUEST_KINDS
    ):
        return "message"
    return None


def role_in_request(event: Mapping[str, Any]) -> Role | None:
    """What ``event`` (not an opening) may be in its request, whatever the opening says.

    Whether a candidate response counts (its type, not by the requester, within
    the request's time) is judged only when the fact is made, against the opening.
    """
    event_type = event["event_type"]
    if event_type == "ticket_resolved":
        return "resolution"
    if event_type == "ticket_reopened":
        return "reopen"
    if event_type == "ticket_handed_off":
        return "handoff"
    if event.get("visibility") == "internal":
        return None  # internal notes are never a response
    role = event["actor_role"]
    if role == "bot":
        return "bot_reply" if event_type in BOT_REPLY_EVENTS else None
    if role in RESPONDER_ROLES and event_type in _REPLIES:
        return event_type  # type: ignore[no-any-return]
    return None


class RequestState:
    """What is known about one request; mutable, compact, order-independent.

    A state may exist before its opening has been seen (events can arrive out
    of order); it becomes a request once :attr:`opened_at` is set. Each role
    keeps its earliest candidates, sorted; the opening decides which count.
    """

    __slots__ = (
        "_fact",
        "bot_replies",
        "category",
        "handoffs",
        "opened_at",
        "reopens",
        "request_type",
        "requester",
        "resolutions",
        "responders",
        "response_events",
        "responses",
    )

    def __init__(self) -> None:
        self.request_type: RequestType | None = None
        self.opened_at: float | None = None
        self.requester: str | None = None
        self.category: str | None = None
        # candidate responses, sorted by time, with their actor and event type
        self.responses: list[float] = []
        self.responders: list[str] = []
        self.response_events: list[str] = []
        self.bot_replies: list[float] = []
        self.handoffs: list[float] = []
        self.resolutions: list[float] = []
        self.reopens: list[float] = []
        self._fact: RequestFact | None = None  # the last fact computed, until the state changes

    @property
    def resolved_at(self) -> float | None:
        """The first resolution at or after the opening (any, while it is not known)."""
        opened = self.opened_at
        for at in self.resolutions:
            if opened is None or at >= opened:
                return at
        return None

    # -- updates ------------------------------------------------------------

    def open(
        self, request_type: RequestType, at: float, requester: str, category: str | None
    ) -> bool:
        """Apply an opening; the earliest opening wins. Returns whether anything changed."""
        if self.opened_at is not None and self.opened_at <= at:
            return False
        self._fact = None
        self.request_type, self.opened_at, self.requester, self.category = (
            request_type,
            at,
            requester,
            category,
        )
        return True

    def apply(self, role: Role, at: float, actor: str) -> bool:
        """Apply a non-opening event of ``role`` at ``at``. Returns whether anything changed."""
        changed = self._apply(role, at, actor)
        if changed:
            self._fact = None
        return changed

    def _apply(self, role: Role, at: float, actor: str) -> bool:
        if role in _REPLIES:
            responses = self.responses
            if len(responses) >= CAP and at >= responses[-1]:
                return False
            index = bisect_right(responses, at)
            responses.insert(index, at)
            self.responders.insert(index, actor)
            self.response_events.insert(index, role)
            if len(responses) > CAP:
                responses.pop()
                self.responders.pop()
                self.response_events.pop()
            return True
        times = {
            "bot_reply": self.bot_replies,
            "handoff": self.handoffs,
            "resolution": self.resolutions,
            "reopen": self.reopens,
        }[role]
        if len(times) >= CAP and at >= times[-1]:
            return False
        insort(times, at)
        if len(times) > CAP:
            times.pop()
        return True

    # -- the fact -----------------------------------------------------------

    def fact(
        self,
        channel_id: str,
        conversation_id: str,
        policy: ChannelPolicy,
        rules: KpiRules,
        as_of: float,
    ) -> RequestFact:
        """The request as a fact, with its SLA status as of ``as_of`` (epoch seconds).

        Only an unanswered request's status depends on ``as_of``, so the fact is
        cached until the state changes and just that status is derived again.
        """
        cached = self._fact
        if cached is None or cached.channel_id != channel_id:
            cached = self._fact = self._compute(channel_id, conversation_id, policy, rules, as_of)
        if cached.first_response_at is None and cached.deadline is not None:
            status: SlaStatus = "breached" if as_of > cached.deadline else "pending"
            if status != cached.sla_status:
                cached = self._fact = replace(cached, sla_status=status)
        return cached

    def _compute(
        self,
        channel_id: str,
        conversation_id: str,
        policy: ChannelPolicy,
        rules: KpiRules,
        as_of: float,
    ) -> RequestFact:
        opened = self.opened_at
        assert opened is not None and self.request_type is not None, "not opened"
        calendar = policy.calendar
        max_age = opened + rules.max_request_age.calendar_seconds
        horizon = opened + rules.response_horizon.calendar_seconds

        def counting(times: list[float], until: float = max_age) -> list[float]:
            return [t for t in times if opened <= t <= until]

        answers = RESPONSE_EVENTS[self.request_type]
        responses = [
            t
            for t, actor, event in zip(
                self.responses, self.responders, self.response_events, strict=True
            )
            if event in answers and actor != self.requester and opened <= t <= max_age
        ]
        first = responses[0] if responses else None

        bots = counting(self.bot_replies, min(horizon, max_age))
        bot = bots[0] if bots else None
        bot_first = bot is not None and (first is None or bot < first)
        clock_start: float | None = opened
        if bot_first:
            assert bot is not None
            handoff = next(
                (
                    h
                    for h in counting(self.handoffs, min(horizon, max_age))
                    if h >= bot and (first is None or h <= first)
                ),
                None,
            )
            # Without a hand-off only a response within the horizon starts the clock, so the
            # status is settled by then (a later response leaves the request pending).
            answered = first is not None and first <= horizon
            clock_start = handoff if handoff is not None else (opened if answered else None)

        target = policy.target(self.category)
        deadline = target.end(clock_start, calendar) if clock_start is not None else None
        status: SlaStatus = "pending"
        if deadline is not None:
            if first is not None:
                status = "met" if first <= deadline else "breached"
            elif as_of > deadline:
                status = "breached"

        response_s = response_business_s = None
        if first is not None and clock_start is not None and first <= horizon:
            response_s = first - clock_start
            response_business_s = calendar.business_seconds_between(clock_start, first)

        resolutions = counting(self.resolutions)
        resolved = resolutions[0] if resolutions else None
        reopens = counting(self.reopens)
        replies = len(responses) if resolved is None else bisect_right(responses, resolved)
        fcr: bool | None = None
        if resolved is not None:
            reopen_until = rules.reopen_window.end(resolved, calendar)
            reopened = any(resolved < t <= reopen_until for t in reopens)
            fcr = replies <= 1 and not reopened
        sla_target_s = None
        if clock_start is not None and deadline is not None:
            sla_target_s = target.elapsed(clock_start, deadline, calendar)
        return RequestFact(
            channel_id=channel_id,
            conversation_id=conversation_id,
            request_type=self.request_type,
            category=self.category,
            opened_at=opened,
            clock_start=clock_start,
            deadline=deadline,
            sla_target_s=sla_target_s,
            first_response_at=first,
            first_response_s=response_s,
            first_response_business_s=response_business_s,
            sla_status=status,
            resolved_at=resolved,
            agent_reply_count=replies,
            reopen_count=len(reopens),
            fcr=fcr,
        )

    # -- storage --------------------------------------------------------------

    def dump(self) -> list[Any]:
        return [
            self.request_type,
            self.opened_at,
            self.requester,
            self.category,
            self.responses,
            self.responders,
            self.bot_replies,
            self.handoffs,
            self.resolutions,
            self.reopens,
            self.response_events,
        ]

    @classmethod
    def load(cls, data: list[Any]) -> RequestState:
        """A state from :meth:`dump`; also reads the form before 2026-12 (one bot reply and
        one resolution, responses already judged against the opening's type)."""
        state = cls()
        (
            state.request_type,
            state.opened_at,
            state.requester,
            state.category,
            state.responses,
            state.responders,
            bots,
            state.handoffs,
            resolutions,
            state.reopens,
            *events,
        ) = data
        state.bot_replies = _times(bots)
        state.resolutions = _times(resolutions)
        if events:
            state.response_events = events[0]
        else:
            answer = min(RESPONSE_EVENTS[state.request_type or "ticket"])
            state.response_events = [answer] * len(state.responses)
        return state


def _times(value: list[float] | float | None) -> list[float]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
