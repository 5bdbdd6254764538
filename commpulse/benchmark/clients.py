"""Baselines: the Kafka clients alone, on the same records the pipeline stages handle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

__all__ = ["consume_aiokafka", "consume_kafka_python", "produce_raw"]


def produce_raw(
    bootstrap: str, topic: str, values: Sequence[tuple[bytes, bytes]], options: Mapping[str, Any]
) -> float:
    """Send pre-encoded (key, value) records as ingest's producer is configured; events/s."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,
        **options,
    )
    try:
        started = time.perf_counter()
        for key, value in values:
            producer.send(topic, value, key=key)
        producer.flush()
        return len(values) / (time.perf_counter() - started)
    finally:
        producer.close()


def consume_kafka_python(
    bootstrap: str, topic: str, expected: int, options: Mapping[str, Any]
) -> float:
    """Read and JSON-decode ``expected`` records from the start with kafka-python; events/s."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        **options,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        seen = 0
        started = time.perf_counter()
        while seen < expected:
            for records in consumer.poll(timeout_ms=1000, max_records=50_000).values():
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        consumer.close()


def consume_aiokafka(
    bootstrap: str, topic: str, expected: int, options: Mapping[str, Any]
) -> float:
    """The same with aiokafka (the fastest Python client here); events/s."""
    return asyncio.run(_consume_aiokafka(bootstrap, topic, expected, options))


async def _consume_aiokafka(
    bootstrap: str, topic: str, expected: int, options: Mapping[str, Any]
) -> float:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        **options,
    )
    await consumer.start()
    try:
        partitions = [AioPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        seen = 0
        started = time.perf_counter()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()
