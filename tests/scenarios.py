"""Hand-computed scenarios shared by the stream, warehouse and reconcile tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def canonical(when: str, event_type: str, channel: str, kind: str, **fields: Any) -> dict[str, Any]:
    """A canonical event at ``when`` (UTC, 'YYYY-MM-DD HH:MM[:SS]')."""
    occurred = datetime.fromisoformat(when).replace(tzinfo=UTC)
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": occurred.isoformat(),
        "channel_id": channel,
        "channel_kind": kind,
        "scope": fields.pop("scope", "external"),
        "actor_id": fields.pop("actor", "someone"),
        "actor_role": fields.pop("role", "agent"),
        **fields,
    }


MONDAY = "2025-11-17"  # a Monday; the default calendar works 09-12 and 13-18 UTC, Monday to Friday


def ticket_scenario() -> list[dict[str, Any]]:
    """The hand-computed ticket scenario of tests/unit/streams/test_engine_requests.py."""
    tk = {"channel": "tk", "kind": "ticket"}

    def at(clock: str, day: str = MONDAY) -> str:
        return f"{day} {clock}"

    c = canonical
    return [
        c(at("09:00"), "ticket_opened", **tk, conversation_id="r1", actor="c1", role="customer"),
        c(at("09:00:05"), "ticket_replied", **tk, conversation_id="r1", actor="bot", role="bot"),
        c(at("09:10"), "ticket_opened", **tk, conversation_id="r2", actor="c2", role="customer"),
        c(
            at("09:10"),
            "ticket_handed_off",
            **tk,
            conversation_id="r1",
            role="system",
            actor="router",
        ),
        c(
            at("09:20"),
            "ticket_replied",
            **tk,
            conversation_id="r2",
            actor="a1",
            visibility="internal",
        ),
        c(at("09:30"), "ticket_replied", **tk, conversation_id="r2", actor="c2", role="customer"),
        c(at("09:30"), "ticket_opened", **tk, conversation_id="r6", actor="c6", role="customer"),
        c(at("09:40"), "ticket_replied", **tk, conversation_id="r1", actor="a1"),
        c(at("09:45"), "ticket_replied", **tk, conversation_id="r6", actor="a2"),
        c(at("10:00"), "ticket_resolved", **tk, conversation_id="r1", actor="a1"),
        c(at("10:00"), "ticket_opened", **tk, conversation_id="r5", actor="c5", role="customer"),
        c(at("10:15"), "ticket_replied", **tk, conversation_id="r5", actor="a3"),
        c(at("10:30"), "ticket_resolved", **tk, conversation_id="r6", actor="a2"),
        c(at("10:45"), "ticket_replied", **tk, conversation_id="r5", actor="a3"),
        c(at("11:00"), "ticket_resolved", **tk, conversation_id="r5", actor="a3"),
        c(at("11:00"), "ticket_opened", **tk, conversation_id="r4", actor="c4", role="customer"),
        c(at("11:30"), "ticket_replied", **tk, conversation_id="r4", actor="a1"),
        c(at("12:00"), "ticket_resolved", **tk, conversation_id="r4", actor="a1"),
        c(at("13:10"), "ticket_replied", **tk, conversation_id="r2", actor="a2"),
        c(at("17:30"), "ticket_opened", **tk, conversation_id="r3", actor="c3", role="customer"),
        c(
            "2025-11-18 09:00",
            "ticket_reopened",
            **tk,
            conversation_id="r1",
            actor="c1",
            role="customer",
        ),
        c(
            "2025-11-21 11:00",
            "ticket_reopened",
            **tk,
            conversation_id="r6",
            actor="c6",
            role="customer",
        ),
        # Much later activity on the same channel makes every window of that week final.
        c(
            "2025-12-31 09:00",
            "ticket_opened",
            **tk,
            conversation_id="later",
            actor="c9",
            role="customer",
        ),
    ]


CALENDAR = """
[calendars.default]
timezone = "UTC"
periods = ["09:00-12:00", "13:00-18:00"]
holidays = [2025-11-20]
makeup_days = [2025-11-22]
"""


def calendar_scenario() -> list[dict[str, Any]]:
    """Late events, a holiday, a make-up day, read rate, active users, meetings and surveys.

    The scenarios of tests/unit/streams/test_engine_{requests,messages}.py, each on its own
    channel. Every channel ends with an event weeks later, in its own partition, which
    makes all of its November windows final.
    """
    c = canonical
    box = {"kind": "ticket", "scope": "internal", "category": "suggestion", "role": "employee"}
    soc = {"kind": "social"}
    mail = {"kind": "email", "scope": "internal", "role": "employee"}
    im = {"kind": "im", "scope": "internal", "role": "employee"}
    meet = {"kind": "meeting", "scope": "internal", "role": "employee"}
    events = [
        c("2025-11-19 17:00", "ticket_opened", "box", **box, conversation_id="s1", actor="emp1"),
        c("2025-11-19 17:00", "ticket_opened", "box", **box, conversation_id="s2", actor="emp2"),
        c("2025-11-24 16:00", "ticket_replied", "box", **box, conversation_id="s1", actor="lead"),
        c("2025-11-25 09:30", "ticket_replied", "box", **box, conversation_id="s2", actor="lead"),
        c("2025-11-17 10:00", "message_sent", "soc", **soc, message_id="1", actor="a"),
        c("2025-11-17 10:30", "message_sent", "soc", **soc, message_id="2", actor="a"),
        c("2025-11-17 10:25", "message_sent", "soc", **soc, message_id="3", actor="a"),  # kept
        c("2025-11-17 10:10", "message_sent", "soc", **soc, message_id="4", actor="a"),  # dropped
    ]
    events += [
        c("2025-11-17 10:00", "message_sent", "mail", **mail, message_id="m1", actor="e1",
          recipient_count=4),
        c("2025-11-17 10:30", "message_sent", "mail", **mail, message_id="m2", actor="e1",
          recipient_count=3),
        c("2025-11-17 10:31", "message_bounced", "mail", **{**mail, "role": "system"},
          message_id="m2", actor="mailer"),
        c("2025-11-17 11:00", "message_read", "mail", **mail, message_id="m1", actor="e2"),
        c("2025-11-17 11:05", "message_read", "mail", **mail, message_id="m1", actor="e1"),
        c("2025-11-17 15:00", "message_read", "mail", **mail, message_id="m3", actor="e5"),
        c("2025-11-17 14:55", "message_sent", "mail", **mail, message_id="m3", actor="e1",
          recipient_count=2),
        c("2025-11-18 09:00", "message_read", "mail", **mail, message_id="m1", actor="e3"),
        c("2025-11-25 10:00:01", "message_read", "mail", **mail, message_id="m1", actor="e4"),
        c("2025-11-17 10:00", "message_sent", "im-1", **im, message_id="a", actor="u1"),
        c("2025-11-17 11:00", "message_sent", "im-1", **im, message_id="b", actor="u2"),
        c("2025-11-18 10:00", "message_sent", "im-1", **im, message_id="c", actor="u2"),
        c("2025-11-18 10:05", "message_read", "im-2", **im, message_id="x", actor="u3"),
        c("2025-11-18 10:06", "message_sent", "im-2", **{**im, "role": "bot"}, message_id="y",
          actor="bot1"),
        c("2025-11-17 09:00", "meeting_held", "mtg", **meet, duration_s=1800.0,
          planned_duration_s=1800.0),
        c("2025-11-17 10:00", "meeting_held", "mtg", **meet, duration_s=3700.0,
          planned_duration_s=3600.0),
        c("2025-11-17 11:00", "meeting_held", "mtg", **meet, duration_s=1200.0),
        c("2025-11-17 10:00", "survey_answered", "tk2", "ticket", score=5),
        c("2025-11-17 10:20", "survey_answered", "tk2", "ticket", score=4),
        c("2025-11-17 11:10", "survey_answered", "tk2", "ticket", score=2),
    ]  # fmt: skip
    kinds = {event["channel_id"]: event["channel_kind"] for event in events}
    scopes = {event["channel_id"]: event["scope"] for event in events}
    return events + [
        c("2025-12-31 09:00", "channel_created", channel, kind, scope=scopes[channel])
        for channel, kind in kinds.items()
    ]


#: business hours in Berlin with a holiday (2026-10-03) and a Saturday make-up day
#: (2026-10-24); summer time ends on 2026-10-25, a day of 25 hours with the hour from 02:00 twice
BERLIN = """
[calendars.default]
timezone = "Europe/Berlin"
periods = ["08:00-12:00", "13:00-17:30"]
weekdays = ["mon", "tue", "wed", "thu", "fri"]
holidays = [2026-10-03]
makeup_days = [2026-10-24]
"""
