"""Request stories: tickets and forms, chats, calls and the service mailbox.

They follow the request rules of DESIGN.md, which the SLA and first-contact
resolution KPIs are computed from: a request opens (``ticket_opened``,
``call_received``, or an inbound message without ``in_reply_to``); a bot may
answer first and hand off; agents write internal notes; the first public reply
by an agent (or, on internal channels, an employee of the owning department)
is the response, and comes in business hours, so requests that arrive at night
breach their target; requesters follow up; requests resolve, sometimes
reopen, sometimes get a satisfaction survey.
"""

from __future__ import annotations

from bisect import bisect
from itertools import accumulate
from typing import Any, Final

from ingest.events import ActorRole, ChannelKind, EventType, RequestCategory, Scope, Visibility
from ingest.simulator.kit import MAILER, Kit, Pending, event
from ingest.simulator.org import Channel

__all__ = ["call", "chat", "request", "service_mail"]

_MINUTE: Final = 60.0
_HOUR: Final = 3600.0
_DAY: Final = 86_400.0

_OPENED: Final = EventType.TICKET_OPENED.value
_REPLIED: Final = EventType.TICKET_REPLIED.value
_HANDED_OFF: Final = EventType.TICKET_HANDED_OFF.value
_RESOLVED: Final = EventType.TICKET_RESOLVED.value
_REOPENED: Final = EventType.TICKET_REOPENED.value
_SENT: Final = EventType.MESSAGE_SENT.value
_READ: Final = EventType.MESSAGE_READ.value
_BOUNCED: Final = EventType.MESSAGE_BOUNCED.value
_RECEIVED: Final = EventType.CALL_RECEIVED.value
_ANSWERED: Final = EventType.CALL_ANSWERED.value

_AGENT: Final = ActorRole.AGENT.value
_BOT: Final = ActorRole.BOT.value
_CUSTOMER: Final = ActorRole.CUSTOMER.value
_EMPLOYEE: Final = ActorRole.EMPLOYEE.value
_PARTNER: Final = ActorRole.PARTNER.value
_SYSTEM: Final = ActorRole.SYSTEM.value
_PUBLIC: Final = Visibility.PUBLIC.value
_NOTE: Final = Visibility.INTERNAL.value
_INTERNAL: Final = Scope.INTERNAL.value
_COMPLAINT: Final = RequestCategory.COMPLAINT.value

# How many follow-up rounds a requester starts: none, one, two, three.
_ROUNDS: Final = tuple(accumulate((0.45, 0.35, 0.15, 0.05)))


class _Thread:
    """The events of one request so far, with the fields they all share.

    On internal channels every actor is an employee, and each event carries
    its actor's department.
    """

    __slots__ = ("channel", "conversation", "departments", "events")

    def __init__(
        self, channel: Channel, conversation: str, departments: dict[str, str] | None = None
    ) -> None:
        self.channel = channel
        self.conversation = conversation
        self.departments = departments
        self.events: list[Pending] = []

    def add(self, ts: float, event_type: str, actor: str, role: str, **fields: Any) -> float:
        raw = event(self.channel, ts, event_type, actor, role)
        raw["conversation_id"] = self.conversation
        raw.update(fields)
        self.adopt(raw)
        return ts

    def adopt(self, raw: Pending) -> None:
        if self.departments is not None:
            raw["department"] = self.departments[raw["actor_id"]]
        self.events.append(raw)


def _rounds(kit: Kit) -> int:
    return bisect(_ROUNDS, kit.random() * _ROUNDS[-1])


def _category(kit: Kit, channel: Channel) -> str:
    draw = kit.random()
    for category, probability in channel.categories:
        draw -= probability
        if draw < 0:
            return category
    return channel.categories[-1][0]


