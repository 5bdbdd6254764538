"""aiokafka consumers at the end of their partitions, on the embedded broker, with paced fetches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.consumer import fetcher

from commpulse.settings import TopicSettings
from infra import EmbeddedBroker
from streams.fetch_pacing import pace_empty_fetches


@pytest.fixture
def unpaced() -> Iterator[None]:
    """aiokafka's fetcher as it was before the test (pacing is process-wide)."""
    names = ("_proc_fetch_request", "_get_actions_per_node")
    originals = {name: getattr(fetcher.Fetcher, name) for name in names}
    yield
    for name, original in originals.items():
        setattr(fetcher.Fetcher, name, original)


async def _idle_fetches(bootstrap: str, topic: str, seconds: float) -> int:
    """Fetch requests a consumer at the end of ``topic`` sends in ``seconds``."""
    sent = 0
    original = AIOKafkaClient.send

    async def counting(self: AIOKafkaClient, node_id: int, request: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += type(request).__name__.startswith("FetchRequest")
        return await original(self, node_id, request, **kwargs)

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)  # assigned and positioned
        AIOKafkaClient.send = counting
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await consumer.getmany(timeout_ms=100)
        finally:
            AIOKafkaClient.send = original
    finally:
        await consumer.stop()
    return sent


async def _delivery_delay(bootstrap: str, topic: str) -> float:
    """Seconds from sending a record to an idle consumer until the consumer has it."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        await consumer.getmany(timeout_ms=500)
        await asyncio.sleep(0.3)  # idle: the fetcher is pacing
        await producer.send_and_wait(topic, b"hello")
        sent = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=5000)
            if batches:
                assert [r.value for rs in batches.values() for r in rs] == [b"hello"]
                return time.monotonic() - sent
    finally:
        await producer.stop()
        await consumer.stop()


def test_an_idle_consumer_fetches_at_most_once_per_pause_and_still_gets_new_records_at_once(
    broker: EmbeddedBroker, topics: TopicSettings, unpaced: None
) -> None:
    bootstrap, topic = broker.bootstrap_servers, topics.alerts
    before = asyncio.run(_idle_fetches(bootstrap, topic, 2.0))
    assert pace_empty_fetches(0.05)
    assert pace_empty_fetches(0.1)  # pacing again replaces the pause, it does not add one
    paced = asyncio.run(_idle_fetches(bootstrap, topic, 2.0))
    # one fetch per 0.1 s at most (plus the one in flight); the broker answers at once, so
    # without pacing the consumer sends thousands
    assert paced <= 2.0 / 0.1 + 2, (paced, before)
    assert asyncio.run(_delivery_delay(bootstrap, topic)) < 1.0


def test_a_pause_must_be_positive(unpaced: None) -> None:
    with pytest.raises(ValueError, match="the pause must be positive, got 0"):
        pace_empty_fetches(0)
