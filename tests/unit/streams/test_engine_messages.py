"""Read rate, active users, meetings, surveys, volume and late events, computed by hand."""

from __future__ import annotations

from tests.unit.streams.harness import Run, ts


def test_read_rate_counts_distinct_readers_within_the_window() -> None:
    run = Run()
    e = run.event
    mail = {"channel": "mail", "kind": "email", "scope": "internal", "role": "employee"}
    run.feed(
        e(
            "2026-11-16 10:00",
            "message_sent",
            **mail,
            message_id="m1",
            actor="e1",
            recipient_count=4,
        ),
        e(
            "2026-11-16 10:30",
            "message_sent",
            **mail,
            message_id="m2",
            actor="e1",
            recipient_count=3,
        ),
        e(
            "2026-11-16 10:31",
            "message_bounced",
            **{**mail, "role": "system"},
            message_id="m2",
            actor="mailer",
        ),
        e(
            "2026-11-16 10:40",
            "message_sent",
            **mail,
            message_id="m4",
            actor="e1",
            recipient_count=5,
        ),
        e("2026-11-16 10:41", "message_misdelivered", **mail, message_id="m4", actor="e9"),
        e("2026-11-16 11:00", "message_read", **mail, message_id="m1", actor="e2"),
        e("2026-11-16 11:05", "message_read", **mail, message_id="m1", actor="e1"),  # the sender
        # m3's read arrives before its send (out of order, but within grace).
        e("2026-11-16 15:00", "message_read", **mail, message_id="m3", actor="e5"),
        e(
            "2026-11-16 14:55",
            "message_sent",
            **mail,
            message_id="m3",
            actor="e1",
            recipient_count=2,
        ),
        e("2026-11-17 09:00", "message_read", **mail, message_id="m1", actor="e3"),
        e("2026-11-18 09:00", "message_read", **mail, message_id="m1", actor="e2"),  # again
        e(
            "2026-11-24 10:00:01", "message_read", **mail, message_id="m1", actor="e4"
        ),  # after 7 days
    )
    run.finish("email")
    # m1: e2 and e3 within 7 days (not the sender, e2 once, e4 too late) = 2 of 4; m2 bounced
    # and m4 misdelivered are left out; m3: 1 of 2. Read rate (2 + 1) / (4 + 2).
    assert run.final("mail", "read_rate", "day", "2026-11-16 00:00") == (0.5, 3.0, 6.0)
    assert run.final("mail", "read_rate", "hour", "2026-11-16 10:00") == (0.5, 2.0, 4.0)
    assert run.final("mail", "read_rate", "hour", "2026-11-16 14:00") == (0.5, 1.0, 2.0)


def test_active_users_per_channel_and_per_kind() -> None:
    run = Run()
    e = run.event
    im = {"kind": "im", "scope": "internal", "role": "employee"}
    run.feed(
        e("2026-11-16 10:00", "message_sent", channel="im-1", **im, message_id="a", actor="u1"),
        e("2026-11-16 11:00", "message_sent", channel="im-1", **im, message_id="b", actor="u2"),
        e("2026-11-17 10:00", "message_sent", channel="im-1", **im, message_id="c", actor="u2"),
        e("2026-11-17 10:05", "message_read", channel="im-2", **im, message_id="x", actor="u3"),
        e(
            "2026-11-17 10:06",
            "message_sent",
            channel="im-2",
            kind="im",
            scope="internal",
            message_id="y",
            actor="bot1",
            role="bot",
        ),
    )
    run.finish("im")
    assert run.final("im-1", "active_users_1d", "day", "2026-11-17 00:00").value == 1  # u2
    assert run.final("im-1", "active_users_7d", "day", "2026-11-17 00:00").value == 2  # u1, u2
    assert (
        run.final("im-2", "active_users_1d", "day", "2026-11-17 00:00").value == 1
    )  # u3, not the bot
    assert (
        run.final("*im/internal", "active_users_1d", "day", "2026-11-17 00:00").value == 2
    )  # u2, u3
    assert run.final("*im/internal", "active_users_28d", "day", "2026-11-17 00:00").value == 3
    assert not [
        u
        for u in run.updates
        if u.kpi.startswith("active_users") and u.window.granularity == "hour"
    ]


