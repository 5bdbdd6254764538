"""The worker's state changelog: a compacted topic, one partition per packed partition.

The stream worker keeps its state itself rather than in a faust table: the
engine writes changed pieces with an explicit partition (see
:mod:`streams.runtime`), and a worker that is given a packed partition reads
the matching changelog partition back before it applies anything there. This
avoids faust's table recovery, which can stall after a rebalance (faust
issues #21, #74), and it needs nothing but a plain consumer without a group.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["changelog_topic", "read_latest"]

log = logging.getLogger(__name__)


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-state-changelog"


async def read_latest(
    bootstrap_servers: str,
    topic: str,
    partition: int,
    client_options: Mapping[str, Any] | None = None,
) -> dict[bytes, bytes]:
    """The latest value of every key in one partition, up to its end now (tombstones delete)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # only the worker needs it

    consumer = AIOKafkaConsumer(
        **dict(client_options or {}),
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        latest: dict[bytes, bytes] = {}
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=500, max_records=50_000)
            for record in batches.get(tp, []):
                if record.offset >= end or record.key is None:
                    continue
                if record.value is None:
                    latest.pop(record.key, None)
                else:
                    latest[record.key] = record.value
        return latest
    finally:
        await consumer.stop()
