"""The sink's quality gate: a failing batch is quarantined whole, its offsets still advance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest

from ingest.events import Event
from quality import BatchGate
from tests.helpers import event_dict
from tests.unit.quality.conftest import decoded
from warehouse.schema import scalar
from warehouse.sink import SinkConfig, commit_batch, store_batch

NOW = datetime.now(UTC)


def events(count: int, start: int = 100_000, **overrides: Any) -> list[dict[str, Any]]:
    """Valid message reads an hour ago, with fresh ids."""
    return [
        event_dict(start + n, when=NOW - timedelta(hours=1, seconds=-n), **overrides)
        for n in range(count)
    ]


def offsets(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute('SELECT "partition", next_offset FROM ops.offsets').fetchall()


@pytest.fixture(scope="module")
def gate() -> BatchGate:
    return BatchGate(future_tolerance_s=3600)


def test_a_clean_batch_loads_through_the_gate(
    con: duckdb.DuckDBPyConnection, gate: BatchGate
) -> None:
    before = scalar(con, "SELECT count(*) FROM raw.events")
    rows = decoded(events(20), first_offset=5000)
    outcome = store_batch(con, "events", rows, 0, {0: 5020}, check=gate)
    assert (outcome.stored, outcome.quarantined, outcome.reason) == (20, 0, None)
    assert scalar(con, "SELECT count(*) FROM raw.events") == before + 20
    assert scalar(con, "SELECT count(*) FROM ops.quarantine") == 0


def test_a_batch_with_an_event_from_the_future_is_quarantined_whole(
    con: duckdb.DuckDBPyConnection, gate: BatchGate
) -> None:
    before = scalar(con, "SELECT count(*) FROM raw.events")
    batch = events(9)
    batch.append(event_dict(200_000, when=NOW + timedelta(hours=2)))  # beyond the hour allowed
    rows = decoded(batch, first_offset=5000)
    outcome = store_batch(con, "events", rows, 0, {0: 5010, 1: 7}, check=gate)

    assert (outcome.stored, outcome.duplicates, outcome.quarantined) == (0, 0, 10)
    assert outcome.reason is not None and "occurred_at_not_in_future (1 rows" in outcome.reason
    assert scalar(con, "SELECT count(*) FROM raw.events") == before  # nothing loaded
    assert offsets(con) == [(0, 5010), (1, 7)]  # and yet the offsets moved on
    quarantined = con.execute(
        'SELECT batch_id, reason, event_id, payload, topic, "partition", "offset" '
        'FROM ops.quarantine ORDER BY "offset"'
    ).fetchall()
    assert [row[6] for row in quarantined] == list(range(5000, 5010))
    assert len({row[0] for row in quarantined}) == 1  # one batch
    assert {row[1] for row in quarantined} == {outcome.reason}
    assert [row[2] for row in quarantined] == [event["event_id"] for event in batch]
    # The payload is the event itself: it can be ingested again once the cause is fixed.
    again = Event.model_validate_json(quarantined[-1][3])
    assert again == Event.model_validate(batch[-1])
    assert json.loads(quarantined[0][3])["message_id"] == "m-1"
    assert con.execute(
        "SELECT received, stored, duplicates, invalid, quarantined FROM ops.loads "
        "ORDER BY loaded_at DESC LIMIT 1"
    ).fetchall() == [(10, 0, 0, 0, 10)]


def test_one_id_carrying_two_different_events_is_quarantined(
    con: duckdb.DuckDBPyConnection, gate: BatchGate
) -> None:
    batch = events(5)
    batch.append({**batch[0], "message_id": "m-2"})  # the same id, another event
    outcome = store_batch(con, "events", decoded(batch), 0, {0: 6}, check=gate)
    assert outcome.quarantined == 6 and outcome.stored == 0
    assert outcome.reason is not None and "event_id_unique" in outcome.reason
    assert scalar(con, "SELECT count(*) FROM ops.quarantine") == 6


def test_an_exact_repeat_is_a_retry_not_a_failure(
    con: duckdb.DuckDBPyConnection, gate: BatchGate
) -> None:
    batch = events(5)
    batch.append(batch[2])  # a producer retry: the same event again, at a later offset
    before = scalar(con, "SELECT count(*) FROM raw.events")
    outcome = store_batch(con, "events", decoded(batch), 0, {0: 6}, check=gate)
    assert (outcome.stored, outcome.duplicates, outcome.quarantined) == (5, 1, 0)
    assert scalar(con, "SELECT count(*) FROM raw.events") == before + 5


def test_without_the_gate_the_same_batch_loads(con: duckdb.DuckDBPyConnection) -> None:
    batch = [*events(3), event_dict(200_000, when=NOW + timedelta(days=3))]
    before = scalar(con, "SELECT count(*) FROM raw.events")
    assert commit_batch(con, "events", decoded(batch), 0, {0: 4}) == 4
    assert scalar(con, "SELECT count(*) FROM raw.events") == before + 4
    assert scalar(con, "SELECT count(*) FROM ops.quarantine") == 0


def test_a_warning_alone_does_not_quarantine(
    con: duckdb.DuckDBPyConnection, gate: BatchGate, caplog: pytest.LogCaptureFixture
) -> None:
    sent = {"event_type": "message_sent", "recipient_count": 3, "message_id": "dup"}
    when = NOW - timedelta(minutes=5)
    batch = [event_dict(n, when=when, **sent) for n in (300_000, 300_001)]  # one message twice
    outcome = store_batch(con, "events", decoded(batch), 0, {0: 2}, check=gate)
    assert (outcome.stored, outcome.quarantined) == (2, 0)
    assert "quality warning check=message_sent_once" in caplog.text


def test_the_gate_needs_a_check() -> None:
    with pytest.raises(ValueError, match="needs a batch_check"):
        SinkConfig("127.0.0.1:9092", "events", "dlq", quality_gate="quarantine")


def test_the_setting_puts_a_gate_on_the_sink() -> None:
    from commpulse.kafka import KafkaTarget
    from commpulse.settings import load_settings
    from commpulse.warehousing import _sink_config

    target = KafkaTarget("127.0.0.1:9092")
    assert _sink_config(load_settings(), target).batch_check is None
    config = _sink_config(
        load_settings(warehouse={"quality_gate": "quarantine"}, ingest={"future_tolerance_s": 60}),
        target,
    )
    assert config.quality_gate == "quarantine" and isinstance(config.batch_check, BatchGate)
    assert config.batch_check.suite.checks  # the events suite, with the tolerance set
