"""The Python producer API against a broker that goes away: retries, and honest counts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from infra import EmbeddedBroker, TopicSpec, ensure_topics, free_port, record_counts
from ingest import KafkaUnreachableError, Producer, Pseudonymiser, Record
from tests.integration.invalid_inputs import valid_lines
from tests.integration.support import PSEUDONYM_KEY

TOPICS = [
    TopicSpec("events", 4, 1, {"retention.ms": "-1"}),
    TopicSpec("dlq", 1, 1, {"retention.ms": "-1"}),
]


def producer_for(bootstrap: str, **options: Any) -> Producer:
    return Producer(
        bootstrap_servers=bootstrap,
        events_topic="events",
        dlq_topic="dlq",
        pseudonymiser=Pseudonymiser(PSEUDONYM_KEY.encode()),
        **options,
    )


def test_records_survive_a_broker_restart_by_retrying(tmp_path: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker(tmp_path, port=port).start()
    ensure_topics(broker.bootstrap_servers, TOPICS)
    with producer_for(broker.bootstrap_servers, linger_ms=5) as producer:
        producer.send_many([Record(line) for line in valid_lines(200)])
        producer.flush()
        broker.stop()  # gracefully, with data saved
        producer.send_many([Record(line) for line in valid_lines(300, start=1000)])
        time.sleep(2)  # the producer retries against a broker that is gone...
        assert producer.counts.pending == 300
        broker.start()  # ...until it is back on the same port
        counts = producer.flush()
    try:
        assert (counts.received, counts.sent, counts.failed, counts.pending) == (500, 500, 0, 0)
        assert record_counts(broker.bootstrap_servers, ["events"]) == {"events": 500}
    finally:
        broker.stop()


def test_what_kafka_never_acknowledged_is_counted_and_reported(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path).start()
    ensure_topics(broker.bootstrap_servers, TOPICS)
    producer = producer_for(
        broker.bootstrap_servers,
        linger_ms=5,
        delivery_timeout_ms=3000,
        max_block_ms=3000,
        client_options={"request_timeout_ms": 2000},
    )
    with producer:
        producer.send_many([Record(line) for line in valid_lines(100)])
        producer.flush()
        broker.stop()
        started = time.monotonic()
        result = producer.send_many(
            [Record(line) for line in valid_lines(50, start=1000)], wait=True
        )
        counts = producer.flush()
    assert time.monotonic() - started < 60
    assert result.received == 50 and result.failed == 50
    assert (counts.received, counts.sent, counts.failed, counts.pending) == (150, 100, 50, 0)
    assert counts.received == counts.sent + counts.dead_lettered + counts.failed
    assert len(producer.failures) == 50
    assert {failure.topic for failure in producer.failures} == {"events"}
    assert all(failure.event_id and failure.error for failure in producer.failures)


def test_nothing_listening_is_a_clear_error() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    producer = producer_for(bootstrap, client_options={"bootstrap_timeout_ms": 1000})
    with pytest.raises(KafkaUnreachableError, match=f"cannot reach Kafka at {bootstrap}"):
        producer.start()