def test_meetings_surveys_and_volume() -> None:
    run = Run()
    e = run.event
    meet = {"channel": "mtg", "kind": "meeting", "scope": "internal", "role": "employee"}
    run.feed(
        e("2026-11-16 09:00", "meeting_held", **meet, duration_s=1800.0, planned_duration_s=1800.0),
        e("2026-11-16 10:00", "meeting_held", **meet, duration_s=3700.0, planned_duration_s=3600.0),
        e("2026-11-16 11:00", "meeting_held", **meet, duration_s=1200.0),
    )
    run.feed(
        e("2026-11-16 10:00", "survey_answered", channel="tk", kind="ticket", score=5),
        e("2026-11-16 10:20", "survey_answered", channel="tk", kind="ticket", score=4),
        e("2026-11-16 11:10", "survey_answered", channel="tk", kind="ticket", score=2),
        src=1,
    )
    run.finish("meeting")
    run.finish("ticket", src=1)
    # One of the two planned meetings ran over; the third had no plan.
    assert run.final("mtg", "meeting_overrun_rate", "day", "2026-11-16 00:00") == (0.5, 1.0, 2.0)
    assert run.final("mtg", "volume", "day", "2026-11-16 00:00").value == 3
    assert run.final("tk", "csat_mean", "day", "2026-11-16 00:00") == (11 / 3, 11.0, 3.0)
    assert run.final("tk", "csat_mean", "hour", "2026-11-16 10:00") == (4.5, 9.0, 2.0)


def test_late_events_inside_grace_count_and_beyond_grace_are_dropped() -> None:
    run = Run(grace_s=600)
    e = run.event
    soc = {"channel": "soc", "kind": "social"}
    run.feed(
        e("2026-11-16 10:00", "message_sent", **soc, message_id="1", actor="a"),
        e("2026-11-16 10:30", "message_sent", **soc, message_id="2", actor="a"),
        e("2026-11-16 10:25", "message_sent", **soc, message_id="3", actor="a"),  # 5 min late: kept
        e(
            "2026-11-16 10:10", "message_sent", **soc, message_id="4", actor="a"
        ),  # 20 min late: dropped
    )
    run.finish("social")
    assert run.final("soc", "volume", "hour", "2026-11-16 10:00").value == 3
    assert run.engine.late_dropped == 1


def test_an_event_stamped_ahead_of_the_clock_counts_without_making_its_group_late() -> None:
    """A client that stamps local time as UTC is 8 hours ahead in China; ingest accepts a day
    ahead (clock skew). Its event counts, but the group's watermark stops at the worker's
    clock: before, every other channel of the kind on that partition was late by hours, and
    dropped, until the clock caught up with the stamp."""
    run = Run(grace_s=600)
    e = run.event
    im = {"kind": "im", "scope": "internal", "actor": "a"}
    run.feed(
        e("2026-11-16 18:05", "message_sent", "skewed", **im, message_id="s"),
        clock="2026-11-16 10:05",
    )
    run.feed(
        *(
            e(f"2026-11-16 10:0{i}", "message_sent", "im-a", **im, message_id=f"a{i}")
            for i in range(6)
        ),
        clock="2026-11-16 10:06",
    )
    assert (run.engine.late_dropped, run.engine.ahead_of_clock) == (0, 1)
    assert run.engine.clock.watermarks["0/im"] == ts("2026-11-16 10:05")
    run.feed(
        e("2026-11-16 11:20", "message_sent", "im-a", **im, message_id="b"),
        clock="2026-11-16 11:20",
    )
    for at in ("2026-11-16 11:20", "2026-11-16 11:21"):  # the partition is idle: all arrived
        run.tick(at, sources=[0], backfill=[0])
    assert run.final("im-a", "volume", "hour", "2026-11-16 10:00").value == 6
    assert run.final("*im/internal", "volume", "hour", "2026-11-16 10:00").value == 6
    run.feed(
        e("2026-11-16 19:20", "message_sent", "im-a", **im, message_id="c"),
        clock="2026-11-16 19:20",
    )
    assert run.final("skewed", "volume", "hour", "2026-11-16 18:00").value == 1  # it counts


def test_a_final_window_never_changes() -> None:
    run = Run(grace_s=600)
    e = run.event
    soc = {"channel": "soc", "kind": "social"}
    run.feed(e("2026-11-16 10:00", "message_sent", **soc, message_id="1", actor="a"))
    run.feed(
        e("2026-11-16 11:20", "message_sent", **soc, message_id="2", actor="a")
    )  # 10:00-11:00 now final
    assert run.final("soc", "volume", "hour", "2026-11-16 10:00").value == 1
    run.feed(e("2026-11-16 10:59", "message_sent", **soc, message_id="3", actor="a"))  # 21 min late
    assert run.final("soc", "volume", "hour", "2026-11-16 10:00").value == 1
    assert run.engine.late_dropped == 1
