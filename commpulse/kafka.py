"""Where Kafka is for this run: a configured cluster, or the embedded broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from commpulse.keys import pseudonym_key
from commpulse.settings import Settings
from infra import (
    FETCH_RESPONSE_MAX_BYTES,
    BrokerLease,
    TopicReport,
    ensure_topics,
    lease_broker,
)
from ingest import Limits, Producer, Pseudonymiser, Validator

__all__ = ["KafkaTarget", "connect", "make_producer", "read_all"]


@dataclass(frozen=True, slots=True)
class KafkaTarget:
    bootstrap_servers: str
    #: kafka-python keyword arguments for any client
    client_options: dict[str, Any] = field(default_factory=dict)
    embedded: BrokerLease | None = None
    topics: tuple[TopicReport, ...] = ()

    @property
    def consumer_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments for a consumer that fetches records.

        The embedded broker answers a fetch with all it has, whatever the fetch limits
        say (:data:`infra.FETCH_RESPONSE_MAX_BYTES`); also when a command reaches it as
        a configured cluster (the children of ``up`` and ``demo`` do). A Kafka cluster
        keeps to the limits, so the higher ceiling changes nothing there.
        """
        return {**self.client_options, "receive_message_max_bytes": FETCH_RESPONSE_MAX_BYTES}


@contextmanager
def connect(settings: Settings, *, ensure_topics_exist: bool = True) -> Iterator[KafkaTarget]:
    """Kafka for the duration of the ``with``; its topics created or verified.

    With no bootstrap servers configured, this starts the embedded broker for
    the data dir (or joins the one already running) and releases it at the end.
    """
    kafka = settings.kafka
    if kafka.bootstrap_servers:
        yield _with_topics(
            settings,
            KafkaTarget(kafka.bootstrap_servers, kafka.client_options()),
            ensure_topics_exist,
        )
        return
    broker = settings.broker
    with lease_broker(
        settings.data_dir / "broker",
        host=broker.host,
        port=broker.port or None,
        start_timeout=broker.start_timeout_s,
        stop_timeout=broker.stop_timeout_s,
    ) as lease:
        yield _with_topics(
            settings, KafkaTarget(lease.bootstrap_servers, {}, lease), ensure_topics_exist
        )


def _with_topics(settings: Settings, target: KafkaTarget, ensure: bool) -> KafkaTarget:
    if not ensure:
        return target
    reports = ensure_topics(
        target.bootstrap_servers, settings.topics.specs(), client_options=target.client_options
    )
    return KafkaTarget(
        target.bootstrap_servers, target.client_options, target.embedded, tuple(reports)
    )


def make_producer(settings: Settings, target: KafkaTarget) -> Producer:
    """The ingest producer for ``target`` (not started)."""
    limits = Limits(
        max_event_bytes=settings.ingest.max_event_bytes,
        future_tolerance=timedelta(seconds=settings.ingest.future_tolerance_s),
    )
    delivery_ms = int(settings.ingest.delivery_timeout_s * 1000)
    # kafka-python wants the delivery timeout to cover a request and the batching delay.
    request_ms = min(30_000, delivery_ms // 2)
    return Producer(
        bootstrap_servers=target.bootstrap_servers,
        client_options={"request_timeout_ms": request_ms, **target.client_options},
        delivery_timeout_ms=delivery_ms,
        max_block_ms=min(30_000, delivery_ms),
        events_topic=settings.topics.events,
        dlq_topic=settings.topics.dlq,
        pseudonymiser=Pseudonymiser(pseudonym_key(settings)),
        validator=Validator(limits),
        linger_ms=settings.ingest.linger_ms,
    )


def read_all(target: KafkaTarget, topic: str) -> Iterator[ConsumerRecord]:
    """Every record of ``topic`` from its beginning to its end as it was when this began,
    partition by partition in offset order (no consumer group, nothing committed)."""
    consumer = KafkaConsumer(
        bootstrap_servers=target.bootstrap_servers,
        enable_auto_commit=False,
        **target.consumer_options,
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for tp, batch in consumer.poll(timeout_ms=500).items():
                yield from (record for record in batch if record.offset < end[tp])
    finally:
        consumer.close()
