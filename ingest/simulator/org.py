"""The synthetic organisation: departments, people, and its ~300 channels.

Everything here depends on the seed only (and on the simulated span, for the
few channels that are created, archived or go quiet during it), never on how
many events are asked for. Actor ids are raw and synthetic
(``emp-0042@corp.example``, ``cust-018273``, ``agent-07@corp.example``,
``partner-0031@partner.example``, ``bot-chat-1``); the producer pseudonymises
them. Nobody has a name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from math import inf
from random import Random
from typing import Any, Final, Literal

from ingest.events import ChannelKind, RequestCategory, Scope

__all__ = ["Channel", "Organisation", "Story", "build_organisation"]

log = logging.getLogger(__name__)

#: Which story generator a channel's activity comes from.
Story = Literal[
    "email", "service_mail", "im", "meeting", "announcement", "forum",
    "knowledge_base", "hotline", "chat", "request",
]  # fmt: skip

# Department and its share of the staff.
_DEPARTMENTS: Final = (
    ("eng", 0.20), ("rd", 0.10), ("product", 0.06), ("sales", 0.12), ("support", 0.12),
    ("marketing", 0.07), ("ops", 0.09), ("finance", 0.05), ("hr", 0.04), ("it", 0.06),
    ("admin", 0.05), ("legal", 0.04),
)  # fmt: skip
_REGIONS: Final = ("north", "east", "south", "west", "central", "hk", "sg", "eu", "us")
_FORUMS: Final = (
    "general", "tech", "ideas", "clubs", "help", "eng", "sales", "product", "ops", "marketplace",
    "wellbeing",
)  # fmt: skip
_CHATS: Final = ("web", "app", "wechat", "mini-program", "web-en", "shop", "after-sales", "billing")
_SOCIAL_MEDIA: Final = (
    "weibo", "wechat", "douyin", "xiaohongshu", "x", "linkedin", "facebook", "bilibili",
)  # fmt: skip

_INQUIRY: Final = RequestCategory.INQUIRY.value
_COMPLAINT: Final = RequestCategory.COMPLAINT.value
_SUGGESTION: Final = RequestCategory.SUGGESTION.value
_CROSS: Final = RequestCategory.CROSS_DEPARTMENT.value

_HOUR: Final = 3600.0
_WORKING_DAY: Final = 7.5 * _HOUR


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel and how its traffic behaves.

    ``since``/``until`` bound the time its stories may have events in
    (created during the span / archived or gone idle). ``responders`` names the
    agent desk or the department that answers its requests; ``target_s`` is
    the working time its responders aim to answer within.
    """

    id: str
    kind: str
    scope: str
    story: Story
    weight: float
    department: str | None = None
    responders: str = "service"
    categories: tuple[tuple[str, float], ...] = ()
    bot: str | None = None
    target_s: float = 2 * _HOUR
    since: float = -inf
    until: float = inf
    created_at: float | None = None
    archived_at: float | None = None

    @property
    def group(self) -> tuple[str, str]:
        """Channels of one kind and scope share a traffic profile."""
        return (self.kind, self.scope)


@dataclass(frozen=True, slots=True)
class Organisation:
    """The people (raw ids) and the channels."""

    departments: tuple[str, ...]
    #: employee ids per department
    members: dict[str, tuple[str, ...]]
    employees: tuple[str, ...]
    department_of: dict[str, str]
    #: agent ids per desk ("service", "accounts", "partners")
    agents: dict[str, tuple[str, ...]]
    moderators: tuple[str, ...]
    admins: tuple[str, ...]
    partners: tuple[str, ...]
    customers: int
    channels: tuple[Channel, ...]


