"""The sink's dead letters reach the DLQ before their batch is committed, whatever Kafka does.

Each test has its own broker, which it stops. The sink's whole run is in test_warehouse.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from infra import EmbeddedBroker, TopicSpec, ensure_topics, free_port
from ingest import RejectCode, Rejection
from ingest.deadletter import DeadLetter
from tests.integration.support import consume_all
from warehouse.sink import SinkConfig, dead_letter

DLQ = "dlq"


def _letters(prefix: bytes, n: int) -> list[DeadLetter]:
    rejection = Rejection(RejectCode.MALFORMED_JSON, "not JSON")
    return [
        DeadLetter.of(
            prefix + b"%d" % i, rejection, source=f"events[0]@{i}", received_at=datetime.now(UTC)
        )
        for i in range(n)
    ]


def _started(tmp_path: Path) -> tuple[EmbeddedBroker, SinkConfig]:
    broker = EmbeddedBroker(tmp_path, port=free_port()).start()
    ensure_topics(broker.bootstrap_servers, [TopicSpec(DLQ, 1, 1, {"retention.ms": "-1"})])
    return broker, SinkConfig(broker.bootstrap_servers, "events", DLQ)


def test_dead_letters_sent_while_the_broker_restarts_all_arrive(tmp_path: Path) -> None:
    broker, config = _started(tmp_path)
    try:
        stop = threading.Event()
        producer = dead_letter(None, config, _letters(b"before ", 20), stop)
        assert producer is not None
        broker.stop()
        with ThreadPoolExecutor(1) as sink:
            sending = sink.submit(dead_letter, producer, config, _letters(b"during ", 20), stop)
            time.sleep(4)
            assert not sending.done()  # it holds the batch while Kafka is away
            broker.start()  # in this thread: the broker dies with the thread that started it
            producer = sending.result(timeout=120)
        assert producer is not None
        producer.close(timeout=5)
        stored = Counter(record.value for record in consume_all(broker.bootstrap_servers, DLQ))
        assert {raw: stored[raw] for raw in (b"before %d" % i for i in range(20))} == {
            b"before %d" % i: 1 for i in range(20)
        }
        assert all(stored[b"during %d" % i] >= 1 for i in range(20))  # sent again: maybe twice
        assert set(stored) == {b"before %d" % i for i in range(20)} | {
            b"during %d" % i for i in range(20)
        }
    finally:
        broker.stop()


def test_a_sink_told_to_stop_while_kafka_is_away_commits_nothing(tmp_path: Path) -> None:
    broker, config = _started(tmp_path)
    try:
        stop = threading.Event()
        producer = dead_letter(None, config, _letters(b"before ", 1), stop)
        broker.stop()
        threading.Timer(2, stop.set).start()
        started = time.monotonic()
        assert dead_letter(producer, config, _letters(b"never ", 5), stop) is None
        assert time.monotonic() - started < 20  # not the whole delivery timeout
    finally:
        broker.stop()
