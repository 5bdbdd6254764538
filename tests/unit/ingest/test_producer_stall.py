"""A kafka-python producer that stops answering is given up, and a new one takes over.

kafka-python 3.0.12's idempotent sender can stop sending and expiring records for good
(ingest/producer.py, ``_STALL_GRACE_S``). Here a stand-in client holds its records until the
producer closes it by force; tests/integration/test_producer.py makes the real one stall.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from kafka.errors import KafkaTimeoutError

import ingest.producer
from ingest import Producer, Pseudonymiser, Record
from tests.helpers import event_json

DELIVERY_TIMEOUT_MS = 100


class _Future:
    """A kafka-python record future, answered by hand."""

    def __init__(self) -> None:
        self.is_done = False
        self._value: object = None
        self._callbacks: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._errbacks: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def add_callback(self, f: Callable[..., None], *args: Any) -> _Future:
        self._callbacks.append((f, args))
        return self

    def add_errback(self, f: Callable[..., None], *args: Any) -> _Future:
        self._errbacks.append((f, args))
        return self

    def succeed(self) -> None:
        self.is_done, self._value = True, "metadata"
        for f, args in self._callbacks:
            f(*args, self._value)

    def fail(self, error: Exception) -> None:
        self.is_done, self._value = True, error
        for f, args in self._errbacks:
            f(*args, error)

    def succeeded(self) -> bool:
        return self.is_done and not isinstance(self._value, Exception)

    def get(self, timeout: float | None = None) -> object:
        if not self.is_done:
            time.sleep(timeout or 0)
            raise KafkaTimeoutError("Timeout waiting for the record")
        if isinstance(self._value, Exception):
            raise self._value
        return self._value


class _Sender:
    """Closed by force, fails all but ``keeps`` of the records (a thread that never ends)."""

    def __init__(self, client: _StalledKafka) -> None:
        self.client = client
        self.forced = False

    def force_close(self) -> None:
        self.forced = True

    def join(self, timeout: float | None = None) -> None:
        held = [future for future in self.client.futures if not future.is_done]
        for future in held[: max(len(held) - self.client.keeps, 0)]:
            future.fail(KafkaTimeoutError("Producer is closed forcefully."))


class _StalledKafka:
    """Takes records and answers for none of them, as kafka-python does once it stalled."""

    made: ClassVar[list[_StalledKafka]] = []
    keeps = 0

    def __init__(self, **config: Any) -> None:
        self.config = {**config, "api_version": (3, 0)}
        self.futures: list[_Future] = []
        self._sender = _Sender(self)
        self.closed = False
        _StalledKafka.made.append(self)

    def send(self, topic: str, **record: Any) -> _Future:
        self.futures.append(_Future())
        return self.futures[-1]

    def flush(self, timeout: float | None = None) -> None:
        if any(not future.is_done for future in self.futures):
            time.sleep(timeout or 0)
            raise KafkaTimeoutError("Failed to flush buffered records within the timeout")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> type[_StalledKafka]:
    monkeypatch.setattr(_StalledKafka, "made", [])
    monkeypatch.setattr(ingest.producer, "KafkaProducer", _StalledKafka)
    monkeypatch.setattr(ingest.producer, "_STALL_GRACE_S", 0.2)
    monkeypatch.setattr(ingest.producer, "_FLUSH_SLICE_S", 0.02)
    return _StalledKafka


def _producer() -> Producer:
    return Producer(
        bootstrap_servers="127.0.0.1:9",
        events_topic="events",
        dlq_topic="dlq",
        pseudonymiser=Pseudonymiser(b"k" * 32),
        delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
    ).start()


def test_a_flush_gives_up_what_a_stalled_client_holds_and_a_new_client_takes_the_next(
    stalled: type[_StalledKafka],
) -> None:
    producer = _producer()
    producer.send_many(Record(event_json(n), source=f"f:{n + 1}") for n in range(5))
    stalled.made[0].futures[0].succeed()  # one answer, then nothing
    started = time.monotonic()
    counts = producer.flush()
    waited = time.monotonic() - started
    assert (counts.received, counts.sent, counts.failed, counts.pending) == (5, 1, 4, 0)
    assert 0.3 <= waited < 5  # the delivery timeout and the grace, not forever
    assert stalled.made[0]._sender.forced and stalled.made[0].closed
    assert [failure.source for failure in producer.failures] == ["f:2", "f:3", "f:4", "f:5"]
    assert producer.failures[0].error == (
        "KafkaTimeoutError: no answer from Kafka within the delivery timeout (0.1 s); "
        "the Kafka client had stopped"
    )

    producer.send_many([Record(event_json(9))])  # a new client, which answers
    assert len(stalled.made) == 2 and stalled.made[1].config["api_version"] == (3, 0)
    stalled.made[1].futures[0].succeed()
    assert producer.flush().sent == 2


def test_records_the_stalled_client_never_failed_are_counted_and_its_late_answers_are_not(
    stalled: type[_StalledKafka], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_StalledKafka, "keeps", 2)  # its I/O thread fails 1 of the 3
    monkeypatch.setattr(ingest.producer, "_GIVE_UP_WAIT_S", 0.01)
    producer = _producer()
    result = producer.send_many([Record(event_json(n)) for n in range(3)], wait=True)
    assert (result.accepted, result.failed, len(result.undelivered)) == (3, 3, 3)
    assert (producer.counts.failed, producer.counts.pending) == (3, 0)
    for future in stalled.made[0].futures[1:]:
        future.succeed()  # too late: already counted as not delivered
    assert (producer.counts.sent, producer.counts.failed, producer.counts.pending) == (0, 3, 0)


def test_a_client_that_lost_records_is_replaced_once_it_holds_none(
    stalled: type[_StalledKafka],
) -> None:
    """kafka-python can stall as the last records it held expire, with none left to wait
    for: the next records would then wait out the grace before they are given up."""
    producer = _producer()
    producer.send_many([Record(event_json(n)) for n in range(2)])
    first = stalled.made[0]
    first.futures[0].fail(KafkaTimeoutError("Expiring 1 record(s)"))
    producer.send_many([Record(event_json(2))])
    assert len(stalled.made) == 1  # it still held one: kept
    first.futures[1].succeed()
    first.futures[2].succeed()
    producer.send_many([Record(event_json(3))])
    assert len(stalled.made) == 2 and first._sender.forced and first.closed
    stalled.made[1].futures[0].succeed()
    counts = producer.flush()
    assert (counts.received, counts.sent, counts.failed, counts.pending) == (4, 3, 1, 0)
