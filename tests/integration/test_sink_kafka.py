"""The sink's side of Kafka on a real broker: restarts, Kafka away, a topic that is not there.

Each test has its own broker, which it stops and starts (from the test's thread: the broker
dies with the thread that started it). The sink runs in a thread, as ``commpulse sink`` runs
it, and is told to stop through its ``stop`` event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from infra import EmbeddedBroker, TopicSpec, ensure_topics, free_port
from tests.integration.support import consume_all, send_values, simulated_values, wait_for
from warehouse.schema import open_warehouse
from warehouse.sink import SinkConfig, SinkError, SinkProgress, SinkResult, run_sink

EVENTS, DLQ = "events", "dlq"
#: not events: each is dead-lettered, and counted
INVALID = [b"not json", b'{"event_type": "ticket_opened"}']


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "broker", port=free_port()).start()
    ensure_topics(
        broker.bootstrap_servers,
        [
            TopicSpec(EVENTS, 4, 1, {"retention.ms": "-1"}),
            TopicSpec(DLQ, 1, 1, {"retention.ms": "-1"}),
        ],
    )
    try:
        yield broker
    finally:
        broker.stop()


def _send(bootstrap: str, values: list[bytes]) -> None:
    send_values(bootstrap, EVENTS, values, keys=lambda index: b"k%d" % (index % 7))


@contextmanager
def _running_sink(
    path: Path, config: SinkConfig, stop: threading.Event
) -> Iterator[tuple[SinkProgress, list[SinkResult | BaseException]]]:
    """run_sink in a thread; yields its latest progress and, once it returned, its result."""
    latest = SinkProgress()
    outcome: list[SinkResult | BaseException] = []

    def seen(progress: SinkProgress) -> None:
        latest.__dict__.update(progress.__dict__)

    def sink() -> None:
        con = open_warehouse(path)
        try:
            outcome.append(run_sink(con, config, stop=stop, on_batch=seen, on_idle=seen))
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)
        finally:
            con.close()

    thread = threading.Thread(target=sink, name="test-sink")
    thread.start()
    try:
        yield latest, outcome
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the sink did not stop"


def _counts(path: Path) -> dict[str, Any]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        [(rows, ids)] = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM raw.events"
        ).fetchall()
        [(offsets,)] = con.execute("SELECT sum(next_offset) FROM ops.offsets").fetchall()
        [loads] = con.execute(
            "SELECT sum(received), sum(stored), sum(duplicates), sum(invalid) FROM ops.loads"
        ).fetchall()
    finally:
        con.close()
    return {"rows": rows, "ids": ids, "offsets": offsets, "loads": loads}


def test_a_running_sink_rides_out_a_broker_restart_and_loads_everything_once(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap_servers
    before, after = simulated_values(3000, seed=11), simulated_values(2000, seed=12)
    _send(bootstrap, [*before, *INVALID])
    config = SinkConfig(bootstrap, EVENTS, DLQ, batch_events=1000, batch_within_s=0.5)
    path, stop = tmp_path / "warehouse.duckdb", threading.Event()
    with _running_sink(path, config, stop) as (progress, outcome):
        assert wait_for(lambda: progress.stored == len(before), timeout=60), progress
        own_broker.stop()
        time.sleep(2)  # the sink finds nobody there
        own_broker.start()
        _send(bootstrap, after)
        assert wait_for(lambda: progress.stored == len(before) + len(after), timeout=120), (
            progress,
            outcome,
        )
    [result] = outcome
    assert isinstance(result, SinkResult), result
    total = len(before) + len(after)
    assert (result.received, result.stored, result.duplicates, result.invalid) == (
        total + len(INVALID),
        total,
        0,
        len(INVALID),
    )
    assert _counts(path) == {
        "rows": total,
        "ids": total,
        "offsets": total + len(INVALID),
        "loads": (total + len(INVALID), total, 0, len(INVALID)),
    }
    assert sorted(letter.value for letter in consume_all(bootstrap, DLQ)) == sorted(INVALID)


def test_a_sink_started_while_the_broker_is_down_starts_loading_once_it_is_up(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap_servers
    events = simulated_values(500, seed=13)
    _send(bootstrap, events)
    own_broker.stop()
    config = SinkConfig(bootstrap, EVENTS, DLQ, batch_within_s=0.5)
    path, stop = tmp_path / "warehouse.duckdb", threading.Event()
    with _running_sink(path, config, stop) as (progress, outcome):
        time.sleep(3)
        assert not outcome, outcome  # still trying
        own_broker.start()
        assert wait_for(lambda: progress.stored == len(events), timeout=60), (progress, outcome)
    assert _counts(path)["rows"] == len(events)


def test_a_sink_told_to_stop_while_kafka_is_away_stops_within_seconds(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap_servers
    _send(bootstrap, simulated_values(200, seed=14))
    config = SinkConfig(bootstrap, EVENTS, DLQ, batch_within_s=0.5)
    path, stop = tmp_path / "warehouse.duckdb", threading.Event()
    with _running_sink(path, config, stop) as (progress, outcome):
        assert wait_for(lambda: progress.stored == 200, timeout=60), progress
        own_broker.stop()
        time.sleep(1.5)
        stopped = time.monotonic()
        stop.set()
        assert wait_for(lambda: bool(outcome), timeout=10), "the sink did not stop"
    assert time.monotonic() - stopped < 5
    assert isinstance(outcome[0], SinkResult) and outcome[0].stored == 200


def test_a_topic_that_does_not_exist_is_one_clear_error(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    config = SinkConfig(own_broker.bootstrap_servers, "no.such.topic", DLQ)
    con = open_warehouse(tmp_path / "warehouse.duckdb")
    try:
        with pytest.raises(SinkError, match="topic no.such.topic does not exist"):
            run_sink(con, config, until_caught_up=True)
    finally:
        con.close()
