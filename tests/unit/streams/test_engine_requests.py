"""Response, SLA and first-contact-resolution KPIs on hand-computed requests.

Default calendar: UTC, Monday to Friday, 09:00-12:00 and 13:00-18:00 (8 h a
day). Ticket target: 2 business hours. Monday is 2026-11-16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.streams.harness import Run, catalog_from


@pytest.fixture
def tickets() -> Run:
    run = Run()
    e = run.event
    tk = {"channel": "tk", "kind": "ticket"}
    run.feed(
        # r1: a bot answers first, hands off at 09:10; the agent answers at 09:40.
        e(
            "2026-11-16 09:00",
            "ticket_opened",
            **tk,
            conversation_id="r1",
            actor="c1",
            role="customer",
        ),
        e(
            "2026-11-16 09:00:05",
            "ticket_replied",
            **tk,
            conversation_id="r1",
            actor="bot",
            role="bot",
        ),
        e(
            "2026-11-16 09:10",
            "ticket_opened",
            **tk,
            conversation_id="r2",
            actor="c2",
            role="customer",
        ),
        e(
            "2026-11-16 09:10",
            "ticket_handed_off",
            **tk,
            conversation_id="r1",
            role="system",
            actor="router",
        ),
        e(
            "2026-11-16 09:20",
            "ticket_replied",
            **tk,
            conversation_id="r2",
            actor="a1",
            visibility="internal",
        ),
        e(
            "2026-11-16 09:30",
            "ticket_replied",
            **tk,
            conversation_id="r2",
            actor="c2",
            role="customer",
        ),
        e(
            "2026-11-16 09:30",
            "ticket_opened",
            **tk,
            conversation_id="r6",
            actor="c6",
            role="customer",
        ),
        e("2026-11-16 09:40", "ticket_replied", **tk, conversation_id="r1", actor="a1"),
        e("2026-11-16 09:45", "ticket_replied", **tk, conversation_id="r6", actor="a2"),
        e("2026-11-16 10:00", "ticket_resolved", **tk, conversation_id="r1", actor="a1"),
        e(
            "2026-11-16 10:00",
            "ticket_opened",
            **tk,
            conversation_id="r5",
            actor="c5",
            role="customer",
        ),
        e("2026-11-16 10:15", "ticket_replied", **tk, conversation_id="r5", actor="a3"),
        e("2026-11-16 10:30", "ticket_resolved", **tk, conversation_id="r6", actor="a2"),
        e("2026-11-16 10:45", "ticket_replied", **tk, conversation_id="r5", actor="a3"),
        e("2026-11-16 11:00", "ticket_resolved", **tk, conversation_id="r5", actor="a3"),
        e(
            "2026-11-16 11:00",
            "ticket_opened",
            **tk,
            conversation_id="r4",
            actor="c4",
            role="customer",
        ),
        e("2026-11-16 11:30", "ticket_replied", **tk, conversation_id="r4", actor="a1"),
        e("2026-11-16 12:00", "ticket_resolved", **tk, conversation_id="r4", actor="a1"),
        e("2026-11-16 13:10", "ticket_replied", **tk, conversation_id="r2", actor="a2"),
        e(
            "2026-11-16 17:30",
            "ticket_opened",
            **tk,
            conversation_id="r3",
            actor="c3",
            role="customer",
        ),
        # r1 reopens within 3 business days of its resolution; r6 only after them.
        e(
            "2026-11-17 09:00",
            "ticket_reopened",
            **tk,
            conversation_id="r1",
            actor="c1",
            role="customer",
        ),
        e(
            "2026-11-20 11:00",
            "ticket_reopened",
            **tk,
            conversation_id="r6",
            actor="c6",
            role="customer",
        ),
    )
    run.finish("ticket")
    return run


def test_sla_rate(tickets: Run) -> None:
    # r1 met (09:40 <= 09:10 + 2h), r2 breached (13:10 > 11:10), r3 breached (no answer by
    # Tue 10:30), r4 met (11:30), r5 met (10:15), r6 met (09:45): 4 of 6.
    assert tickets.final("tk", "first_response_sla_rate", "day", "2026-11-16 00:00") == (
        4 / 6,
        4.0,
        6.0,
    )
    # 09:00-10:00 opened r1 (met), r2 (breached), r6 (met).
    assert tickets.final("tk", "first_response_sla_rate", "hour", "2026-11-16 09:00") == (
        2 / 3,
        2.0,
        3.0,
    )


def test_response_time_quantiles(tickets: Run) -> None:
    # Calendar seconds: r1 1800 (from the hand-off), r2 14400, r4 1800, r5 900, r6 900; r3 none.
    # Sorted [900, 900, 1800, 1800, 14400]: median 1800; p90 at rank 3.6 = 1800 + 0.6 * 12600.
    assert tickets.final("tk", "first_response_median_s", "day", "2026-11-16 00:00").value == 1800
    assert tickets.final("tk", "first_response_p90_s", "day", "2026-11-16 00:00") == (
        9360.0,
        None,
        5.0,
    )
    # Business seconds: r2 is 09:10-12:00 (10200) + 13:00-13:10 (600) = 10800.
    # Sorted [900, 900, 1800, 1800, 10800]: p90 = 1800 + 0.6 * 9000.
    assert (
        tickets.final("tk", "first_response_median_business_s", "day", "2026-11-16 00:00").value
        == 1800
    )
    assert tickets.final(
        "tk", "first_response_p90_business_s", "day", "2026-11-16 00:00"
    ).value == pytest.approx(7200)
    # 09:00-10:00: [900, 1800, 14400] -> p90 at rank 1.8 = 1800 + 0.8 * 12600.
    assert tickets.final(
        "tk", "first_response_p90_s", "hour", "2026-11-16 09:00"
    ).value == pytest.approx(11880)


def test_first_contact_resolution(tickets: Run) -> None:
    # Resolved on Monday: r1 (one reply, but reopened Tue 09:00, within 3 business days) no;
    # r6 (reopened Fri 11:00, after Thu 10:30) yes; r5 (two replies) no; r4 yes: 2 of 4.
    assert tickets.final("tk", "fcr_rate", "day", "2026-11-16 00:00") == (0.5, 2.0, 4.0)
    assert tickets.final("tk", "fcr_rate", "hour", "2026-11-16 10:00") == (
        0.5,
        1.0,
        2.0,
    )  # r1 no, r6 yes


def test_the_kind_rolls_up_its_channels(tickets: Run) -> None:
    assert tickets.final(
        "*ticket/external", "first_response_sla_rate", "day", "2026-11-16 00:00"
    ) == (4 / 6, 4.0, 6.0)


def test_values_are_sent_before_they_are_final_and_then_once_as_final(tickets: Run) -> None:
    # The SLA rate settles only 7 days (the response horizon) plus the target after the window,
    # long after the last ticket event: before that, a non-final value; then one final.
    sent = [
        u for u in tickets.updates
        if u.channel_id == "tk" and u.kpi == "first_response_sla_rate" and u.window.granularity == "day"
    ]  # fmt: skip
    assert [u.final for u in sent] == [False, True]
    assert sent[0].result == sent[1].result


def test_holidays_and_make_up_days_in_business_time(tmp_path: Path) -> None:
    catalog = catalog_from(
        tmp_path,
        """
