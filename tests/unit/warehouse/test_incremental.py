"""Incremental builds equal a full build: the same events in random increments, in shuffled
order (late events, openings after their replies, reads before their sends, repeats), give
the same core and metrics tables as one full build of them all."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from ingest.simulator import SimulationConfig, simulate
from metrics.channels import ChannelCatalog
from tests.scenarios import BERLIN, CALENDAR, calendar_scenario, ticket_scenario
from tests.unit.streams.harness import catalog_from
from warehouse.build import build
from warehouse.schema import open_warehouse
from warehouse.sink import commit_batch, decode_record

#: Every table a build writes, with the columns to compare (channel_health's idle time is
#: measured to the wall clock, so it differs by the time between two builds).
TABLES = {
    "core.channels": "*",
    "core.calendar": "*",
    "core.working_periods": "*",
    "core.channel_days": "*",
    "core.requests": "*",
    "core.messages": "*",
    "core.meetings": "*",
    "core.surveys": "*",
    "core.activity": "*",
    "metrics.kpi_daily": "*",
    "metrics.kpi_quarterly": "*",
    "metrics.quarterly_evaluation": "*",
    "metrics.channel_health": "channel_id, channel_kind, scope, last_activity_at, "
    "idle_threshold_s, archived, name",
}
NOW = datetime(2026, 11, 2, tzinfo=UTC)


def encoded(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events as the sink decodes them, each with its own Kafka position."""
    rows = []
    for offset, event in enumerate(events):
        decoded = decode_record(
            orjson.dumps(event, default=str), "events", offset % 3, 1_000 + offset
        )
        assert isinstance(decoded, dict), decoded
        rows.append(decoded)
    return rows


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(
            con.execute(f"SELECT {columns} FROM {table}").fetchall(),
            key=lambda row: tuple((value is None, str(value)) for value in row),
        )
        for table, columns in TABLES.items()
    }


def history(seed: int, end: datetime) -> list[dict[str, Any]]:
    """Simulated activity around the scenarios: bots, hand-offs, reopens, holidays, meetings."""
    events = list(simulate(SimulationConfig(events=4_000, days=12, seed=seed, end=end)))
    return events + ticket_scenario() + calendar_scenario()


@pytest.fixture
def warehouses(tmp_path: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, ...]]:
    pair = (
        open_warehouse(tmp_path / "incremental.duckdb"),
        open_warehouse(tmp_path / "full.duckdb"),
    )
    yield pair
    for con in pair:
        con.close()


@pytest.mark.parametrize(
    ("seed", "catalog_toml", "timezone"),
    [
        (1, CALENDAR, "UTC"),
        (2, BERLIN, "Europe/Berlin"),
        (3, None, "Asia/Shanghai"),
    ],
    ids=["holidays-utc", "berlin-clock-change", "defaults-shanghai-days"],
)
def test_random_increments_in_shuffled_order_equal_one_full_build(
    warehouses: tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection],
    tmp_path: Path,
    seed: int,
    catalog_toml: str | None,
    timezone: str,
) -> None:
    incremental, full = warehouses
    catalog = ChannelCatalog() if catalog_toml is None else catalog_from(tmp_path, catalog_toml)
    rows = encoded(history(seed, datetime(2026, 10, 30, tzinfo=UTC)))
    rng = random.Random(seed)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    shuffled += rng.sample(rows, 50)  # a producer's retries: the same events again
    modes = []
    position = 0
    while position < len(shuffled):
        size = rng.choice([1, 5, 40, 150, 600])
        batch = shuffled[position : position + size]
        position += size
        commit_batch(incremental, "events", batch, 0, {0: position})
        result = build(incremental, catalog, timezone, now=NOW)
        modes.append(result.mode)
    assert modes[0] == "full" and set(modes[1:]) == {"incremental"}
    assert len(modes) > 8

    commit_batch(full, "events", rows, 0, {0: len(rows)})
    assert build(full, catalog, timezone, now=NOW).mode == "full"
    expected = snapshot(full)
    got = snapshot(incremental)
    assert {table: len(rows) for table, rows in got.items()} == {
        table: len(rows) for table, rows in expected.items()
    }
    for table in TABLES:
        assert got[table] == expected[table], table
    assert len(expected["core.requests"]) > 200
    assert len(expected["metrics.kpi_daily"]) > 2_000


def test_time_alone_breaches_pending_requests(
    warehouses: tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection],
) -> None:
    """With no new events, a later build still breaches what its deadline left unanswered,
    and its day's SLA rate follows, as a full build at that time finds."""
    incremental, full = warehouses
    rows = encoded(ticket_scenario())
    for con in (incremental, full):
        commit_batch(con, "events", rows, 0, {0: len(rows)})
    monday_evening = datetime(2025, 11, 17, 17, 45, tzinfo=UTC)
    build(incremental, ChannelCatalog(), now=monday_evening)
    pending = incremental.execute(
        "SELECT count(*) FROM core.requests WHERE sla_status = 'pending'"
    ).fetchone()
    assert pending is not None and pending[0] > 0
    later = monday_evening + timedelta(days=30)
    assert build(incremental, ChannelCatalog(), now=later).mode == "incremental"
    build(full, ChannelCatalog(), now=later, full=True)
    assert snapshot(incremental) == snapshot(full)


def test_a_channel_whose_kind_changes_is_built_in_full(
    warehouses: tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection],
) -> None:
    """A late event, earlier than a channel's first, that says another kind: the channel's
    kind (and its policy, and its kind's roll-ups) change, so the build is done in full."""
    from tests.scenarios import canonical

    incremental, full = warehouses
    later = [
        canonical("2025-11-18 10:00", "call_received", "line", "hotline", conversation_id="k1",
                  actor="x1", role="customer"),
        canonical("2025-11-18 10:00:30", "call_answered", "line", "hotline", conversation_id="k1",
                  actor="a1"),
    ]  # fmt: skip
    earlier = [
        canonical("2025-11-17 09:00", "ticket_opened", "line", "ticket", conversation_id="t1",
                  actor="x2", role="customer"),
    ]  # fmt: skip
    rows = encoded(later + earlier)
    commit_batch(incremental, "events", rows[:2], 0, {0: 2})
    assert build(incremental, ChannelCatalog(), now=NOW).mode == "full"
    assert incremental.execute("SELECT channel_kind FROM core.channels").fetchall() == [
        ("hotline",)
    ]
    commit_batch(incremental, "events", rows[2:], 0, {0: 3})
    assert build(incremental, ChannelCatalog(), now=NOW).mode == "full"
    commit_batch(full, "events", rows, 0, {0: 3})
    build(full, ChannelCatalog(), now=NOW)
    assert snapshot(incremental) == snapshot(full)
    assert incremental.execute("SELECT channel_kind FROM core.channels").fetchall() == [("ticket",)]
