"""The producer against a broker that goes away: retries, and honest counts of what it missed."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from infra import EmbeddedBroker, TopicSpec, ensure_topics, free_port, record_counts
from ingest import KafkaUnreachableError, Producer, Pseudonymiser, Record, decode
from tests.integration.invalid_inputs import valid_lines
from tests.integration.support import (
    COMMPULSE,
    PSEUDONYM_KEY,
    commpulse_env,
    consume_all,
    run_cli,
    wait_for,
)

EXIT_UNDELIVERED = 4
EVENTS = "commpulse.events"

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


def _stop_once_it_holds(broker: EmbeddedBroker, records: int) -> threading.Thread:
    """Stops ``broker`` (gracefully) once its events topic holds more than ``records``."""

    def stop() -> None:
        assert wait_for(
            lambda: record_counts(broker.bootstrap_servers, ["events"])["events"] > records, 120
        )
        broker.stop()

    stopping = threading.Thread(target=stop, daemon=True)
    stopping.start()
    return stopping


def test_a_producer_whose_kafka_client_stalled_gives_up_and_delivers_again(
    tmp_path: Path,
) -> None:
    """The broker goes away under load, with batches in flight. kafka-python 3.0.12 then
    stalls for good (ingest/producer.py, _STALL_GRACE_S); the producer must still finish
    the flush, count each record once, and deliver again once the broker is back, as the
    HTTP server's long-lived producer has to."""
    broker = EmbeddedBroker(tmp_path, port=free_port()).start()
    try:
        ensure_topics(broker.bootstrap_servers, TOPICS)
        producer = producer_for(
            broker.bootstrap_servers,
            delivery_timeout_ms=3000,
            max_block_ms=3000,
            client_options={"request_timeout_ms": 1500},
        )
        with producer:
            stopping = _stop_once_it_holds(broker, 2000)
            first = producer.send_many(Record(line) for line in valid_lines(60_000))
            counts = producer.flush()
            stopping.join()
            assert (first.received, counts.received) == (60_000, 60_000)
            assert counts.sent + counts.failed == 60_000 and counts.pending == 0
            assert counts.sent >= 2000 and counts.failed > 0
            broker.start()  # the same port and data
            again = producer.send_many(
                (Record(line) for line in valid_lines(100, start=100_000)), wait=True
            )
            assert (again.accepted, again.failed, again.undelivered) == (100, 0, [])
            final = producer.flush()
        assert (final.sent, final.failed, final.pending) == (counts.sent + 100, counts.failed, 0)
        stored = record_counts(broker.bootstrap_servers, ["events"])["events"]
        assert counts.sent + 100 <= stored <= 60_100  # acknowledged means written
    finally:
        broker.stop()


def test_the_ingest_command_lists_what_kafka_never_took_and_exits_4(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "broker", port=free_port()).start()
    try:
        bootstrap = broker.bootstrap_servers
        lines = valid_lines(60_000)
        path = tmp_path / "events.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        env = commpulse_env(
            {
                "COMMPULSE_DATA_DIR": str(tmp_path / "data"),
                "COMMPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                "COMMPULSE_PRIVACY__PSEUDONYM_KEY": PSEUDONYM_KEY,
                "COMMPULSE_INGEST__DELIVERY_TIMEOUT_S": "3",
            }
        )
        assert run_cli("topics", env=env).returncode == 0
        ingest = subprocess.Popen(
            [COMMPULSE, "ingest", str(path)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The broker goes away once part of the file has arrived.
            assert wait_for(
                lambda: (
                    ingest.poll() is not None or record_counts(bootstrap, [EVENTS])[EVENTS] > 2000
                ),
                120,
            )
            assert ingest.poll() is None, ingest.communicate()
            broker.stop()
            out, err = ingest.communicate(timeout=240)
        finally:
            if ingest.poll() is None:
                ingest.kill()
        assert ingest.returncode == EXIT_UNDELIVERED, err
        assert "Traceback" not in err
        summary = re.search(
            r"ingested ([\d,]+) inputs from 1 file · ([\d,]+) sent · 0 dead-lettered · "
            r"([\d,]+) NOT delivered",
            out,
        )
        assert summary, out
        received, sent, failed = (int(n.replace(",", "")) for n in summary.groups())
        assert received == sent + failed == len(lines) and failed > 0
        listed = re.findall(rf"NOT delivered events\.jsonl:(\d+) to {EVENTS}: \w+", err)
        assert len(listed) == min(failed, 10), err
        broker.start()  # the same data: what it took is there, what it did not is not
        stored = {decode(record.value).event_id for record in consume_all(bootstrap, EVENTS)}
        assert len(stored) >= sent  # acknowledged means written
        assert len(stored) <= sent + failed
        if len(stored) == sent:  # (else the broker wrote a record whose answer it never sent)
            listed_ids = {uuid.UUID(orjson.loads(lines[int(n) - 1])["event_id"]) for n in listed}
            assert not listed_ids & stored
    finally:
        broker.stop()