def request(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """A ticket, CRM case, partner-portal request or internal suggestion/cross-department request."""
    org = kit.org
    internal = channel.scope == _INTERNAL
    if internal:
        requester, requester_role = kit.pick(org.employees), _EMPLOYEE
        responders, responder_role = org.members[channel.responders] or org.employees, _EMPLOYEE
    elif channel.kind == ChannelKind.PARTNER_PORTAL:
        requester, requester_role = kit.pick(org.partners), _PARTNER
        responders, responder_role = org.agents[channel.responders], _AGENT
    else:
        requester, requester_role = kit.customer(), _CUSTOMER
        responders, responder_role = org.agents[channel.responders], _AGENT
    category = _category(kit, channel)
    target = channel.target_s
    thread = _Thread(channel, kit.new_id("req"), org.department_of if internal else None)
    thread.add(start, _OPENED, requester, requester_role, category=category)
    since = start
    if channel.bot is not None and kit.chance(0.3):
        answered = thread.add(
            start + 5.0 + kit.expo(30.0), _REPLIED, channel.bot, _BOT, visibility=_PUBLIC
        )
        since = thread.add(answered + 30.0 + kit.expo(10 * _MINUTE), _HANDED_OFF, channel.bot, _BOT)
    agent = kit.pick(responders)
    if kit.chance(0.2):
        noted = kit.working_delay(since, kit.expo(0.3 * target))
        thread.add(noted, _REPLIED, kit.pick(responders), responder_role, visibility=_NOTE)
    if kit.chance(0.02):  # never answered
        return thread.events
    delay = target * kit.lognormal(0.25, 0.9)
    last = thread.add(
        kit.working_delay(since, delay), _REPLIED, agent, responder_role, visibility=_PUBLIC
    )
    for _ in range(_rounds(kit)):
        asked = last + 2 * _MINUTE + kit.expo(3 * _HOUR)
        last = thread.add(asked, _REPLIED, requester, requester_role, visibility=_PUBLIC)
        if kit.chance(0.85):
            delay = kit.expo(0.4 * target)
            last = thread.add(
                kit.working_delay(asked, delay), _REPLIED, agent, responder_role, visibility=_PUBLIC
            )
    if kit.chance(0.08):  # left open
        return thread.events
    resolved = thread.add(
        kit.working_delay(last, kit.expo(_HOUR)), _RESOLVED, agent, responder_role
    )
    unhappy = category == _COMPLAINT
    if kit.chance(0.08):
        reopened = thread.add(
            resolved + 2 * _HOUR + 4 * _DAY * kit.random(), _REOPENED, requester, requester_role
        )
        delay = kit.expo(0.4 * target)
        last = thread.add(
            kit.working_delay(reopened, delay), _REPLIED, agent, responder_role, visibility=_PUBLIC
        )
        resolved = thread.add(
            kit.working_delay(last, kit.expo(_HOUR)), _RESOLVED, agent, responder_role
        )
        unhappy = True
    if kit.chance(0.15 if internal else 0.3):
        thread.adopt(
            kit.survey(channel, resolved, requester, thread.conversation, unhappy, requester_role)
        )
    return thread.events


def chat(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """A live-chat or social-media conversation, opened by the customer's first message."""
    live = channel.kind == ChannelKind.LIVE_CHAT
    customer = kit.customer()
    thread = _Thread(channel, kit.new_id("chat" if live else "social"))
    asked = kit.new_id("msg")
    thread.add(start, _SENT, customer, _CUSTOMER, message_id=asked)
    since = start
    if channel.bot is not None and kit.chance(0.5 if live else 0.25):
        bot_said = start + 2.0 + kit.expo(5.0)
        thread.add(
            bot_said, _SENT, channel.bot, _BOT, message_id=kit.new_id("msg"), in_reply_to=asked
        )
        since = thread.add(bot_said + 20.0 + kit.expo(_MINUTE), _HANDED_OFF, channel.bot, _BOT)
    if kit.chance(0.03 if live else 0.1):  # nobody picked it up
        return thread.events
    agent = kit.pick(kit.org.agents["service"])
    if live:
        last = kit.soon_or_next_morning(since, 70.0, off_hours_cover=0.5)
    else:
        last = kit.soon_or_next_morning(since, 40 * _MINUTE, off_hours_cover=0.2)
    said = kit.new_id("msg")
    thread.add(last, _SENT, agent, _AGENT, message_id=said, in_reply_to=asked)
    for _ in range(_rounds(kit)):
        asked = kit.new_id("msg")
        last += 20.0 + kit.expo(90.0 if live else 2 * _HOUR)
        thread.add(last, _SENT, customer, _CUSTOMER, message_id=asked, in_reply_to=said)
        said = kit.new_id("msg")
        answer = (
            last + 10.0 + kit.expo(_MINUTE) if live else kit.soon_or_next_morning(last, _HOUR, 0.2)
        )
        last = thread.add(answer, _SENT, agent, _AGENT, message_id=said, in_reply_to=asked)
    if kit.chance(0.9):
        closed = thread.add(
            last + 30.0 + kit.expo(3 * _MINUTE if live else _HOUR), _RESOLVED, agent, _AGENT
        )
        if kit.chance(0.3 if live else 0.1):
            thread.adopt(kit.survey(channel, closed, customer, thread.conversation))
    return thread.events


def call(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """A hotline call: received, answered after a wait (target 60 s) or abandoned."""
    customer = kit.customer()
    thread = _Thread(channel, kit.new_id("call"))
    thread.add(start, _RECEIVED, customer, _CUSTOMER)
    in_hours = kit.next_working(start) == start
    if kit.chance(0.05 if in_hours else 0.35):  # abandoned
        return thread.events
    if not in_hours:
        wait = 10.0 + kit.expo(45.0)
    elif kit.chance(0.12):
        wait = 60.0 + kit.expo(2 * _MINUTE)
    else:
        wait = 3.0 + kit.expo(20.0)
    talk = round(min(kit.lognormal(4 * _MINUTE, 0.7), 3 * _HOUR), 1)
    answered = thread.add(
        start + wait, _ANSWERED, kit.pick(kit.org.agents["service"]), _AGENT, duration_s=talk
    )
    if kit.chance(0.3):
        thread.adopt(kit.survey(channel, answered + talk, customer, thread.conversation))
    return thread.events


def service_mail(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """A customer's mail to a service mailbox: read and answered by an agent, in business hours."""
    customer = kit.customer()
    agent = kit.pick(kit.org.agents["service"])
    thread = _Thread(channel, kit.new_id("thread"))
    asked = kit.new_id("mail")
    last = thread.add(start, _SENT, customer, _CUSTOMER, message_id=asked, recipient_count=1)
    target = channel.target_s
    said = asked
    for round_ in range(1 + _rounds(kit)):
        if round_:
            asked = kit.new_id("mail")
            last += 10 * _MINUTE + kit.expo(6 * _HOUR)
            thread.add(
                last,
                _SENT,
                customer,
                _CUSTOMER,
                message_id=asked,
                in_reply_to=said,
                recipient_count=1,
            )
        if kit.chance(0.04):  # left unanswered
            return thread.events
        scale = kit.lognormal(0.35, 0.9) if round_ == 0 else kit.expo(0.4)
        reply = kit.working_delay(last, target * scale)
        thread.add(last + (reply - last) * kit.random(), _READ, agent, _AGENT, message_id=asked)
        said = kit.new_id("mail")
        last = thread.add(
            reply, _SENT, agent, _AGENT, message_id=said, in_reply_to=asked, recipient_count=1
        )
        if kit.chance(0.01):
            thread.add(last + 5.0 + kit.expo(_MINUTE), _BOUNCED, MAILER, _SYSTEM, message_id=said)
            return thread.events
    if kit.chance(0.7):
        closed = thread.add(kit.working_delay(last, kit.expo(_HOUR)), _RESOLVED, agent, _AGENT)
        if kit.chance(0.1):
            thread.adopt(kit.survey(channel, closed, customer, thread.conversation))
    return thread.events
