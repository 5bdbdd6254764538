"""Internal stories: mail, instant messages, announcements, meetings, forum, knowledge base.

Messages are read by their recipients: most within hours and in working
time, some days later, some never. Recipients are a run of distinct
colleagues, so every reader is a real recipient and nobody reads twice.
Reads are the bulk of the volume, so :func:`_reads` is written for speed.
"""

from __future__ import annotations

from math import log
from typing import Final, NamedTuple

from ingest.events import ActorRole, Decision, EventType
from ingest.simulator.kit import MAILER, Kit, Pending, event
from ingest.simulator.org import Channel

__all__ = ["announcement", "email", "forum", "im", "knowledge_base", "meeting"]

_MINUTE: Final = 60.0
_HOUR: Final = 3600.0
_DAY: Final = 86_400.0
_WORKING_DAY: Final = 7.5 * _HOUR

_SENT: Final = EventType.MESSAGE_SENT.value
_READ: Final = EventType.MESSAGE_READ.value
_BOUNCED: Final = EventType.MESSAGE_BOUNCED.value
_MISDELIVERED: Final = EventType.MESSAGE_MISDELIVERED.value
_SUBMITTED: Final = EventType.POST_SUBMITTED.value
_REVIEWED: Final = EventType.POST_REVIEWED.value
_MEETING: Final = EventType.MEETING_HELD.value
_EMPLOYEE: Final = ActorRole.EMPLOYEE.value
_SYSTEM: Final = ActorRole.SYSTEM.value
_APPROVED: Final = Decision.APPROVED.value
_CHANGES: Final = Decision.CHANGES_REQUESTED.value
_REJECTED: Final = Decision.REJECTED.value

_PLANNED_S: Final = (900.0, 1800.0, 1800.0, 2700.0, 3600.0, 3600.0, 5400.0)
_ANNOUNCEMENT_READS: Final = 300  # at most, so that big fan-outs do not dominate the volume


class _Audience(NamedTuple):
    """``recipients`` consecutive people of ``pool`` from ``first`` on, wrapping."""

    pool: tuple[str, ...]
    first: int
    recipients: int

    def member(self, offset: int) -> str:
        return self.pool[(self.first + offset) % len(self.pool)]


class _Habit(NamedTuple):
    """How recipients read: which share does, mean delay, chance of a read days later."""

    share: float
    mean: float
    late: float


_MAIL: Final = _Habit(0.85, 1.5 * _HOUR, 0.06)
_MAIL_REPLY: Final = _Habit(0.6, 2 * _HOUR, 0.04)
_CHAT: Final = _Habit(0.93, 12 * _MINUTE, 0.01)
_CHAT_REPLY: Final = _Habit(0.8, 15 * _MINUTE, 0.01)
_NOTICE: Final = _Habit(1.0, 3 * _HOUR, 0.12)  # the audience is already the readers
_POST: Final = _Habit(1.0, 8 * _HOUR, 0.2)
_ARTICLE: Final = _Habit(1.0, 5 * _DAY, 0.0)  # read over the following weeks


def _send(
    kit: Kit,
    channel: Channel,
    ts: float,
    actor: str,
    message: str,
    conversation: str,
    recipients: int,
    reply_to: str | None = None,
) -> Pending:
    raw = event(channel, ts, _SENT, actor, _EMPLOYEE)
    raw["message_id"] = message
    raw["conversation_id"] = conversation
    raw["recipient_count"] = recipients
    raw["department"] = kit.org.department_of[actor]
    if reply_to is not None:
        raw["in_reply_to"] = reply_to
    return raw


