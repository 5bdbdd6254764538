"""The packer's sends: an envelope never lands after a later one of its source, so a failed
send, packed again, loses nothing. (Kafka is faked here: the point is the order in which
the packer hands envelopes to the producer; the broker-restart test runs it for real.)"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from streams.envelopes import packed_partition, unpack
from streams.packer import Packer, metadata

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
    #: what went to the dead-letter topic: its headers
    letters: list[dict[str, bytes]] = field(default_factory=list)

    async def send(self, topic: str, value: bytes, **options: Any) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        sent: asyncio.Future[None] = loop.create_future()
        partition = options.get("partition", 0)
        if topic == "dlq":
            self.letters.append(dict(options["headers"]))
            sent.set_result(None)
        elif partition == self.fail_partition:
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


def make_packer(**options: Any) -> Packer:
    """A packer whose clients are never started (the tests call its parts directly)."""
    return Packer(
        bootstrap_servers="unused",
        events_topic=EVENTS,
        packed_topic="packed",
        packed_partitions=12,
        dlq_topic="dlq",
        group_id="g",
        **options,
    )


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
    packer = make_packer(max_events=2)  # four envelopes of email events, two of hotline
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


def test_a_partition_is_backfilling_for_three_ticks_after_its_last_old_event() -> None:
    packer = make_packer(tick_interval_s=10)
    packer._old_seen = {0: 1000.0, 2: 990.0}
    assert packer._backfilling([0, 1, 2], 1010.0) == [0, 2]
    assert packer._backfilling([0, 1, 2], 1025.0) == [0]  # 2's last old event: 35 s ago
    assert packer._backfilling([0, 1, 2], 1030.0) == []


def test_a_partition_backfilling_for_an_hour_is_logged_once_an_hour(
    caplog: pytest.LogCaptureFixture,
) -> None:
    packer = make_packer(tick_interval_s=10)
    caplog.set_level(logging.WARNING, logger="streams.packer")

    def backfill_for(start: int, seconds: int) -> None:
        for at in range(start, start + seconds, 10):  # an old event before every tick
            packer._old_seen[3] = float(at)
            assert packer._backfilling([3], float(at)) == [3]

    def logged(minutes: int) -> str:
        return (
            f"partition=3 has delivered events older than backfill_age_s=3600 for {minutes} "
            "min: no idle alerts for its channels meanwhile (raise stream.backfill_age_s if "
            "its events normally arrive this late)"
        )

    backfill_for(0, 2 * 3600 + 10)
    assert [r.getMessage() for r in caplog.records] == [logged(60), logged(120)]
    caplog.clear()
    assert packer._backfilling([3], 7300.0) == []  # the import is over
    backfill_for(8000, 3590)  # another one, shorter than an hour: nothing to say
    assert caplog.records == []


def test_envelopes_stay_below_the_largest_record_and_an_event_too_big_for_one_is_dead_lettered() -> (
    None
):
    """Kafka refuses a record over its limit (1 MiB by default): 500 events of a few KB
    (ids of 256 characters) in one envelope would be refused, and the packer would retry
    it for ever."""
    long = "x" * 2000
    records = [record(o, f"c-{long}", "email") for o in range(20)]
    huge = record(20, "c-huge", "email")
    huge.value = huge.value[:-1] + b', "padding": "' + b"y" * 9000 + b'"}'
    records += [huge, record(21, "c-small", "email")]
    packer = make_packer(max_events=500, max_bytes=8192)
    producer, consumer = Producer(fail_partition=None), Consumer()
    asyncio.run(packer._pack({SOURCE: records}, consumer, producer))

    envelopes = producer.delivered[packed_partition("email", 12)]
    assert max(len(value) for value in envelopes) <= 8192
    assert len(envelopes) == 7  # events of about 2.2 KB, three to an envelope (c-small last)
    assert [e["_o"] for v in envelopes for e in unpack(v)["events"]] == [*range(20), 21]
    [letter] = producer.letters
    assert letter["commpulse.source"] == b"packer:events[0]@20"
    assert b"too big for an envelope of at most 8192 bytes" in letter["commpulse.reason"]
    assert consumer.commits == [{SOURCE: 22}]


def test_the_metadata_is_fetched_again_until_the_broker_answers() -> None:
    """A worker starting while the broker restarts waits for it (it used to stop, exit 1)."""

    class Consumer:
        calls = 0

        async def topics(self) -> set[str]:
            self.calls += 1
            if self.calls < 3:
                raise KafkaError("Unable to get cluster metadata over all known brokers")
            return {"events"}

    consumer = Consumer()
    asyncio.run(asyncio.wait_for(metadata(consumer), timeout=10))
    assert consumer.calls == 3
