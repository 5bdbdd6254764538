"""The request rules, once, for the stream and the warehouse.

A request starts at ``ticket_opened``, ``call_received``, ``post_submitted``
(awaiting review), or a conversation-opening inbound message: a
``message_sent`` with a ``conversation_id``, no ``in_reply_to``, by a customer
or partner, on an e-mail, live-chat or social channel.

Within a request (same channel and ``conversation_id``):

* a **response** is a reply by an agent or employee who is not the requester
  and not an internal note: ``ticket_replied`` or ``message_sent``,
  ``call_answered`` for calls, ``post_reviewed`` for posts; the first response
  is the earliest one;
* a **bot reply** before any response, then a ``ticket_handed_off``, moves the
  response clock's start to the hand-off (if it comes within the response
  horizon); while a bot has answered and nobody handed off, there is no clock
  unless a response comes within the horizon;
* ``ticket_resolved`` (the earliest counts) and ``ticket_reopened``;
* replies by the requester are follow-ups and change nothing.

State keeps only order-independent summaries (earliest times, small sorted
lists), so the facts do not depend on the order events arrive in. Events more
than ``max_request_age`` after the opening are ignored.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final, Literal

from metrics.facts import REQUEST_EVENTS, RequestFact, RequestType, SlaStatus
from metrics.policy import ChannelPolicy, KpiRules

__all__ = [
    "MESSAGE_REQUEST_KINDS",
    "RequestState",
    "Role",
    "concerns_request",
    "opening_type",
    "role_in_request",
]

MESSAGE_REQUEST_KINDS: Final = frozenset({"email", "live_chat", "social"})
REQUESTER_ROLES: Final = frozenset({"customer", "partner"})
RESPONDER_ROLES: Final = frozenset({"agent", "employee"})
_OPENINGS: Final[Mapping[str, RequestType]] = {
    "ticket_opened": "ticket",
    "call_received": "call",
    "post_submitted": "post",
}
_RESPONSES: Final[Mapping[RequestType, frozenset[str]]] = {
    "ticket": frozenset({"ticket_replied", "message_sent"}),
    "message": frozenset({"ticket_replied", "message_sent"}),
    "call": frozenset({"call_answered"}),
    "post": frozenset({"post_reviewed"}),
}
_CAP: Final = 64  # a request keeps at most this many response/reopen/hand-off times

Role = Literal["response", "bot_reply", "handoff", "resolution", "reopen"]


def concerns_request(event_type: str, channel_kind: str) -> bool:
    """Whether an event of this type on a channel of this kind may belong to a request."""
    return event_type in REQUEST_EVENTS or (
        event_type == "message_sent" and channel_kind in MESSAGE_REQUEST_KINDS
    )


def opening_type(event: Mapping[str, Any]) -> RequestType | None:
    """The kind of request ``event`` opens, if it opens one."""
    event_type = event["event_type"]
    opened = _OPENINGS.get(event_type)
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


def role_in_request(
    event: Mapping[str, Any], request_type: RequestType | None, requester: str | None
) -> Role | None:
    """What ``event`` (not an opening) means for a request of ``request_type`` by ``requester``.

    ``request_type``/``requester`` are None while the opening has not been seen;
    replies are then judged by role alone and checked again once it arrives.
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
    replies = (
        _RESPONSES[request_type]
        if request_type
        else _RESPONSES["ticket"] | _RESPONSES["call"] | _RESPONSES["post"]
    )
    if event_type not in replies:
        return None
    if role == "bot" and event_type in {"ticket_replied", "message_sent"}:
        return "bot_reply"
    if role in RESPONDER_ROLES and event["actor_id"] != requester:
        return "response"
    return None


class RequestState:
    """What is known about one request; mutable, compact, order-independent.

    A state may exist before its opening has been seen (events can arrive out
    of order); it becomes a request once :attr:`opened_at` is set.
    """

    __slots__ = (
        "_fact",
        "bot_reply_at",
        "category",
        "handoffs",
        "opened_at",
        "reopens",
        "request_type",
        "requester",
        "resolved_at",
        "responders",
        "responses",
    )

    def __init__(self) -> None:
        self.request_type: RequestType | None = None
        self.opened_at: float | None = None
        self.requester: str | None = None
        self.category: str | None = None
        self.responses: list[float] = []  # sorted response times
        self.responders: list[
            str
        ] = []  # actor of each response (same order), to recheck the requester
        self.bot_reply_at: float | None = None
        self.handoffs: list[float] = []
        self.resolved_at: float | None = None
        self.reopens: list[float] = []
        self._fact: RequestFact | None = None  # the last fact computed, until the state changes

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
        # A "response" seen earlier by the requester themself was a follow-up after all.
        keep = [
            (t, actor)
            for t, actor in zip(self.responses, self.responders, strict=True)
            if actor != requester
        ]
        self.responses = [t for t, _ in keep]
        self.responders = [actor for _, actor in keep]
        return True

    def apply(self, role: Role, at: float, actor: str) -> bool:
        """Apply a non-opening event of ``role`` at ``at``. Returns whether anything changed."""
        changed = self._apply(role, at, actor)
        if changed:
            self._fact = None
        return changed

    def _apply(self, role: Role, at: float, actor: str) -> bool:
        if role == "response":
            if len(self.responses) >= _CAP and at >= self.responses[-1]:
                return False
            index = bisect_right(self.responses, at)
            self.responses.insert(index, at)
            self.responders.insert(index, actor)
            if len(self.responses) > _CAP:
                self.responses.pop()
                self.responders.pop()
            return True
        if role == "bot_reply":
            if self.bot_reply_at is not None and self.bot_reply_at <= at:
                return False
            self.bot_reply_at = at
            return True
        if role == "resolution":
            if self.resolved_at is not None and self.resolved_at <= at:
                return False
            self.resolved_at = at
            return True
        times = self.handoffs if role == "handoff" else self.reopens
        if len(times) >= _CAP:
            return False
        insort(times, at)
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
        responses = [t for t in self.responses if opened <= t <= max_age]
        first = responses[0] if responses else None

        bot = self.bot_reply_at
        bot_first = bot is not None and opened <= bot <= horizon and (first is None or bot < first)
        clock_start: float | None = opened
        if bot_first:
            assert bot is not None
            handoff = next(
                (h for h in self.handoffs if bot <= h <= horizon and (first is None or h <= first)),
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

        resolved = (
            self.resolved_at
            if self.resolved_at is not None and opened <= self.resolved_at <= max_age
            else None
        )
        replies = len(responses) if resolved is None else bisect_right(responses, resolved)
        fcr: bool | None = None
        if resolved is not None:
            reopen_until = rules.reopen_window.end(resolved, calendar)
            reopened = any(resolved < t <= reopen_until for t in self.reopens)
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
            reopen_count=sum(1 for t in self.reopens if opened <= t <= max_age),
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
            self.bot_reply_at,
            self.handoffs,
            self.resolved_at,
            self.reopens,
        ]

    @classmethod
    def load(cls, data: list[Any]) -> RequestState:
        state = cls()
        (
            state.request_type,
            state.opened_at,
            state.requester,
            state.category,
            state.responses,
            state.responders,
            state.bot_reply_at,
            state.handoffs,
            state.resolved_at,
            state.reopens,
        ) = data
        return state