def _reads(
    kit: Kit,
    channel: Channel,
    out: list[Pending],
    message: str,
    sent: float,
    audience: _Audience,
    habit: _Habit,
    sender: str,
) -> list[Pending]:
    """Reads of ``message`` by its ``audience`` (but not its ``sender``), after
    ``habit.mean`` seconds on average or, with chance ``habit.late``, one to ten
    days later; mostly moved into working hours. Appends them to ``out`` and
    returns them. This loop makes most of the events, hence the local names."""
    random, next_working, department_of = kit.random, kit.next_working, kit.org.department_of
    channel_id, kind, scope = channel.id, channel.kind, channel.scope
    pool, first, recipients = audience
    share, mean, late = habit
    size = len(pool)
    reads: list[Pending] = []
    for offset in range(recipients):
        if random() >= share:
            continue
        reader = pool[(first + offset) % size]
        if reader == sender:
            continue
        if random() < late:
            ts = sent + _DAY * (1.0 + 9.0 * random() ** 2)
        else:
            ts = sent + 30.0 - mean * log(1.0 - random())
        if random() < 0.8:  # read at work, or else wherever they are
            working = next_working(ts)
            if working != ts:
                ts = working - 1200.0 * log(1.0 - random())
        raw = {
            "occurred_at": ts,
            "event_type": _READ,
            "channel_id": channel_id,
            "channel_kind": kind,
            "scope": scope,
            "actor_id": reader,
            "actor_role": _EMPLOYEE,
            "message_id": message,
            "department": department_of[reader],
        }
        reads.append(raw)
    out += reads
    return reads


def _audience(kit: Kit, department: str | None, wanted: int) -> _Audience:
    """A run of colleagues, from the department if it is big enough."""
    members = kit.org.members.get(department, ()) if department else ()
    pool = members if len(members) > wanted else kit.org.employees
    return _Audience(pool, int(kit.random() * len(pool)), min(wanted, len(pool) - 1))


def _everyone(kit: Kit, count: int) -> _Audience:
    employees = kit.org.employees
    return _Audience(employees, int(kit.random() * len(employees)), min(count, len(employees)))