[calendars.default]
timezone = "UTC"
periods = ["09:00-12:00", "13:00-18:00"]
holidays = [2026-11-19]
makeup_days = [2026-11-21]
""",
    )
    run = Run(catalog=catalog)
    box = {
        "channel": "box",
        "kind": "ticket",
        "scope": "internal",
        "category": "suggestion",
        "role": "employee",
    }
    e = run.event
    run.feed(
        e("2026-11-18 17:00", "ticket_opened", **box, conversation_id="s1", actor="emp1"),
        e("2026-11-18 17:00", "ticket_opened", **box, conversation_id="s2", actor="emp2"),
        e("2026-11-23 16:00", "ticket_replied", **box, conversation_id="s1", actor="lead"),
        e("2026-11-24 09:30", "ticket_replied", **box, conversation_id="s2", actor="lead"),
    )
    run.finish("ticket")
    # 3 working days = 24 business hours from Wed 17:00: Wed 1 h, Thu holiday, Fri 8 h, Sat
    # (make-up) 8 h, Mon 09:00-12:00 3 h and 13:00-17:00 4 h -> deadline Mon 17:00.
    # s1 answered Mon 16:00 (23 business hours = 82800 s): met; s2 answered Tue: breached.
    assert run.final("box", "first_response_sla_rate", "day", "2026-11-18 00:00") == (0.5, 1.0, 2.0)
    # s2: Wed 1 h + Fri 8 h + Sat 8 h + Mon 8 h + Tue 09:00-09:30 = 25.5 h = 91800 business seconds;
    # the median of 82800 and 91800.
    assert (
        run.final("box", "first_response_median_business_s", "day", "2026-11-18 00:00").value
        == 87300
    )
    # Calendar: s1 Wed 17:00 -> Mon 16:00 = 5 days - 1 h = 428400 s.
    assert run.final(
        "box", "first_response_p90_s", "day", "2026-11-18 00:00"
    ).value == pytest.approx(428400 + 0.9 * (491400 - 428400))


def test_hotline_answers_within_60_seconds() -> None:
    run = Run()
    e = run.event
    hot = {"channel": "hot", "kind": "hotline"}
    run.feed(
        e(
            "2026-11-16 10:00:00",
            "call_received",
            **hot,
            conversation_id="k1",
            actor="x1",
            role="customer",
        ),
        e(
            "2026-11-16 10:00:40",
            "call_answered",
            **hot,
            conversation_id="k1",
            actor="a1",
            duration_s=300.0,
        ),
        e(
            "2026-11-16 10:05:00",
            "call_received",
            **hot,
            conversation_id="k2",
            actor="x2",
            role="customer",
        ),
        e(
            "2026-11-16 10:06:30",
            "call_answered",
            **hot,
            conversation_id="k2",
            actor="a1",
            duration_s=60.0,
        ),
        e(
            "2026-11-16 10:10:00",
            "call_received",
            **hot,
            conversation_id="k3",
            actor="x3",
            role="customer",
        ),
    )
    run.finish("hotline")
    # k1 met (40 s), k2 breached (90 s), k3 never answered: breached once 10:11 passed.
    assert run.final("hot", "hotline_answer_sla_rate", "day", "2026-11-16 00:00") == (
        1 / 3,
        1.0,
        3.0,
    )
    assert run.final("hot", "first_response_sla_rate", "hour", "2026-11-16 10:00") == (
        1 / 3,
        1.0,
        3.0,
    )
    assert (
        run.final("hot", "first_response_median_s", "day", "2026-11-16 00:00").value == 65
    )  # (40 + 90) / 2


def test_posts_are_reviewed_within_one_working_day() -> None:
    run = Run()
    e = run.event
    forum = {"channel": "forum", "kind": "forum", "scope": "internal"}
    run.feed(
        e(
            "2026-11-16 10:00",
            "post_submitted",
            **forum,
            conversation_id="p1",
            actor="u1",
            role="employee",
        ),
        e(
            "2026-11-16 15:00",
            "post_reviewed",
            **forum,
            conversation_id="p1",
            actor="mod",
            role="employee",
            decision="approved",
        ),
        e(
            "2026-11-16 16:00",
            "post_submitted",
            **forum,
            conversation_id="p2",
            actor="u2",
            role="employee",
        ),
        e(
            "2026-11-18 09:00",
            "post_reviewed",
            **forum,
            conversation_id="p2",
            actor="mod",
            role="employee",
            decision="rejected",
        ),
    )
    run.finish("forum")
    # One working day (8 h): p1 due Tue 10:00, reviewed Mon 15:00: met; p2 due Tue 16:00: breached.
    assert run.final("forum", "review_sla_rate", "day", "2026-11-16 00:00") == (0.5, 1.0, 2.0)
    # Posts are not tickets: no first-response KPIs for them.
    assert not any(
        u.kpi.startswith("first_response") for u in run.updates if u.channel_id == "forum"
    )


def test_a_chat_opened_by_a_customer_message_is_answered_by_an_agent_message() -> None:
    run = Run()
    e = run.event
    chat = {"channel": "chat", "kind": "live_chat"}
    run.feed(
        e(
            "2026-11-16 10:00:00",
            "message_sent",
            **chat,
            conversation_id="c1",
            message_id="m1",
            actor="x",
            role="customer",
        ),
        e(
            "2026-11-16 10:00:10",
            "message_sent",
            **chat,
            conversation_id="c1",
            message_id="m2",
            in_reply_to="m1",
            actor="bot",
            role="bot",
        ),
        e(
            "2026-11-16 10:02:00",
            "ticket_handed_off",
            **chat,
            conversation_id="c1",
            actor="router",
            role="system",
        ),
        e(
            "2026-11-16 10:04:00",
            "message_sent",
            **chat,
            conversation_id="c1",
            message_id="m3",
            in_reply_to="m2",
            actor="x",
            role="customer",
        ),
        e(
            "2026-11-16 10:06:00",
            "message_sent",
            **chat,
            conversation_id="c1",
            message_id="m4",
            in_reply_to="m3",
            actor="a",
            role="agent",
        ),
    )
    run.finish("live_chat")
    # The clock starts at the hand-off (10:02); the agent answers at 10:06: 240 s > 3 min: breached.
    assert run.final("chat", "first_response_median_s", "day", "2026-11-16 00:00").value == 240
    assert run.final("chat", "first_response_sla_rate", "day", "2026-11-16 00:00") == (
        0.0,
        0.0,
        1.0,
    )


def _chat(run: Run, at: str, actor: str, role: str, message_id: str) -> dict[str, Any]:
    return run.event(
        at,
        "message_sent",
        "chat",
        "live_chat",
        conversation_id="c1",
        message_id=message_id,
        actor=actor,
        role=role,
    )


def test_a_bot_answered_request_with_a_response_in_the_horizon_runs_from_the_opening() -> None:
    run = Run()
    run.feed(
        _chat(run, "2026-11-16 10:00:00", "x", "customer", "m1"),
        _chat(run, "2026-11-16 10:00:10", "bot", "bot", "m2"),
        _chat(run, "2026-11-16 10:02:00", "a", "agent", "m3"),  # no hand-off; 120 s ≤ 3 min
    )
    run.finish("live_chat")
    assert run.final("chat", "first_response_sla_rate", "day", "2026-11-16 00:00") == (1, 1, 1)
    assert run.final("chat", "first_response_median_s", "day", "2026-11-16 00:00").value == 120


def test_a_bot_reply_after_the_horizon_does_not_make_a_breached_request_pending() -> None:
    run = Run()
    run.feed(
        _chat(run, "2026-11-16 10:00:00", "x", "customer", "m1"),
        # 8 days later: past the 7-day horizon, so the bot did not answer first.
        _chat(run, "2026-11-24 10:00:00", "bot", "bot", "m2"),
    )
    run.finish("live_chat")
    # The clock ran from the opening; no response: breached once 10:03 passed.
    assert run.final("chat", "first_response_sla_rate", "day", "2026-11-16 00:00") == (0, 0, 1)
