"""The packer's ticks on a real broker while a source partition receives a steady feed."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from commpulse.settings import TopicSettings
from infra import EmbeddedBroker
from streams.envelopes import unpack
from streams.packer import Packer
from tests.integration.support import consume_all


async def _feed(bootstrap: str, topic: str, per_second: float, stop: asyncio.Event) -> int:
    """Events to partition 0, one request each, spread evenly: new ones land all the time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        began, sent = time.monotonic(), 0
        while not stop.is_set():
            event = {
                "event_id": str(uuid.uuid4()),
                "schema_version": 1,
                "event_type": "message_read",
                "occurred_at": "2026-11-22T19:00:00+00:00",
                "channel_id": "busy",
                "channel_kind": "email",
                "scope": "internal",
                "actor_id": "someone",
                "actor_role": "staff",
                "message_id": "m",
            }
            await producer.send(topic, orjson.dumps(event), partition=0)
            sent += 1
            await asyncio.sleep(max(0.0, began + sent / per_second - time.monotonic()))
        return sent
    finally:
        await producer.stop()


def test_a_source_that_keeps_receiving_events_counts_as_caught_up_while_the_packer_keeps_up(
    broker: EmbeddedBroker, topics: TopicSettings
) -> None:
    """A source that keeps receiving events has new ones by the time the end offsets asked
    for after reading come back: measured that way, 1 of 16 ticks called it caught up at
    4,000 events a second. It is caught up once the packer has read all its last fetch found."""
    packer = Packer(
        bootstrap_servers=broker.bootstrap_servers,
        events_topic=topics.events,
        packed_topic=topics.packed,
        packed_partitions=topics.packed_partitions,
        dlq_topic=topics.dlq,
        group_id=f"pk-{uuid.uuid4().hex[:8]}",
        tick_interval_s=0.5,
    )
    packer.follow({0})

    async def run() -> int:
        stop = asyncio.Event()
        feeding = asyncio.create_task(_feed(broker.bootstrap_servers, topics.events, 4000, stop))
        packing = asyncio.create_task(packer.run())
        await asyncio.sleep(8)
        stop.set()
        sent = await feeding
        while packer.stats.events < sent:  # the rest is packed within a linger
            await asyncio.sleep(0.2)
        packing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await packing
        return sent

    sent = asyncio.run(run())
    ticks = [
        unpack(record.value)
        for record in consume_all(broker.bootstrap_servers, topics.packed)
        if record.partition == 0 and record.key == b"tick"
    ]
    caught_up = [0 in tick["sources"] for tick in ticks]
    assert packer.stats.events == sent
    assert len(ticks) >= 12
    # The first tick can come before the packer has read the backlog of its first second.
    assert sum(caught_up[1:]) >= 0.8 * len(caught_up[1:]), caught_up