def email(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """An internal mail, its reads, and maybe a reply or two (reply-all)."""
    department = channel.department
    sender = kit.department_member(department or "admin")
    wanted = 1 + int(kit.expo(5.0)) if kit.random() > 0.03 else 60 + int(kit.expo(60.0))
    audience = _audience(kit, department, wanted)
    conversation, message = kit.new_id("thread"), kit.new_id("mail")
    out = [_send(kit, channel, start, sender, message, conversation, audience.recipients)]
    if kit.chance(0.01):
        raw = event(channel, start + 2.0 + kit.expo(_MINUTE), _BOUNCED, MAILER, _SYSTEM)
        raw["message_id"] = message
        out.append(raw)
        return out
    reads = _reads(kit, channel, out, message, start, audience, _MAIL, sender)
    if reads and kit.chance(0.006):
        read = reads[0]
        noticed = read["occurred_at"] + 30.0 + kit.expo(10 * _MINUTE)
        raw = event(channel, noticed, _MISDELIVERED, read["actor_id"], _EMPLOYEE)
        raw["message_id"] = message
        raw["department"] = read["department"]
        out.append(raw)
    previous = message
    for chance in (0.35, 0.3):
        if not reads or not kit.chance(chance):
            break
        read = reads[int(kit.random() * len(reads))]
        replier, reply = read["actor_id"], kit.new_id("mail")
        sent = read["occurred_at"] + 60.0 + kit.expo(30 * _MINUTE)
        out.append(
            _send(kit, channel, sent, replier, reply, conversation, audience.recipients, previous)
        )
        reads = _reads(kit, channel, out, reply, sent, audience, _MAIL_REPLY, replier)
        previous = reply
    return out


def im(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """A message in a small group, its reads, and a burst of replies."""
    sender = kit.department_member(channel.department or "admin")
    audience = _audience(kit, channel.department, 1 + min(int(kit.expo(3.5)), 19))
    conversation, message = kit.new_id("im"), kit.new_id("msg")
    out = [_send(kit, channel, start, sender, message, conversation, audience.recipients)]
    _reads(kit, channel, out, message, start, audience, _CHAT, sender)
    last, previous = start, message
    for _ in range(min(int(kit.expo(1.5)), 6)):
        replier = audience.member(int(kit.random() * audience.recipients))
        last += 20.0 + kit.expo(5 * _MINUTE)
        reply = kit.new_id("msg")
        out.append(
            _send(kit, channel, last, replier, reply, conversation, audience.recipients, previous)
        )
        _reads(kit, channel, out, reply, last, audience, _CHAT_REPLY, replier)
        previous = reply
    return out


def announcement(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """An announcement to hundreds; a capped number of reads, some of them late."""
    sender = kit.department_member(channel.department or "hr")
    most = min(2000, len(kit.org.employees))
    recipients = most if channel.id.endswith("-all") else kit.rng.randint(min(200, most), most)
    message = kit.new_id("msg")
    out = [_send(kit, channel, start, sender, message, kit.new_id("ann"), recipients)]
    readers = int(recipients * kit.rng.uniform(0.5, 0.9))
    readers = min(readers, _ANNOUNCEMENT_READS - int(150 * kit.random()))
    _reads(kit, channel, out, message, start, _everyone(kit, readers), _NOTICE, sender)
    return out


def meeting(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """A meeting, reported when it ends; about one in five runs over."""
    organiser = kit.department_member(channel.department or "admin")
    raw = event(channel, start, _MEETING, organiser, _EMPLOYEE)
    planned = _PLANNED_S[int(kit.random() * len(_PLANNED_S))]
    share = 1.05 + 0.6 * kit.random() if kit.chance(0.2) else 0.6 + 0.4 * kit.random()
    raw["planned_duration_s"] = planned
    raw["duration_s"] = round(planned * share, 1)
    raw["recipient_count"] = 2 + min(int(kit.expo(6.0)), 58)
    raw["conversation_id"] = kit.new_id("mtg")
    raw["department"] = kit.org.department_of[organiser]
    return [raw]


def _post(
    kit: Kit,
    channel: Channel,
    start: float,
    author: str,
    ids: tuple[str, str],
    out: list[Pending],
    approve: float,
) -> float | None:
    """A post (conversation and message id) submitted for review, resubmitted at most
    once if changes are requested; the time it was approved, or None."""
    department_of = kit.org.department_of
    conversation, message = ids
    for attempt in range(2):
        raw = event(channel, start, _SUBMITTED, author, _EMPLOYEE)
        raw.update(conversation_id=conversation, message_id=message)
        raw["department"] = department_of[author]
        out.append(raw)
        moderator = kit.pick(kit.org.moderators)
        if kit.chance(0.85):
            reviewed = kit.working_delay(start, kit.expo(3 * _HOUR))
        else:  # waits in the queue for days
            reviewed = kit.working_delay(start, _WORKING_DAY * (2.0 + 6.0 * kit.random()))
        draw = kit.random()
        if draw < approve or attempt:
            decision = _APPROVED
        else:
            decision = _CHANGES if draw < approve + 0.1 else _REJECTED
        raw = event(channel, reviewed, _REVIEWED, moderator, _EMPLOYEE)
        raw.update(conversation_id=conversation, decision=decision)
        raw["department"] = department_of[moderator]
        out.append(raw)
        if decision == _APPROVED:
            return reviewed
        if decision == _REJECTED or kit.chance(0.4):
            return None
        start = reviewed + 30 * _MINUTE + kit.expo(_DAY)
    return None


def forum(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """A forum post: reviewed by a moderator, then read and replied to."""
    author = kit.pick(kit.org.employees)
    conversation, message = kit.new_id("post"), kit.new_id("msg")
    out: list[Pending] = []
    approved = _post(kit, channel, start, author, (conversation, message), out, approve=0.8)
    if approved is None:
        return out
    readers = _everyone(kit, min(int(kit.expo(12.0)), 150))
    _reads(kit, channel, out, message, approved, readers, _POST, author)
    ts = approved
    for _ in range(min(int(kit.expo(1.2)), 8)):
        replier = kit.pick(kit.org.employees)
        ts += 10 * _MINUTE + kit.expo(6 * _HOUR)
        out.append(_send(kit, channel, ts, replier, kit.new_id("msg"), conversation, 1, message))
    return out


def knowledge_base(kit: Kit, channel: Channel, start: float) -> list[Pending]:
    """A knowledge-base article: reviewed, then read over the following weeks."""
    author = kit.department_member(channel.department or "support")
    conversation, message = kit.new_id("kb"), kit.new_id("msg")
    out: list[Pending] = []
    approved = _post(kit, channel, start, author, (conversation, message), out, approve=0.85)
    if approved is None:
        return out
    readers = _everyone(kit, 5 + min(int(kit.expo(25.0)), 200))
    _reads(kit, channel, out, message, approved, readers, _ARTICLE, author)
    return out
