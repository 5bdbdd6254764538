"""The warehouse's core and metrics tables from hand-computed scenarios, and against the reference.

Events go in through the sink's own decode and commit (no Kafka here: the
integration tests cover the topic); the build then derives every table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from ingest.simulator import SimulationConfig, simulate
from metrics.channels import ChannelCatalog
from metrics.windows import WindowClock
from tests.integration.kpi_reference import reference_kpis
from tests.scenarios import BERLIN, CALENDAR, MONDAY, calendar_scenario, ticket_scenario
from tests.unit.streams.harness import catalog_from
from warehouse.build import build
from warehouse.schema import open_warehouse
from warehouse.sink import commit_batch, decode_record

Value = tuple[float | None, float | None, float | None]


def load(con: duckdb.DuckDBPyConnection, events: Iterable[Mapping[str, Any]]) -> int:
    """Store ``events`` as the sink would from partition 0; returns how many were new."""
    rows = []
    for offset, event in enumerate(events):
        decoded = decode_record(orjson.dumps(event, default=str), "events", 0, offset)
        assert isinstance(decoded, dict), decoded
        rows.append(decoded)
    return commit_batch(con, "events", rows, 0, {0: len(rows)})


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def daily(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], Value]:
    """``(subject, kpi, day)``: subject is the channel, or ``kind (scope)`` for a roll-up."""
    rows = con.execute(
        "SELECT coalesce(channel_id, channel_kind || ' (' || scope || ')'), kpi, "
        "CAST(day AS VARCHAR), value, numerator, denominator FROM metrics.kpi_daily"
    ).fetchall()
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}


def test_a_ticket_day_computed_by_hand(con: duckdb.DuckDBPyConnection) -> None:
    events = ticket_scenario()
    assert load(con, events) == len(events)
    build(con, ChannelCatalog(), now=datetime(2026, 1, 1, tzinfo=UTC))
    kpis = daily(con)
    # The same values the stream sends for this scenario (tests/integration/test_stream.py).
    assert kpis[("tk", "first_response_sla_rate", MONDAY)] == (4 / 6, 4.0, 6.0)
    assert kpis[("tk", "first_response_median_s", MONDAY)] == (1800.0, None, 5.0)
    assert kpis[("tk", "first_response_p90_s", MONDAY)][0] == pytest.approx(9360.0)
    assert kpis[("tk", "first_response_p90_business_s", MONDAY)][0] == pytest.approx(7200.0)
    assert kpis[("tk", "fcr_rate", MONDAY)] == (0.5, 2.0, 4.0)
    assert kpis[("tk", "volume", MONDAY)] == (20.0, 20.0, None)
    assert kpis[("ticket (external)", "first_response_sla_rate", MONDAY)] == (4 / 6, 4.0, 6.0)

    requests = {
        row[0]: row[1:]
        for row in con.execute(
            "SELECT conversation_id, sla_status, reopen_count, fcr, agent_reply_count "
            "FROM core.requests WHERE channel_id = 'tk'"
        ).fetchall()
    }
    # r1: a bot answered, then a hand-off; resolved, then reopened the next day.
    assert requests["r1"] == ("met", 1, False, 1)
    assert requests["r4"] == ("met", 0, True, 1)
    assert requests["r3"][0] == "breached"  # opened 17:30 Monday, never answered
    assert requests["later"][0] == "breached"  # judged as of 2026-01-01
    assert con.execute("SELECT count(*) FROM core.requests").fetchall() == [(7,)]


def test_late_events_a_holiday_and_a_make_up_day(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = tmp_path / "channels.toml"
    path.write_text(CALENDAR)
    catalog = ChannelCatalog.load(path)
    load(con, calendar_scenario())
    build(con, catalog, now=datetime(2026, 1, 1, tzinfo=UTC))
    kpis = daily(con)
    assert kpis[("box", "first_response_sla_rate", "2025-11-19")] == (0.5, 1.0, 2.0)
    assert kpis[("box", "first_response_median_business_s", "2025-11-19")][0] == 87300
    # The stream dropped the event 20 minutes late; the warehouse keeps every event.
    assert kpis[("soc", "volume", "2025-11-17")] == (4.0, 4.0, None)
    assert kpis[("mail", "read_rate", "2025-11-17")] == (0.5, 3.0, 6.0)
    assert kpis[("im-1", "active_users_1d", "2025-11-18")][0] == 1
    assert kpis[("im-1", "active_users_7d", "2025-11-18")][0] == 2
    assert kpis[("im-2", "active_users_1d", "2025-11-18")][0] == 1
    assert kpis[("im (internal)", "active_users_1d", "2025-11-18")][0] == 2
    assert kpis[("im (internal)", "active_users_28d", "2025-11-18")][0] == 3
    assert kpis[("mtg", "meeting_overrun_rate", "2025-11-17")] == (0.5, 1.0, 2.0)
    assert kpis[("tk2", "csat_mean", "2025-11-17")] == (11 / 3, 11.0, 3.0)

    calendar = dict(
        con.execute(
            "SELECT CAST(day AS VARCHAR), (workday, holiday, makeup_day, business_s, quarter) "
            "FROM core.calendar WHERE calendar = 'default'"
        ).fetchall()
    )
    assert calendar["2025-11-20"] == (False, True, False, 0.0, "2025Q4")  # the holiday
    assert calendar["2025-11-22"] == (True, False, True, 8 * 3600.0, "2025Q4")  # make-up Saturday
    assert calendar["2025-11-23"] == (False, False, False, 0.0, "2025Q4")  # Sunday
    assert calendar["2025-11-24"] == (True, False, False, 8 * 3600.0, "2025Q4")

    messages = con.execute(
        "SELECT message_id, recipients, readers, bounced, counts_for_read_rate "
        "FROM core.messages WHERE channel_id = 'mail' ORDER BY message_id"
    ).fetchall()
    assert messages == [
        ("m1", 4, 2, False, True),
        ("m2", 3, 0, True, False),
        ("m3", 2, 1, False, True),
    ]
    meetings = con.execute(
        "SELECT duration_s, planned_duration_s, overrun FROM core.meetings ORDER BY held_at"
    ).fetchall()
    assert meetings == [(1800.0, 1800.0, False), (3700.0, 3600.0, True), (1200.0, None, None)]


def test_quarters_targets_grades_and_health(con: duckdb.DuckDBPyConnection) -> None:
    def chat(when: str, conversation: str, answered_after_s: float | None) -> list[dict[str, Any]]:
        from tests.scenarios import canonical

        opened = datetime.fromisoformat(when)
        events = [
            canonical(when, "message_sent", "chat", "live_chat", conversation_id=conversation,
                      message_id=f"{conversation}-q", actor=f"c-{conversation}", role="customer")
        ]  # fmt: skip
        if answered_after_s is not None:
            at = (opened + timedelta(seconds=answered_after_s)).strftime("%Y-%m-%d %H:%M:%S")
            events.append(
                canonical(at, "message_sent", "chat", "live_chat", conversation_id=conversation,
                          message_id=f"{conversation}-a", in_reply_to=f"{conversation}-q",
                          actor="agent", role="agent")
            )  # fmt: skip
        return events

    # 2025Q3: 1 of 2 chats answered within 3 minutes; 2025Q4: 3 of 3.
    events = chat("2025-09-01 10:00", "a", 60) + chat("2025-09-02 10:00", "b", 600)
    events += chat("2025-10-01 10:00", "c", 30) + chat("2025-10-02 10:00", "d", 90)
    events += chat("2025-10-03 10:00", "e", 170)
    load(con, events)
    build(con, ChannelCatalog(), now=datetime(2026, 1, 1, tzinfo=UTC))
    rows = con.execute(
        "SELECT quarter, value, numerator, denominator, target, met, previous_value, change "
        "FROM metrics.quarterly_evaluation JOIN metrics.kpi_quarterly USING "
        "(quarter, channel_id, channel_kind, scope, kpi, value, target, met) "
        "WHERE channel_id = 'chat' AND kpi = 'first_response_sla_rate' ORDER BY quarter"
    ).fetchall()
    assert rows == [
        ("2025Q3", 0.5, 1.0, 2.0, 0.9, False, None, None),
        ("2025Q4", 1.0, 3.0, 3.0, 0.9, True, 0.5, 0.5),
    ]
    grades = dict(
        con.execute(
            "SELECT DISTINCT quarter, grade FROM metrics.quarterly_evaluation "
            "WHERE channel_id = 'chat'"
        ).fetchall()
    )
    # The SLA rate is the only KPI with a target and a value (chat messages have no
    # recipients, so no read rate): Q3 missed it (0 of 1 met: D), Q4 met it (A).
    assert grades == {"2025Q3": "D", "2025Q4": "A"}
    health = con.execute(
        "SELECT idle, archived, idle_threshold_s, last_activity_at FROM metrics.channel_health"
    ).fetchall()
    assert health == [
        (True, False, 7200.0, datetime(2025, 10, 3, 10, 2, 50, tzinfo=UTC)),  # 2 working hours
    ]


def test_hotline_calls_and_reviewed_posts(con: duckdb.DuckDBPyConnection) -> None:
    from tests.scenarios import canonical

    hot = {"kind": "hotline"}
    kb = {"kind": "knowledge_base", "scope": "internal", "role": "employee"}
    c = canonical
    load(
        con,
        [
            c("2025-11-17 10:00:00", "call_received", "hot", **hot, conversation_id="k1",
              actor="x1", role="customer"),
            c("2025-11-17 10:00:40", "call_answered", "hot", **hot, conversation_id="k1",
              actor="a1"),
            c("2025-11-17 10:05:00", "call_received", "hot", **hot, conversation_id="k2",
              actor="x2", role="customer"),
            c("2025-11-17 10:07:00", "call_answered", "hot", **hot, conversation_id="k2",
              actor="a1"),
            # Submitted Monday 17:00; reviewed within one working day (by Tuesday 17:00) or not.
            c("2025-11-17 17:00", "post_submitted", "kb", **kb, conversation_id="p1", actor="w1"),
            c("2025-11-18 16:00", "post_reviewed", "kb", **kb, conversation_id="p1", actor="ed",
              decision="approved"),
            c("2025-11-17 17:00", "post_submitted", "kb", **kb, conversation_id="p2", actor="w2"),
            c("2025-11-19 09:30", "post_reviewed", "kb", **kb, conversation_id="p2", actor="ed",
              decision="rejected"),
        ],
    )  # fmt: skip
    build(con, ChannelCatalog(), now=datetime(2026, 1, 1, tzinfo=UTC))
    kpis = daily(con)
    # k1 answered in 40 s (met, target 60 s), k2 in 120 s (breached).
    assert kpis[("hot", "hotline_answer_sla_rate", "2025-11-17")] == (0.5, 1.0, 2.0)
    assert kpis[("hot", "first_response_median_s", "2025-11-17")] == (80.0, None, 2.0)
    assert kpis[("kb", "review_sla_rate", "2025-11-17")] == (0.5, 1.0, 2.0)
    reviews = con.execute(
        "SELECT post_id, review_s, review_business_s, sla_status FROM core.reviews ORDER BY 1"
    ).fetchall()
    # p1: Monday 17:00-18:00 and Tuesday 09:00-12:00, 13:00-16:00 = 7 working hours.
    assert reviews == [
        ("p1", 23 * 3600.0, 7 * 3600.0, "met"),
        ("p2", 40.5 * 3600.0, 9.5 * 3600.0, "breached"),
    ]


@pytest.mark.parametrize(
    ("catalog_toml", "timezone", "end"),
    [
        (None, "UTC", datetime(2026, 10, 5, 12, tzinfo=UTC)),
        # days reported in Berlin, over the end of summer time (2026-10-25 has 25 hours)
        (BERLIN, "Europe/Berlin", datetime(2026, 11, 1, 12, tzinfo=UTC)),
    ],
    ids=["defaults", "berlin-calendar-and-reporting-zone-over-a-clock-change"],
)
def test_every_day_window_equals_the_polars_reference(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    catalog_toml: str | None,
    timezone: str,
    end: datetime,
) -> None:
    events = list(simulate(SimulationConfig(events=20_000, days=20, seed=7, end=end)))
    catalog = ChannelCatalog() if catalog_toml is None else catalog_from(tmp_path, catalog_toml)
    load(con, events)
    build(con, catalog, now=max(e["occurred_at"] for e in events), timezone=timezone)
    clock = WindowClock(timezone)
    reference = {
        (subject, kpi, _local_date(clock, start)): value
        for (subject, kpi, granularity, start), value in reference_kpis(
            events, timezone=timezone, calendar=catalog.calendars["default"]
        ).items()
        if granularity == "day"
    }
    warehouse = daily(con)
    assert len(reference) > 5_000
    different = {
        key: (warehouse.get(key), value)
        for key, value in reference.items()
        if not _same(warehouse.get(key), value)
    }
    assert not different, f"{len(different)} of {len(reference)}: {list(different.items())[:8]}"


def _local_date(clock: WindowClock, start: str) -> str:
    """The reporting day (ISO date) of a window that starts at ``start`` (ISO, UTC)."""
    return date.fromordinal(clock.day(datetime.fromisoformat(start).timestamp())).isoformat()


def _same(a: Value | None, b: Value) -> bool:
    if a is None:
        return b[0] in (None, 0.0)
    return all(
        (x is None and y is None) or (x is not None and y is not None and abs(x - y) < 1e-6)
        for x, y in zip(a, b, strict=True)
    )


def test_the_same_events_twice_change_nothing(con: duckdb.DuckDBPyConnection) -> None:
    events = ticket_scenario()
    assert load(con, events) == len(events)
    build(con, ChannelCatalog(), now=datetime(2026, 1, 1, tzinfo=UTC))
    before = daily(con)
    assert load(con, events) == 0
    build(con, ChannelCatalog(), now=datetime(2026, 1, 1, tzinfo=UTC))
    assert daily(con) == before
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM raw.events").fetchall() == [
        (len(events), len(events))
    ]


def test_a_catalog_channel_that_never_had_an_event_is_idle_with_no_last_activity(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    from tests.scenarios import canonical

    path = tmp_path / "channels.toml"
    path.write_text(
        '[channels.wiki]\nkind = "knowledge_base"\nname = "Handbook"\n\n'
        '[channels.hot]\nkind = "hotline"\nscope = "external"\n\n'
        '[channels.unplaced]\nname = "no kind: not known before its first event"\n'
    )
    load(con, [canonical("2025-12-31 23:00:00", "call_received", "hot", "hotline",
                         conversation_id="k", actor="x", role="customer")])  # fmt: skip
    build(con, ChannelCatalog.load(path), now=datetime(2026, 1, 1, tzinfo=UTC))
    health = con.execute(
        "SELECT channel_id, name, channel_kind, scope, last_activity_at, "
        "idle_for_business_s > 0, idle, archived FROM metrics.channel_health ORDER BY channel_id"
    ).fetchall()  # measured to the build's wall clock: the call is long past its 2 hours
    assert health == [
        ("hot", None, "hotline", "external", datetime(2025, 12, 31, 23, tzinfo=UTC), True, True,
         False),
        ("wiki", "Handbook", "knowledge_base", "internal", None, None, True, False),  # usual scope
    ]  # fmt: skip
    assert con.execute("SELECT count(*) FROM core.channels").fetchone() == (1,)
