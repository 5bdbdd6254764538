"""The polars reference of docs/kpis.md (tests/integration/kpi_reference.py) on hand-computed cases.

The scenarios and numbers are those of test_engine_requests.py and test_engine_messages.py,
which pin the stream engine; here the reference must reach them from the document's rules.
Default calendar: UTC, Monday to Friday, 09:00-12:00 and 13:00-18:00 (8 h a day); Monday
is 2026-11-16.

The last tests feed the stream engine and the reference the same few events and compare:
they are the smallest reproductions of the discrepancies the 200,000-event acceptance test
found (tests/integration/test_stream_reference.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from metrics.calendar import BusinessCalendar
from tests.integration.kpi_reference import KPIS, reference_frame, reference_kpis
from tests.unit.streams.harness import Run

#: After every scenario, as the engine tests' ``Run.finish``: an event far later, so that
#: every request's SLA status is decided "as of" the end of the data.
LATER = "2027-03-01 00:00"


def ev(at: str, event_type: str, channel: str, kind: str, **fields: Any) -> dict[str, Any]:
    """An event at ``at`` (UTC), like the engine tests' ``Run.event``."""
    return {
        "event_type": event_type,
        "occurred_at": datetime.fromisoformat(at).replace(tzinfo=UTC),
        "channel_id": channel,
        "channel_kind": kind,
        "scope": fields.pop("scope", "external"),
        "actor_id": fields.pop("actor", "someone"),
        "actor_role": fields.pop("role", "agent"),
        **fields,
    }


def later(kind: str) -> dict[str, Any]:
    return ev(LATER, "channel_created", f"zz-clock-{kind}", kind, role="system")


