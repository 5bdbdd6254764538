"""The quality gate on the real broker: a batch from the future is quarantined, not loaded,
and never read again; ``commpulse quality`` then finds the warehouse clean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
from kafka import KafkaProducer

from commpulse.settings import Settings
from tests.helpers import event_dict
from tests.integration.stream_support import send
from tests.integration.support import run_cli
from tests.scenarios import ticket_scenario


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_batch_from_the_future_is_quarantined_and_the_warehouse_stays_clean(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    env = cli_env | {"COMMPULSE_WAREHOUSE__QUALITY_GATE": "quarantine"}
    events = ticket_scenario()
    send(settings, events)
    first = run_cli("sink", "--until-caught-up", env=env)
    assert first.returncode == 0, first.stderr
    assert f"{len(events)} events read: {len(events)} stored, 0 duplicates" in first.stdout

    # Ingest would dead-letter an event three days ahead; a producer past it is not stopped.
    future = event_dict(1, when=datetime.now(UTC) + timedelta(days=3))
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    producer.send(settings.topics.events, orjson.dumps(future), key=b"im-eng-01")
    producer.close()
    second = run_cli("sink", "--until-caught-up", env=env)
    assert second.returncode == 0, second.stderr
    assert "1 events read: 0 stored, 0 duplicates, 0 dead-lettered, 1 quarantined" in second.stdout
    assert "batch quarantined" in second.stderr
    path = settings.warehouse_path
    [(event_id, reason)] = query(path, "SELECT event_id, reason FROM ops.quarantine")
    assert event_id == future["event_id"] and "occurred_at_not_in_future" in reason
    assert query(path, "SELECT count(*) FROM raw.events") == [(len(events),)]

    # The offsets moved past it: the next run reads nothing again.
    third = run_cli("sink", "--until-caught-up", env=env)
    assert third.returncode == 0 and "0 events read" in third.stdout, third.stdout

    checked = run_cli("quality", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 critical failed" in checked.stdout
    assert query(path, "SELECT count(*), bool_and(success) FROM ops.quality_runs") == [(8, True)]
