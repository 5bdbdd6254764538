"""Event → KPI update latency: probe events on fresh channels, timed until their KPI record."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

from kafka import KafkaConsumer, TopicPartition

from commpulse.kafka import KafkaTarget, make_producer
from commpulse.settings import Settings
from ingest import Record
from metrics.catalog import quantile_cont
from streams.records import KpiRecord

__all__ = ["probe_latency"]


def probe_latency(
    settings: Settings, target: KafkaTarget, *, rate: float, probes: int, timeout: float = 60.0
) -> dict[str, float | int | None]:
    """Send ``probes`` events at ``rate``/s, each on its own new channel; p50/p99 seconds.

    The clock runs from handing the event to the producer to the moment the KPI
    topic holds a record for its channel, so it covers ingest, both topics,
    the worker's batching and its emit interval.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=target.bootstrap_servers,
        enable_auto_commit=False,
        **target.client_options,
    )
    topic = settings.topics.kpis
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_end()
    for tp in partitions:
        consumer.position(tp)  # resolve the end now, before the probes go out
    run = uuid.uuid4().hex[:6]
    sent_at: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def send() -> None:
        with make_producer(settings, target) as producer:
            for n in range(probes):
                channel = f"probe-{run}-{n}"
                event = {
                    "event_id": str(uuid.uuid4()),
                    "event_type": "message_sent",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "channel_id": channel,
                    "channel_kind": "im",
                    "scope": "internal",
                    "actor_id": "bench",
                    "actor_role": "employee",
                    "message_id": f"m-{n}",
                }
                sent_at[channel] = time.monotonic()
                producer.send_many([Record(event)])
                producer.flush()
                time.sleep(1 / rate)
        done.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.monotonic() + probes / rate + timeout
    try:
        while len(seen) < probes and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                now = time.monotonic()
                for record in records:
                    channel = KpiRecord.decode(record.value).channel_id
                    if channel in sent_at and channel not in seen:
                        seen[channel] = now - sent_at[channel]
    finally:
        consumer.close()
        sender.join(timeout=30)
    latencies = sorted(seen.values())
    return {
        "probes": probes,
        "seen": len(latencies),
        "rate_per_s": round(rate, 1),
        "p50": quantile_cont(latencies, 0.5),
        "p99": quantile_cont(latencies, 0.99),
    }
