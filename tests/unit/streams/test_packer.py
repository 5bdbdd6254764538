"""The packer's sends: an envelope never lands after a later one of its source, so a failed
send, packed again, loses nothing. (Kafka is faked here: the point is the order in which
the packer hands envelopes to the producer; the broker-restart test runs it for real.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from streams.envelopes import packed_partition, unpack
from streams.packer import Packer

EVENTS = "events"
SOURCE = TopicPartition(EVENTS, 0)


@dataclass
class Record:
    offset: int
    value: bytes


def record(offset: int, channel: str, kind: str) -> Record:
    event = {
        "event_type": "message_sent",
        "occurred_at": f"2026-11-16T10:{offset:02d}:00+00:00",
        "channel_id": channel,
        "channel_kind": kind,
        "scope": "internal",
        "actor_id": "a",
        "actor_role": "employee",
        "message_id": f"m{offset}",
    }
    return Record(offset, orjson.dumps(event))


@dataclass
class Producer:
    """Acknowledges each send at once, except the first one to ``fail_partition``, which
    fails a little later (a batch that expired while its partition had no leader)."""

    fail_partition: int | None
    delivered: dict[int, list[bytes]] = field(default_factory=dict)

    async def send(self, topic: str, value: bytes, **options: Any) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        sent: asyncio.Future[None] = loop.create_future()
        partition = options.get("partition", 0)
        if partition == self.fail_partition:
            self.fail_partition = None
            loop.call_later(0.05, sent.set_exception, KafkaTimeoutError())
        else:
            self.delivered.setdefault(partition, []).append(value)
            sent.set_result(None)
        return sent


@dataclass
class Consumer:
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def applied(producer: Producer) -> list[int]:
    """The source offsets a stream applies from what each packed partition got, in order:
    each channel's events at most once, skipping those at or before the last applied."""
    seen: dict[str, int] = {}
    out = []
    for values in producer.delivered.values():
        for value in values:
            for event in unpack(value)["events"]:
                if event["_o"] > seen.get(event["channel_id"], -1):
                    seen[event["channel_id"]] = event["_o"]
                    out.append(event["_o"])
    return sorted(out)


def test_a_failed_envelope_is_packed_again_before_any_later_one_of_its_source_lands() -> None:
    records = [record(o, "c-email", "email") for o in range(7)]
    records += [record(o, "c-hot", "hotline") for o in range(7, 10)]
    pending = {SOURCE: records}
    packer = Packer(
        bootstrap_servers="unused",
        events_topic=EVENTS,
        packed_topic="packed",
        packed_partitions=12,
        dlq_topic="dlq",
        group_id="g",
        max_events=2,  # four envelopes of email events, two of hotline
    )
    producer = Producer(fail_partition=packed_partition("email", 12))
    consumer = Consumer()

    async def pack_until_done() -> int:
        tries = 0
        while True:
            tries += 1
            try:
                await packer._pack(pending, consumer, producer)
                return tries
            except KafkaTimeoutError:
                assert consumer.commits == []  # nothing committed while anything failed

    assert asyncio.run(pack_until_done()) == 2
    assert applied(producer) == list(range(10))  # every event, once
    email = producer.delivered[packed_partition("email", 12)]
    assert [[e["_o"] for e in unpack(v)["events"]] for v in email] == [[0, 1], [2, 3], [4, 5], [6]]
    assert consumer.commits == [{SOURCE: 10}]
    assert packer.stats.events == 10  # counted once, when committed
