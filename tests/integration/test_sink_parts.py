"""A sink batch comes in parts and commits as one transaction, on a real broker.

The feed hands each batch over in parts of ``part_events`` records, and the sink inserts
each part as it comes (``warehouse.feed``, ``warehouse.sink._Pending``). What must not
change: one batch is one transaction (one row in ``ops.loads``, offsets with its rows);
events stored before are stored once and counted as duplicates, also when the clash comes
in a later part; a sink stopped inside a batch commits none of it; and the quality gate
judges the whole batch, not a part.

Each test has a topic of one partition, so the order of its records, and so which part
holds what, is known.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

import warehouse.sink
from infra import EmbeddedBroker, TopicSpec, ensure_topics, free_port
from tests.integration.support import send_values, simulated_values
from warehouse.schema import open_warehouse
from warehouse.sink import SinkConfig, SinkResult, run_sink

DLQ = "dlq"
#: not events: dead-lettered, and counted in their batch
INVALID = [b"not json", b'{"event_type": "ticket_opened"}']
#: small parts, so that every batch here comes in several
PART = 100


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path_factory.mktemp("broker"), port=free_port()).start()
    ensure_topics(broker.bootstrap_servers, [TopicSpec(DLQ, 1, 1, {"retention.ms": "-1"})])
    try:
        yield broker
    finally:
        broker.stop()


def _topic(broker: EmbeddedBroker, name: str, values: list[bytes]) -> SinkConfig:
    """A one-partition topic holding ``values`` in order; a sink config for it whose batch
    is everything there is (the batch ends when the sink has caught up)."""
    ensure_topics(broker.bootstrap_servers, [TopicSpec(name, 1, 1, {"retention.ms": "-1"})])
    _send(broker, name, values)
    return SinkConfig(
        broker.bootstrap_servers, name, DLQ, batch_events=50_000, batch_within_s=60.0,
        part_events=PART,
    )  # fmt: skip


def _send(broker: EmbeddedBroker, topic: str, values: list[bytes]) -> None:
    send_values(broker.bootstrap_servers, topic, values)


def _sink(path: Path, config: SinkConfig, stop: threading.Event | None = None) -> SinkResult:
    con = open_warehouse(path)
    try:
        return run_sink(con, config, until_caught_up=True, stop=stop)
    finally:
        con.close()


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


_LOADS = "SELECT received, stored, duplicates, invalid, quarantined FROM ops.loads ORDER BY 1"


def test_a_batch_in_parts_is_one_load_and_a_clash_in_a_later_part_stores_each_event_once(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    first, new = simulated_values(600, seed=21), simulated_values(700, seed=22)
    config = _topic(broker, "parts.clash", first)
    path = tmp_path / "warehouse.duckdb"
    assert _sink(path, config).stored == 600
    # then 700 new events, 2 invalid records, and 250 events stored already: parts 1-7 are
    # new, the clash comes in part 8 and the batch is stored whole instead
    _send(broker, config.topic, [*new, *INVALID, *first[:250]])
    result = _sink(path, config)
    assert (result.received, result.stored, result.duplicates, result.invalid) == (952, 700, 250, 2)
    assert _rows(path, _LOADS) == [(600, 600, 0, 0, 0), (952, 700, 250, 2, 0)]
    assert _rows(path, "SELECT count(*), count(DISTINCT event_id) FROM raw.events") == [
        (1300, 1300)
    ]
    assert _rows(path, "SELECT next_offset FROM ops.offsets") == [(1552,)]


def test_a_sink_stopped_inside_a_batch_commits_none_of_it(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _topic(broker, "parts.stop", simulated_values(1000, seed=23))
    path, stop = tmp_path / "warehouse.duckdb", threading.Event()
    insert, inserted = warehouse.sink._insert, []

    def stop_after_three_parts(
        con: duckdb.DuckDBPyConnection, batch: pl.DataFrame, now: datetime, *, ignore_stored: bool
    ) -> int:
        inserted.append(batch.height)
        if len(inserted) == 3:
            stop.set()
        return insert(con, batch, now, ignore_stored=ignore_stored)

    monkeypatch.setattr(warehouse.sink, "_insert", stop_after_three_parts)
    con = open_warehouse(path)
    try:
        stopped = run_sink(con, config, until_caught_up=True, stop=stop)
        assert inserted == [PART] * 3 and stopped.stored == 0
        # the connection is left with no transaction open, and nothing of the batch in it
        con.execute("BEGIN TRANSACTION")
        con.execute("ROLLBACK")
        assert con.execute("SELECT count(*) FROM raw.events").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM ops.offsets").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM ops.loads").fetchall() == [(0,)]
        monkeypatch.undo()
        # the next run reads the batch again, from the start
        assert run_sink(con, config, until_caught_up=True).stored == 1000
    finally:
        con.close()
    assert _rows(path, _LOADS) == [(1000, 1000, 0, 0, 0)]
    assert _rows(path, 'SELECT count(DISTINCT event_id), max("offset") FROM raw.events') == [
        (1000, 999)
    ]


def test_the_quality_gate_judges_the_whole_batch_not_a_part(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    judged: list[int] = []

    def refuse(batch: pl.DataFrame, now: datetime) -> str | None:
        judged.append(batch.height)
        return "refused by the test"

    events = simulated_values(700, seed=24)
    config = _topic(broker, "parts.gate", events)
    gated = SinkConfig(
        config.bootstrap_servers, config.topic, DLQ, batch_events=config.batch_events,
        batch_within_s=config.batch_within_s, part_events=PART, quality_gate="quarantine",
        batch_check=refuse,
    )  # fmt: skip
    path = tmp_path / "warehouse.duckdb"
    result = _sink(path, gated)
    assert judged == [700]
    assert (result.received, result.stored, result.quarantined) == (700, 0, 700)
    assert _rows(path, _LOADS) == [(700, 0, 0, 0, 700)]
    assert _rows(path, "SELECT count(*), any_value(reason) FROM ops.quarantine") == [
        (700, "refused by the test")
    ]
    assert _rows(path, "SELECT count(*) FROM raw.events") == [(0,)]
    assert _rows(path, "SELECT next_offset FROM ops.offsets") == [(700,)]