def build_organisation(rng: Random, start: float, end: float) -> Organisation:
    """A mid-size organisation whose history spans ``(start, end]`` (epoch seconds)."""
    departments = tuple(name for name, _ in _DEPARTMENTS)
    headcount = rng.randint(900, 2400)
    members: dict[str, list[str]] = {name: [] for name in departments}
    employees: list[str] = []
    department_of: dict[str, str] = {}
    shares = [share for _, share in _DEPARTMENTS]
    for number, department in enumerate(rng.choices(departments, weights=shares, k=headcount), 1):
        employee = f"emp-{number:04d}@corp.example"
        members[department].append(employee)
        employees.append(employee)
        department_of[employee] = department
    agent_ids = [f"agent-{number:02d}@corp.example" for number in range(1, rng.randint(36, 72) + 1)]
    accounts, partner_desk = len(agent_ids) * 2 // 10, len(agent_ids) // 10
    agents = {
        "service": tuple(agent_ids[accounts + partner_desk :]),
        "accounts": tuple(agent_ids[:accounts]),
        "partners": tuple(agent_ids[accounts : accounts + partner_desk]),
    }
    channels = _with_lifecycles(rng, list(_channels(rng, members, headcount)), start, end)
    kinds = {channel.kind for channel in channels}
    log.debug(
        "organisation built employees=%d agents=%d channels=%d kinds=%d",
        headcount, len(agent_ids), len(channels), len(kinds),
    )  # fmt: skip
    return Organisation(
        departments=departments,
        members={name: tuple(ids) for name, ids in members.items()},
        employees=tuple(employees),
        department_of=department_of,
        agents=agents,
        moderators=tuple(rng.sample(employees, 8)),
        admins=tuple(members["it"]),
        partners=tuple(
            f"partner-{number:04d}@partner.example" for number in range(1, rng.randint(80, 250) + 1)
        ),
        customers=rng.randint(20_000, 60_000),
        channels=tuple(channels),
    )


_STORIES: Final[dict[str, Story]] = {
    ChannelKind.EMAIL.value: "email",
    ChannelKind.IM.value: "im",
    ChannelKind.MEETING.value: "meeting",
    ChannelKind.ANNOUNCEMENT.value: "announcement",
    ChannelKind.FORUM.value: "forum",
    ChannelKind.KNOWLEDGE_BASE.value: "knowledge_base",
    ChannelKind.HOTLINE.value: "hotline",
    ChannelKind.LIVE_CHAT.value: "chat",
    ChannelKind.SOCIAL.value: "chat",
    ChannelKind.TICKET.value: "request",
    ChannelKind.CRM.value: "request",
    ChannelKind.PARTNER_PORTAL.value: "request",
}


def _internal(
    id_: str, kind: ChannelKind, weight: float, department: str, **details: Any
) -> Channel:
    story = _STORIES[kind.value]
    return Channel(id_, kind.value, Scope.INTERNAL.value, story, weight, department, **details)


def _external(id_: str, kind: ChannelKind, weight: float, **details: Any) -> Channel:
    story = "service_mail" if kind == ChannelKind.EMAIL else _STORIES[kind.value]
    return Channel(id_, kind.value, Scope.EXTERNAL.value, story, weight, **details)


def _channels(rng: Random, members: dict[str, list[str]], headcount: int) -> Iterator[Channel]:
    k = ChannelKind

    def spread(total: float, share: float) -> int:
        return max(1, round(total * share * rng.uniform(0.8, 1.2)))

    def popularity(rank: int) -> float:
        return float((rank + 1) ** -0.6) * rng.lognormvariate(0, 0.4)

    for department, share in _DEPARTMENTS:
        size = len(members[department]) / headcount
        for i in range(spread(150, share)):
            yield _internal(f"im-{department}-{i + 1:02d}", k.IM, size * popularity(i), department)
        for i in range(spread(45, share)):
            weight = size * popularity(i)
            yield _internal(f"meeting-{department}-{i + 1:02d}", k.MEETING, weight, department)
        yield _internal(f"email-{department}-list", k.EMAIL, size * 1.5, department)
        for i in range(spread(14, share)):
            weight = size * popularity(i)
            yield _internal(f"email-{department}-{i + 1:02d}", k.EMAIL, weight, department)
    yield _internal("announcement-all", k.ANNOUNCEMENT, 3.0, "hr")
    for department in ("eng", "rd", "sales", "support", "ops", "it", "admin"):
        yield _internal(f"announcement-{department}", k.ANNOUNCEMENT, popularity(1), department)
    for i, topic in enumerate(_FORUMS):
        yield _internal(f"forum-{topic}", k.FORUM, popularity(i), "admin")
    for i, topic in enumerate(("support", "eng", "product", "hr", "it", "sales", "finance")):
        yield _internal(f"kb-{topic}", k.KNOWLEDGE_BASE, popularity(i), topic)
    yield _internal(
        "ticket-suggestion-box", k.TICKET, 1.0, "admin",
        responders="admin", categories=((_SUGGESTION, 1.0),), target_s=3 * _WORKING_DAY,
    )  # fmt: skip
    for department in ("it", "finance", "hr"):
        yield _internal(
            f"ticket-crossdept-{department}", k.TICKET, 1.0, department,
            responders=department, categories=((_CROSS, 1.0),),
        )  # fmt: skip
    yield from _external_channels(rng, popularity)


