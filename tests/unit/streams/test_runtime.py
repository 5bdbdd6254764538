"""The runtime restores a partition's state only while the partition is assigned to it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from metrics.channels import ChannelCatalog
from metrics.windows import WindowClock
from streams.engine import EngineConfig
from streams.envelopes import pack
from streams.runtime import StreamRuntime


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Any:
        self.sent.append((topic, partition))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _envelope() -> bytes:
    event = {
        "event_type": "message_sent", "channel_id": "im-a", "channel_kind": "im",
        "scope": "internal", "actor_id": "u1", "actor_role": "employee",
        "message_id": "m1", "_o": 0, "_t": 1_794_823_200.0,
    }  # fmt: skip
    return pack(0, [event])


def test_records_of_a_revoked_partition_are_left_to_its_next_owner() -> None:
    restored: list[int] = []

    async def restore(partition: int) -> Mapping[bytes, bytes]:
        restored.append(partition)
        return {}

    runtime = StreamRuntime(
        EngineConfig(ChannelCatalog(), WindowClock("UTC")),
        kpis_topic="kpis",
        alerts_topic="alerts",
        changelog_topic="changelog",
        restore=restore,
    )
    producer = _Producer()

    async def scenario() -> None:
        runtime.assign({5, 6})
        await runtime.process([(6, 0, _envelope())], producer)
        assert restored == [6] and runtime.stats.events == 1
        runtime.forget({5, 6})  # a rebalance: revoked ...
        runtime.assign({5})  # ... and 6 went to another worker
        # faust may still hand over a record it had buffered for 6: not restored, not applied
        await runtime.process([(6, 1, _envelope())], producer)
        assert restored == [6] and 6 not in runtime.engines and runtime.stats.events == 1
        runtime.assign({5, 6})  # 6 comes back: its state is read again, now
        await runtime.process([(6, 1, _envelope())], producer)
        assert restored == [6, 6] and 6 in runtime.engines

    try:
        asyncio.run(scenario())
    finally:
        runtime.close()
    assert ("changelog", 6) in producer.sent  # the state went to partition 6's changelog
