"""The runtime restores a partition's state only while it is assigned, and only whole batches."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest

import streams.runtime
from metrics.channels import ChannelCatalog
from metrics.windows import WindowClock
from streams.engine import EngineConfig
from streams.envelopes import pack
from streams.runtime import StreamRuntime


class _Kafka:
    """A producer whose records reach the log when flushed; a send may be held at a gate."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, int | None, bytes | None, bytes | None]] = []
        self.log: list[tuple[str, int | None, bytes | None, bytes | None]] = []
        self.gate: asyncio.Event | None = None  # set: changelog sends wait until it opens
        self.waiting = asyncio.Event()

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Any:
        if self.gate is not None and topic == "changelog":
            self.waiting.set()
            await self.gate.wait()  # as aiokafka does while the broker is away
        self.queued.append((topic, partition, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_keyed(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[Any]:
        return [await self.send(topic, key, value, None, None, None) for key, value in records]

    async def flush(self) -> None:
        self.log += self.queued
        self.queued = []

    def latest(self, partition: int) -> dict[bytes, bytes]:
        """What a restore reads: the latest value per key in the log (not what is queued)."""
        state: dict[bytes, bytes] = {}
        for topic, p, key, value in self.log:
            if topic == "changelog" and p == partition and key is not None:
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
        return state


def _envelope(offset: int) -> bytes:
    event = {
        "event_type": "message_sent", "channel_id": "im-a", "channel_kind": "im",
        "scope": "internal", "actor_id": "u1", "actor_role": "employee",
        "message_id": f"m{offset}", "_o": offset, "_t": 1_794_823_200.0 + offset,
    }  # fmt: skip
    return pack(0, [event])


def _runtime(
    kafka: _Kafka, restored: list[tuple[int, int]], sought: list[tuple[int, int]] | None = None
) -> StreamRuntime:
    async def restore(partition: int) -> Mapping[bytes, bytes]:
        entries = kafka.latest(partition)
        restored.append((partition, len(entries)))
        return entries

    async def seek(partition: int, offset: int) -> int:
        assert sought is not None
        sought.append((partition, offset))
        return offset

    return StreamRuntime(
        EngineConfig(ChannelCatalog(), WindowClock("UTC")),
        kpis_topic="kpis",
        alerts_topic="alerts",
        changelog_topic="changelog",
        restore=restore,
        seek=seek,
    )


def test_records_of_a_revoked_partition_are_left_to_its_next_owner() -> None:
    kafka = _Kafka()
    restored: list[tuple[int, int]] = []
    runtime = _runtime(kafka, restored)

    async def scenario() -> None:
        runtime.assign({5, 6})
        await runtime.process([(6, 0, _envelope(0))], kafka)
        assert restored == [(6, 0)] and runtime.stats.events == 1
        await runtime.revoke({5, 6}, kafka)  # a rebalance: revoked ...
        runtime.assign({5})  # ... and 6 went to another worker
        # faust may still hand over a record it had buffered for 6: not restored, not applied
        await runtime.process([(6, 1, _envelope(1))], kafka)
        assert len(restored) == 1 and 6 not in runtime.engines and runtime.stats.events == 1
        runtime.assign({5, 6})  # 6 comes back: its state is read again, now
        await runtime.process([(6, 1, _envelope(1))], kafka)
        assert len(restored) == 2 and 6 in runtime.engines and runtime.stats.events == 2

    try:
        asyncio.run(scenario())
    finally:
        runtime.close()
    assert restored[1][1] > 0  # the state of offset 0 went to partition 6's changelog, and back


def test_a_revocation_waits_for_the_batch_in_flight_to_write_all_its_state() -> None:
    """After a broker restart the worker gets its partitions back: it must read whole batches."""
    kafka = _Kafka()
    restored: list[tuple[int, int]] = []
    runtime = _runtime(kafka, restored)

    async def scenario() -> None:
        runtime.assign({6})
        kafka.gate = gate = asyncio.Event()
        batch = asyncio.create_task(runtime.process([(6, 0, _envelope(0))], kafka))
        await kafka.waiting.wait()  # its state writes are held up (the broker is away) ...
        revoking = asyncio.create_task(runtime.revoke({6}, kafka))  # ... when the rebalance starts
        for _ in range(10):
            await asyncio.sleep(0)
        assert not revoking.done() and 6 in runtime.engines  # the revocation waits
        gate.set()
        await asyncio.gather(batch, revoking)
        assert 6 not in runtime.engines and not kafka.queued  # written, and in Kafka

        runtime.assign({6})  # the same worker gets the partition back, as after a restart
        whole = kafka.latest(6)
        # faust replays the batch from the committed offset: the state has it, nothing changes
        await runtime.process([(6, 0, _envelope(0))], kafka)
        assert restored == [(6, 0), (6, len(whole))]
        assert runtime.engines[6].applied_events == 0  # the replayed event was applied before
        await kafka.flush()
        assert kafka.latest(6) == whole

    try:
        asyncio.run(scenario())
    finally:
        runtime.close()


def test_records_that_never_arrived_are_read_again_before_anything_after_them() -> None:
    """faust can drop records it fetched during a rebalance: the worker notices the gap."""
    kafka = _Kafka()
    restored: list[tuple[int, int]] = []
    sought: list[tuple[int, int]] = []
    runtime = _runtime(kafka, restored, sought)

    def records(*offsets: int) -> list[tuple[int, int, bytes]]:
        return [(6, offset, _envelope(offset)) for offset in offsets]

    async def scenario() -> None:
        runtime.assign({6})
        await runtime.process(records(0, 1), kafka)
        assert runtime.stats.events == 2
        await runtime.process(records(4), kafka)  # 2 and 3 never came
        assert runtime.stats.events == 2 and sought == [(6, 2)] and runtime.stats.gaps == 1
        await runtime.process(records(5), kafka)  # on its way before the seek: skipped, no new seek
        assert runtime.stats.events == 2 and sought == [(6, 2)]
        await runtime.process(records(2, 3, 4, 5), kafka)  # read again, in order
        assert runtime.stats.events == 6 and runtime.engines[6].applied_events == 6

        await runtime.revoke({6}, kafka)  # the next packed offset is part of the state
        runtime.assign({6})
        await runtime.process(records(7), kafka)
        assert restored[-1][1] > 0 and sought == [(6, 2), (6, 6)]
        await runtime.process(records(6, 7), kafka)
        assert runtime.stats.events == 8

    try:
        asyncio.run(scenario())
    finally:
        runtime.close()


def test_kpi_records_encoded_a_chunk_at_a_time_are_the_same_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def kpi_records(chunk: int | None) -> list[tuple[bytes | None, dict[str, Any]]]:
        if chunk is not None:
            monkeypatch.setattr(streams.runtime, "_ENCODE_CHUNK", chunk)
        kafka = _Kafka()
        runtime = _runtime(kafka, [])

        async def scenario() -> None:
            await runtime.process([(6, offset, _envelope(offset)) for offset in range(5)], kafka)
            await kafka.flush()

        try:
            asyncio.run(scenario())
        finally:
            runtime.close()
        return [
            (key, {k: v for k, v in orjson.loads(value or b"").items() if k != "emitted_at"})
            for topic, _, key, value in kafka.log
            if topic == "kpis"
        ]

    whole = kpi_records(None)
    assert len(whole) > 3
    assert kpi_records(2) == kpi_records(3) == whole