def _external_channels(rng: Random, popularity: Callable[[int], float]) -> Iterator[Channel]:
    k = ChannelKind
    for i, name in enumerate(("main", "vip", "sales", "en", "complaints", "after-sales")):
        yield _external(f"hotline-{name}", k.HOTLINE, popularity(i))
    for i, name in enumerate(_CHATS):
        bot = "bot-chat-1" if i % 2 == 0 else "bot-chat-2"
        yield _external(f"livechat-{name}", k.LIVE_CHAT, popularity(i), bot=bot, target_s=180.0)
    for i, name in enumerate(_SOCIAL_MEDIA):
        social_bot = "bot-social-1" if i < 3 else None
        yield _external(f"social-{name}", k.SOCIAL, popularity(i), bot=social_bot)
    for i in range(rng.randint(10, 14)):
        yield _external(
            f"ticket-support-{i + 1}", k.TICKET, popularity(i),
            categories=((_INQUIRY, 0.7), (_COMPLAINT, 0.2), (_SUGGESTION, 0.1)), bot="bot-ticket-1",
        )  # fmt: skip
    yield _external(
        "ticket-complaints", k.TICKET, popularity(2),
        categories=((_COMPLAINT, 1.0),), target_s=_WORKING_DAY,
    )  # fmt: skip
    yield _external(
        "ticket-feedback-form", k.TICKET, popularity(3),
        categories=((_SUGGESTION, 0.8), (_COMPLAINT, 0.2)), target_s=_WORKING_DAY,
    )  # fmt: skip
    for i, region in enumerate(_REGIONS):
        yield _external(
            f"crm-{region}", k.CRM, popularity(i),
            responders="accounts", categories=((_INQUIRY, 0.85), (_COMPLAINT, 0.15)),
        )  # fmt: skip
    for i, region in enumerate(_REGIONS[: rng.randint(4, 6)]):
        yield _external(
            f"partner-portal-{region}", k.PARTNER_PORTAL, popularity(i),
            responders="partners", target_s=_WORKING_DAY,
            categories=((_INQUIRY, 0.8), (_COMPLAINT, 0.1), (_SUGGESTION, 0.1)),
        )  # fmt: skip
    for i, name in enumerate(("service", "info", "sales")):
        target = 2 * _HOUR if name == "service" else _WORKING_DAY
        yield _external(f"email-{name}", k.EMAIL, popularity(i), target_s=target)


def _with_lifecycles(
    rng: Random, channels: list[Channel], start: float, end: float
) -> list[Channel]:
    """Pick the channels that are created, archived or go idle during ``(start, end]``.

    Only channels that are not the first of their kind and scope, in groups of
    at least four, are eligible, so that every group always has live channels.
    """
    span = end - start
    groups: dict[tuple[str, str], list[int]] = {}
    for index, channel in enumerate(channels):
        groups.setdefault(channel.group, []).append(index)
    eligible: list[int] = []
    busy: list[int] = []  # a channel going quiet is only noticeable if it was busy
    for group in groups.values():
        if len(group) >= 4:
            eligible += group[1:]
            busy += sorted(group[1:], key=lambda index: channels[index].weight, reverse=True)[
                : len(group) // 2
            ]
    rng.shuffle(busy)
    idle = busy[: max(1, round(len(channels) * rng.uniform(0.02, 0.03)))]
    eligible = [index for index in eligible if index not in idle]
    rng.shuffle(eligible)
    created_count = max(1, round(len(channels) * 0.03))
    archived, eligible = eligible[:2], eligible[2:]
    created = eligible[:created_count]
    for index in idle:
        quiet_from = end - span * rng.uniform(0.06, 1 / 3)
        channels[index] = replace(channels[index], until=quiet_from)
    for index in archived:
        at = start + span * rng.uniform(0.35, 0.8)
        channels[index] = replace(channels[index], until=at, archived_at=at)
    for index in created:
        at = start + span * rng.uniform(0.05, 0.6)
        channels[index] = replace(channels[index], since=at, created_at=at)
    return channels