def start(text: str) -> str:
    """'2026-11-16 09:00' as the window start of a KPI record key."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


def kpis(*events: dict[str, Any], calendar: BusinessCalendar | None = None) -> dict[Any, Any]:
    return reference_kpis(list(events), calendar=calendar)


# -- requests -----------------------------------------------------------------------------


TK = {"channel": "tk", "kind": "ticket"}


def ticket_events() -> list[dict[str, Any]]:
    return [
        # r1: a bot answers first, hands off at 09:10; the agent answers at 09:40.
        ev("2026-11-16 09:00", "ticket_opened", **TK, conversation_id="r1", actor="c1", role="customer"),
        ev("2026-11-16 09:00:05", "ticket_replied", **TK, conversation_id="r1", actor="bot", role="bot"),
        ev("2026-11-16 09:10", "ticket_opened", **TK, conversation_id="r2", actor="c2", role="customer"),
        ev("2026-11-16 09:10", "ticket_handed_off", **TK, conversation_id="r1", role="system", actor="router"),
        ev("2026-11-16 09:20", "ticket_replied", **TK, conversation_id="r2", actor="a1", visibility="internal"),
        ev("2026-11-16 09:30", "ticket_replied", **TK, conversation_id="r2", actor="c2", role="customer"),
        ev("2026-11-16 09:30", "ticket_opened", **TK, conversation_id="r6", actor="c6", role="customer"),
        ev("2026-11-16 09:40", "ticket_replied", **TK, conversation_id="r1", actor="a1"),
        ev("2026-11-16 09:45", "ticket_replied", **TK, conversation_id="r6", actor="a2"),
        ev("2026-11-16 10:00", "ticket_resolved", **TK, conversation_id="r1", actor="a1"),
        ev("2026-11-16 10:00", "ticket_opened", **TK, conversation_id="r5", actor="c5", role="customer"),
        ev("2026-11-16 10:15", "ticket_replied", **TK, conversation_id="r5", actor="a3"),
        ev("2026-11-16 10:30", "ticket_resolved", **TK, conversation_id="r6", actor="a2"),
        ev("2026-11-16 10:45", "ticket_replied", **TK, conversation_id="r5", actor="a3"),
        ev("2026-11-16 11:00", "ticket_resolved", **TK, conversation_id="r5", actor="a3"),
        ev("2026-11-16 11:00", "ticket_opened", **TK, conversation_id="r4", actor="c4", role="customer"),
        ev("2026-11-16 11:30", "ticket_replied", **TK, conversation_id="r4", actor="a1"),
        ev("2026-11-16 12:00", "ticket_resolved", **TK, conversation_id="r4", actor="a1"),
        ev("2026-11-16 13:10", "ticket_replied", **TK, conversation_id="r2", actor="a2"),
        ev("2026-11-16 17:30", "ticket_opened", **TK, conversation_id="r3", actor="c3", role="customer"),
        # r1 reopens within 3 business days of its resolution; r6 only after them.
        ev("2026-11-17 09:00", "ticket_reopened", **TK, conversation_id="r1", actor="c1", role="customer"),
        ev("2026-11-20 11:00", "ticket_reopened", **TK, conversation_id="r6", actor="c6", role="customer"),
        later("ticket"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def tickets() -> dict[Any, Any]:
    return kpis(*ticket_events())


MONDAY = start("2026-11-16 00:00")


def test_sla_rate(tickets: dict[Any, Any]) -> None:
    # r1 met (09:40 <= 09:10 + 2h), r2 breached (13:10 > 11:10), r3 breached (no answer by
    # Tue 10:30), r4, r5 and r6 met: 4 of 6; 09:00-10:00 opened r1 (met), r2 (breached), r6 (met).
    assert tickets["tk", "first_response_sla_rate", "day", MONDAY] == (4 / 6, 4.0, 6.0)
    assert tickets["tk", "first_response_sla_rate", "hour", start("2026-11-16 09:00")] == (
        2 / 3,
        2.0,
        3.0,
    )


def test_response_time_quantiles(tickets: dict[Any, Any]) -> None:
    # Calendar seconds: r1 1800 (from the hand-off), r2 14400, r4 1800, r5 900, r6 900; r3 none.
    assert tickets["tk", "first_response_median_s", "day", MONDAY] == (1800.0, None, 5.0)
    assert tickets["tk", "first_response_p90_s", "day", MONDAY] == (9360.0, None, 5.0)
    # Business seconds: r2 is 09:10-12:00 (10200) + 13:00-13:10 (600) = 10800.
    assert tickets["tk", "first_response_median_business_s", "day", MONDAY][0] == 1800
    assert tickets["tk", "first_response_p90_business_s", "day", MONDAY][0] == pytest.approx(7200)
    # 09:00-10:00: [900, 1800, 14400] -> p90 at rank 1.8 = 1800 + 0.8 * 12600.
    assert tickets["tk", "first_response_p90_s", "hour", start("2026-11-16 09:00")][
        0
    ] == pytest.approx(11880)


def test_first_contact_resolution(tickets: dict[Any, Any]) -> None:
    # Resolved on Monday: r1 (reopened Tue 09:00) no; r6 (reopened Fri 11:00, after Thu 10:30)
    # yes; r5 (two replies) no; r4 yes: 2 of 4.
    assert tickets["tk", "fcr_rate", "day", MONDAY] == (0.5, 2.0, 4.0)
    assert tickets["tk", "fcr_rate", "hour", start("2026-11-16 10:00")] == (0.5, 1.0, 2.0)


def test_the_kind_rolls_up_its_channels(tickets: dict[Any, Any]) -> None:
    assert tickets["ticket (external)", "first_response_sla_rate", "day", MONDAY] == (
        4 / 6,
        4.0,
        6.0,
    )
    assert tickets["ticket (external)", "volume", "day", MONDAY] == (20.0, 20.0, None)


def test_holidays_and_make_up_days_in_business_time() -> None:
    calendar = BusinessCalendar(
        holidays=frozenset({date(2026, 11, 19)}), makeup_days={date(2026, 11, 21): None}
    )
    box = {
        "channel": "box",
        "kind": "ticket",
        "scope": "internal",
        "category": "suggestion",
        "role": "employee",
    }
    values = kpis(
        ev("2026-11-18 17:00", "ticket_opened", **box, conversation_id="s1", actor="emp1"),
        ev("2026-11-18 17:00", "ticket_opened", **box, conversation_id="s2", actor="emp2"),
        ev("2026-11-23 16:00", "ticket_replied", **box, conversation_id="s1", actor="lead"),
        ev("2026-11-24 09:30", "ticket_replied", **box, conversation_id="s2", actor="lead"),
        later("ticket"),
        calendar=calendar,
    )
    wednesday = start("2026-11-18 00:00")
    # 3 working days from Wed 17:00 end Mon 17:00 (Thu a holiday, Sat a make-up day).
    assert values["box", "first_response_sla_rate", "day", wednesday] == (0.5, 1.0, 2.0)
    assert values["box", "first_response_median_business_s", "day", wednesday][0] == 87300
    assert values["box", "first_response_p90_s", "day", wednesday][0] == pytest.approx(
        428400 + 0.9 * (491400 - 428400)
    )


def test_hotline_answers_within_60_seconds() -> None:
    hot = {"channel": "hot", "kind": "hotline"}
    values = kpis(
        ev("2026-11-16 10:00:00", "call_received", **hot, conversation_id="k1", actor="x1", role="customer"),
        ev("2026-11-16 10:00:40", "call_answered", **hot, conversation_id="k1", actor="a1", duration_s=300.0),
        ev("2026-11-16 10:05:00", "call_received", **hot, conversation_id="k2", actor="x2", role="customer"),
        ev("2026-11-16 10:06:30", "call_answered", **hot, conversation_id="k2", actor="a1", duration_s=60.0),
        ev("2026-11-16 10:10:00", "call_received", **hot, conversation_id="k3", actor="x3", role="customer"),
        later("hotline"),
    )  # fmt: skip
    assert values["hot", "hotline_answer_sla_rate", "day", MONDAY] == (1 / 3, 1.0, 3.0)
    assert values["hot", "first_response_sla_rate", "hour", start("2026-11-16 10:00")] == (
        1 / 3,
        1.0,
        3.0,
    )
    assert values["hot", "first_response_median_s", "day", MONDAY][0] == 65


def test_an_unanswered_request_is_pending_until_its_deadline_passes() -> None:
    hot = {"channel": "hot", "kind": "hotline"}
    opened = ev(
        "2026-11-16 10:10:00",
        "call_received",
        **hot,
        conversation_id="k3",
        actor="x3",
        role="customer",
    )
    # As of 10:10:30 the 60 s have not run out: pending, so no rate at all.
    still = ev(
        "2026-11-16 10:10:30",
        "call_received",
        channel="hot2",
        kind="hotline",
        conversation_id="k",
        actor="y",
    )
    assert ("hot", "hotline_answer_sla_rate", "day", MONDAY) not in kpis(opened, still)
    passed = ev(
        "2026-11-16 10:11:01",
        "call_received",
        channel="hot2",
        kind="hotline",
        conversation_id="k",
        actor="y",
    )
    assert kpis(opened, passed)["hot", "hotline_answer_sla_rate", "day", MONDAY] == (0.0, 0.0, 1.0)


def test_posts_are_reviewed_within_one_working_day() -> None:
    forum = {"channel": "forum", "kind": "forum", "scope": "internal"}
    values = kpis(
        ev("2026-11-16 10:00", "post_submitted", **forum, conversation_id="p1", actor="u1", role="employee"),
        ev("2026-11-16 15:00", "post_reviewed", **forum, conversation_id="p1", actor="mod", role="employee", decision="approved"),
        ev("2026-11-16 16:00", "post_submitted", **forum, conversation_id="p2", actor="u2", role="employee"),
        ev("2026-11-18 09:00", "post_reviewed", **forum, conversation_id="p2", actor="mod", role="employee", decision="rejected"),
        later("forum"),
    )  # fmt: skip
    assert values["forum", "review_sla_rate", "day", MONDAY] == (0.5, 1.0, 2.0)
    assert not [key for key in values if key[0] == "forum" and key[1].startswith("first_response")]


def test_a_chat_opened_by_a_customer_message_is_answered_by_an_agent_message() -> None:
    chat = {"channel": "chat", "kind": "live_chat"}
    values = kpis(
        ev("2026-11-16 10:00:00", "message_sent", **chat, conversation_id="c1", message_id="m1", actor="x", role="customer"),
        ev("2026-11-16 10:00:10", "message_sent", **chat, conversation_id="c1", message_id="m2", in_reply_to="m1", actor="bot", role="bot"),
        ev("2026-11-16 10:02:00", "ticket_handed_off", **chat, conversation_id="c1", actor="router", role="system"),
        ev("2026-11-16 10:04:00", "message_sent", **chat, conversation_id="c1", message_id="m3", in_reply_to="m2", actor="x", role="customer"),
        ev("2026-11-16 10:06:00", "message_sent", **chat, conversation_id="c1", message_id="m4", in_reply_to="m3", actor="a", role="agent"),
        later("live_chat"),
    )  # fmt: skip
    # The clock starts at the hand-off (10:02); the agent answers at 10:06: 240 s > 3 min.
    assert values["chat", "first_response_median_s", "day", MONDAY][0] == 240
    assert values["chat", "first_response_sla_rate", "day", MONDAY] == (0.0, 0.0, 1.0)


def test_a_bot_answer_without_a_hand_off_stops_no_clock() -> None:
    chat = {"channel": "chat", "kind": "live_chat"}
    opened = ev("2026-11-16 10:00:00", "message_sent", **chat, conversation_id="c1", message_id="m1", actor="x", role="customer")  # fmt: skip
    bot = ev("2026-11-16 10:00:10", "message_sent", **chat, conversation_id="c1", message_id="m2", in_reply_to="m1", actor="bot", role="bot")  # fmt: skip
    # No response: no clock, pending for ever (no SLA rate); no response time.
    values = kpis(opened, bot, later("live_chat"))
    assert ("chat", "first_response_sla_rate", "day", MONDAY) not in values
    # A response after all: the clock runs from the opening (10:00 -> 10:05 = 300 s, breached).
    agent = ev("2026-11-16 10:05:00", "message_sent", **chat, conversation_id="c1", message_id="m3", actor="a", role="agent")  # fmt: skip
    values = kpis(opened, bot, agent, later("live_chat"))
    assert values["chat", "first_response_sla_rate", "day", MONDAY] == (0.0, 0.0, 1.0)
    assert values["chat", "first_response_median_s", "day", MONDAY] == (300.0, None, 1.0)


def test_late_responses_count_for_the_sla_but_not_for_the_response_time() -> None:
    tk = {"channel": "tk", "kind": "ticket", "category": "complaint"}  # 24 h
    values = kpis(
        ev(
            "2026-11-16 10:00",
            "ticket_opened",
            **tk,
            conversation_id="r",
            actor="c",
            role="customer",
        ),
        ev(
            "2026-11-24 10:00", "ticket_replied", **tk, conversation_id="r", actor="a"
        ),  # after 7 days
        ev(
            "2026-11-16 11:00",
            "ticket_opened",
            **tk,
            conversation_id="q",
            actor="c",
            role="customer",
        ),
        ev(
            "2026-12-17 10:00", "ticket_replied", **tk, conversation_id="q", actor="a"
        ),  # after 30 days: ignored
        later("ticket"),
    )
    assert values["tk", "first_response_sla_rate", "day", MONDAY] == (0.0, 0.0, 2.0)
    assert ("tk", "first_response_median_s", "day", MONDAY) not in values


# -- messages and the rest ------------------------------------------------------------------


def test_read_rate_counts_distinct_readers_within_the_window() -> None:
    mail = {"channel": "mail", "kind": "email", "scope": "internal", "role": "employee"}
    values = kpis(
        ev("2026-11-16 10:00", "message_sent", **mail, message_id="m1", actor="e1", recipient_count=4),
        ev("2026-11-16 10:30", "message_sent", **mail, message_id="m2", actor="e1", recipient_count=3),
        ev("2026-11-16 10:31", "message_bounced", **{**mail, "role": "system"}, message_id="m2", actor="mailer"),
        ev("2026-11-16 10:40", "message_sent", **mail, message_id="m4", actor="e1", recipient_count=5),
        ev("2026-11-16 10:41", "message_misdelivered", **mail, message_id="m4", actor="e9"),
        ev("2026-11-16 11:00", "message_read", **mail, message_id="m1", actor="e2"),
        ev("2026-11-16 11:05", "message_read", **mail, message_id="m1", actor="e1"),  # the sender
        ev("2026-11-16 15:00", "message_read", **mail, message_id="m3", actor="e5"),
        ev("2026-11-16 14:55", "message_sent", **mail, message_id="m3", actor="e1", recipient_count=2),
        ev("2026-11-17 09:00", "message_read", **mail, message_id="m1", actor="e3"),
        ev("2026-11-18 09:00", "message_read", **mail, message_id="m1", actor="e2"),  # again
        ev("2026-11-24 10:00:01", "message_read", **mail, message_id="m1", actor="e4"),  # after 7 days
    )  # fmt: skip
    assert values["mail", "read_rate", "day", MONDAY] == (0.5, 3.0, 6.0)
    assert values["mail", "read_rate", "hour", start("2026-11-16 10:00")] == (0.5, 2.0, 4.0)
    assert values["mail", "read_rate", "hour", start("2026-11-16 14:00")] == (0.5, 1.0, 2.0)


def test_readers_are_capped_at_the_recipients() -> None:
    mail = {"channel": "mail", "kind": "email", "scope": "internal", "role": "employee"}
    values = kpis(
        ev(
            "2026-11-16 10:00",
            "message_sent",
            **mail,
            message_id="m1",
            actor="e1",
            recipient_count=2,
        ),
        *(
            ev("2026-11-16 11:00", "message_read", **mail, message_id="m1", actor=f"r{n}")
            for n in range(3)
        ),
        ev(
            "2026-11-16 10:00",
            "message_sent",
            **mail,
            message_id="m0",
            actor="e1",
            recipient_count=0,
        ),
    )
    assert values["mail", "read_rate", "day", MONDAY] == (1.0, 2.0, 2.0)


def test_active_users_per_channel_and_per_kind() -> None:
    im = {"kind": "im", "scope": "internal", "role": "employee"}
    values = kpis(
        ev("2026-11-16 10:00", "message_sent", channel="im-1", **im, message_id="a", actor="u1"),
        ev("2026-11-16 11:00", "message_sent", channel="im-1", **im, message_id="b", actor="u2"),
        ev("2026-11-17 10:00", "message_sent", channel="im-1", **im, message_id="c", actor="u2"),
        ev("2026-11-17 10:05", "message_read", channel="im-2", **im, message_id="x", actor="u3"),
        ev("2026-11-17 10:06", "message_sent", channel="im-2", kind="im", scope="internal", message_id="y", actor="bot1", role="bot"),
        # im-3 is quiet on Tuesday: its Monday user is not in the kind's Tuesday window.
        ev("2026-11-16 12:00", "message_sent", channel="im-3", **im, message_id="z", actor="u4"),
    )  # fmt: skip
    tuesday = start("2026-11-17 00:00")
    assert values["im-1", "active_users_1d", "day", tuesday] == (1.0, 1.0, None)  # u2
    assert values["im-1", "active_users_7d", "day", tuesday][0] == 2  # u1, u2
    assert values["im-2", "active_users_1d", "day", tuesday][0] == 1  # u3, not the bot
    assert values["im (internal)", "active_users_1d", "day", tuesday][0] == 2  # u2, u3
    assert values["im (internal)", "active_users_28d", "day", tuesday][0] == 3  # u1, u2, u3
    assert values["im (internal)", "active_users_28d", "day", MONDAY][0] == 3  # u1, u2, u4
    assert ("im-3", "active_users_28d", "day", tuesday) not in values  # no event that day
    assert not [key for key in values if key[1].startswith("active_users") and key[2] == "hour"]


def test_meetings_surveys_and_volume() -> None:
    meet = {"channel": "mtg", "kind": "meeting", "scope": "internal", "role": "employee"}
    values = kpis(
        ev(
            "2026-11-16 09:00", "meeting_held", **meet, duration_s=1800.0, planned_duration_s=1800.0
        ),
        ev(
            "2026-11-16 10:00", "meeting_held", **meet, duration_s=3700.0, planned_duration_s=3600.0
        ),
        ev("2026-11-16 11:00", "meeting_held", **meet, duration_s=1200.0),
        ev("2026-11-16 10:00", "survey_answered", channel="tk", kind="ticket", score=5),
        ev("2026-11-16 10:20", "survey_answered", channel="tk", kind="ticket", score=4),
        ev("2026-11-16 11:10", "survey_answered", channel="tk", kind="ticket", score=2),
    )
    assert values["mtg", "meeting_overrun_rate", "day", MONDAY] == (0.5, 1.0, 2.0)
    assert values["mtg", "volume", "day", MONDAY] == (3.0, 3.0, None)
    assert values["tk", "csat_mean", "day", MONDAY] == (11 / 3, 11.0, 3.0)
    assert values["tk", "csat_mean", "hour", start("2026-11-16 10:00")] == (4.5, 9.0, 2.0)


def test_every_kpi_has_a_final_time_and_the_input_may_be_a_frame() -> None:
    events = ticket_events()
    frame = reference_frame(pl.DataFrame(events))
    assert frame.filter(pl.col("kpi").is_in(KPIS).not_()).is_empty()
    assert reference_kpis(pl.DataFrame(events)) == reference_kpis(events)
    # The SLA of Monday's day window settles after Mon 24:00 + 7 days + 3 business days
    # (the slowest target, suggestions) = Thu 2026-11-26 18:00, plus 600 s of grace.
    sla = frame.filter(
        (pl.col("subject") == "tk")
        & (pl.col("kpi") == "first_response_sla_rate")
        & (pl.col("granularity") == "day")
    ).row(0, named=True)
    assert sla["final_at"] == datetime(2026, 11, 26, 18, 10, tzinfo=UTC).timestamp()


def test_windows_follow_the_reporting_time_zone() -> None:
    im = {"channel": "im", "kind": "im", "scope": "internal", "role": "employee"}
    events = [
        ev(
            "2026-11-16 15:59", "message_sent", **im, message_id="a", actor="u1"
        ),  # 23:59 in Shanghai
        ev("2026-11-16 16:00", "message_sent", **im, message_id="b", actor="u2"),  # 00:00 next day
    ]
    values = reference_kpis(events, timezone="Asia/Shanghai")
    # Shanghai days start at 16:00 UTC; the Monday 17th (local) starts 2026-11-16T16:00Z.
    assert values["im", "volume", "day", start("2026-11-15 16:00")] == (1.0, 1.0, None)
    assert values["im", "volume", "day", start("2026-11-16 16:00")] == (1.0, 1.0, None)
    assert values["im", "active_users_7d", "day", start("2026-11-16 16:00")] == (2.0, 2.0, None)
    assert values["im", "volume", "hour", start("2026-11-16 15:00")] == (1.0, 1.0, None)


# -- cases that once differed (kept as regressions) -------------------------------------

IM = {"kind": "im", "scope": "internal", "role": "employee"}


def _reference_of(*events: dict[str, Any]) -> dict[Any, Any]:
    """The reference for events written for the engine harness (``_t`` epoch seconds)."""
    return reference_kpis([{**e, "occurred_at": e["_t"]} for e in events])


def _two_partitions() -> tuple[Run, dict[Any, Any]]:
    """im-a lives in source partition 0, im-b in 1; the worker reads partition 0 ahead of 1."""
    run = Run(sources=2)
    e = run.event
    a1 = e("2026-11-16 10:00", "message_sent", "im-a", **IM, message_id="a1", actor="u1")
    a2 = e("2026-11-16 12:00", "message_sent", "im-a", **IM, message_id="a2", actor="u1")
    b1 = e("2026-11-16 09:30", "message_sent", "im-b", **IM, message_id="b1", actor="u2")
    b2 = e("2026-11-16 10:30", "message_sent", "im-b", **IM, message_id="b2", actor="u2")
    b3 = e("2026-11-16 12:00", "message_sent", "im-b", **IM, message_id="b3", actor="u2")
    # Both channels go on days later, so every window of Monday settles (within retention).
    a3 = e("2026-11-20 12:00", "message_sent", "im-a", **IM, message_id="a3", actor="u1")
    b4 = e("2026-11-20 12:00", "message_sent", "im-b", **IM, message_id="b4", actor="u2")
    run.feed(a1, a2, src=0)  # im-a's 12:00 passes 10:00-11:00 + grace: final for im-a ...
    run.feed(b1, b2, b3, src=1)  # ... before im-b (partition 1) has been read at all
    run.feed(a3, src=0)
    run.feed(b4, src=1)
    return run, _reference_of(a1, a2, a3, b1, b2, b3, b4)


def test_both_see_the_same_channel_windows_from_two_partitions() -> None:
    run, reference = _two_partitions()
    for channel in ("im-a", "im-b"):
        for hour in ("09:00", "10:00", "12:00"):
            key = (channel, "volume", "hour", start(f"2026-11-16 {hour}"))
            finals = run.finals_for(channel, "volume", "hour")
            assert finals.get(f"2026-11-16 {hour}") == (
                reference[key][0] if key in reference else None
            )
    assert run.final("*im/internal", "volume", "hour", "2026-11-16 12:00").value == 2
    assert reference["im (internal)", "volume", "hour", start("2026-11-16 12:00")] == (
        2.0,
        2.0,
        None,
    )


def test_stream_kind_window_counts_a_channel_read_later() -> None:
    run, reference = _two_partitions()
    # 10:00-11:00 has a1 (im-a) and b2 (im-b): the kind's volume is 2.
    assert reference["im (internal)", "volume", "hour", start("2026-11-16 10:00")] == (
        2.0,
        2.0,
        None,
    )
    assert run.final("*im/internal", "volume", "hour", "2026-11-16 10:00").value == 2


def test_stream_kind_window_of_a_channel_read_later_becomes_final() -> None:
    run, reference = _two_partitions()
    # 09:00-10:00 has only b1 (im-b).
    assert reference["im (internal)", "volume", "hour", start("2026-11-16 09:00")] == (
        1.0,
        1.0,
        None,
    )
    assert run.finals_for("*im/internal", "volume", "hour").get("2026-11-16 09:00") == 1


def test_stream_kind_window_keeps_a_channel_whose_group_ran_far_ahead() -> None:
    run = Run(sources=2)
    e = run.event
    a1 = e("2026-11-16 10:00", "message_sent", "im-a", **IM, message_id="a1", actor="u1")
    b1 = e("2026-11-16 10:00", "message_sent", "im-b", **IM, message_id="b1", actor="u2")
    a2 = e("2027-03-01 00:00", "message_sent", "im-a", **IM, message_id="a2", actor="u1")
    b2 = e("2027-03-01 00:00", "message_sent", "im-b", **IM, message_id="b2", actor="u2")
    run.feed(a1, src=0)
    run.feed(b1, src=1)
    run.feed(a2, src=0)  # im-a: 10:00 final, and Monday is past retention for group 0
    run.feed(b2, src=1)  # im-b: 10:00 final; now the kind's window is final
    reference = _reference_of(a1, b1, a2, b2)
    assert reference["im (internal)", "volume", "hour", start("2026-11-16 10:00")] == (
        2.0,
        2.0,
        None,
    )
    assert run.final("im-a", "volume", "hour", "2026-11-16 10:00").value == 1
    assert run.final("im-b", "volume", "hour", "2026-11-16 10:00").value == 1
    assert run.final("*im/internal", "volume", "hour", "2026-11-16 10:00").value == 2


def test_stream_sla_of_a_bot_answered_request_answered_after_its_window_is_final() -> None:
    run = Run()
    e = run.event
    chat = {"channel": "chat", "kind": "live_chat"}
    events = [
        e("2026-11-16 10:00:00", "message_sent", **chat, conversation_id="c1", message_id="m1", actor="x", role="customer"),
        e("2026-11-16 10:00:10", "message_sent", **chat, conversation_id="c1", message_id="m2", in_reply_to="m1", actor="bot", role="bot"),
        # Monday's SLA window is final after Tue 00:00 + 7 d + 3 business days + grace = Thu 11-26 18:10.
        e("2026-11-30 10:00:00", "message_sent", **chat, conversation_id="c2", message_id="m4", actor="y", role="customer"),
        # The agent answers c1 19 days after it opened: past the response horizon (7 d),
        # so without a hand-off it starts no clock and the request stays pending.
        e("2026-12-05 10:00:00", "message_sent", **chat, conversation_id="c1", message_id="m3", actor="a", role="agent"),
    ]  # fmt: skip
    for event in events:
        run.feed(event)
    run.finish("live_chat")
    reference = _reference_of(*events)
    assert ("chat", "first_response_sla_rate", "day", MONDAY) not in reference
    assert run.finals_for("chat", "volume", "day")["2026-11-16 00:00"] == 2  # final
    assert "2026-11-16 00:00" not in run.finals_for("chat", "first_response_sla_rate", "day")
