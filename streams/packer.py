"""The packer: ``commpulse.events`` → envelopes on the packed topic (see :mod:`streams.envelopes`).

It runs inside every stream worker as a plain aiokafka consumer. It does not
join a consumer group of its own: the worker that faust assigned packed
partitions ``P`` packs the source partitions ``s`` with ``s mod
len(packed partitions)`` in ``P`` (see :meth:`Packer.follow`), so the work
follows faust's assignment and every source partition has one packer. It reads
for up to ``linger_s`` (so that envelopes stay large when events trickle in:
the worker's cost is per envelope and per batch far more than per event),
groups each source partition's events by kind into envelopes, sends them
(each packed partition's in turn, see :meth:`Packer._send_in_turn`), waits for
the acknowledgements, and only then commits the source offsets (under the
group ``<app id>-packer``, for storage only). What failed to send is packed
again on the next try. After a crash or a handover some envelopes are packed
twice; the stream applies each event at most once, by offset. A record the
stream cannot use goes to the dead-letter topic with the reason.

Every tick also names the source partitions that delivered an event older
than ``backfill_age_s`` within the last three ticks: history is being
imported there, so the stream does not yet judge their channels idle.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams.envelopes import (
    DecodeProblem,
    pack,
    packed_partition,
    slim_event,
    tick,
    unusable_letter,
)

__all__ = ["Packer", "PackerStats"]

log = logging.getLogger(__name__)

_BACKOFF_S = 0.5
#: a source that delivered old events within this many ticks is still backfilling
_BACKFILL_TICKS = 3
#: a source backfilling this long is logged (no idle alerts for its channels meanwhile)
_LONG_BACKFILL_S = 3600.0
_MAX_BACKOFF_S = 30.0
#: an envelope's bytes besides its events (``{"v":1,"src":N,"events":[]}``), generously
_ENVELOPE_BYTES = 64
#: what a slim event may have that its record did not (``_o``, ``_t``, numbers written out)
_SLIM_EXTRA_BYTES = 128


async def metadata(consumer: Any) -> None:
    """Fetch the cluster's metadata, retrying with backoff: a worker that starts while the
    broker restarts waits for it instead of stopping with an error."""
    backoff = _BACKOFF_S
    while True:
        try:
            await consumer.topics()
            return
        except KafkaError as exc:
            log.warning("packer metadata error=%s: retrying in %.1f s", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)


@dataclass
class PackerStats:
    events: int = 0
    envelopes: int = 0
    dead_lettered: int = 0
    ticks: int = 0
    lag: dict[int, int] = field(default_factory=dict)
    #: source partitions that the last tick called backfilling
    backfill: list[int] = field(default_factory=list)


class Packer:
    """Packs one worker's share of the events topic; :meth:`run` until cancelled."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        events_topic: str,
        packed_topic: str,
        packed_partitions: int,
        dlq_topic: str,
        group_id: str,
        client_options: Mapping[str, Any] | None = None,
        max_events: int = 2000,
        max_bytes: int = 512 * 1024,
        tick_interval_s: float = 10.0,
        linger_s: float = 1.0,
        max_pending: int = 50_000,
        backfill_age_s: float = 3600.0,
    ) -> None:
        self.events_topic = events_topic
        self.packed_topic = packed_topic
        self.packed_partitions = packed_partitions
        self.dlq_topic = dlq_topic
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.tick_interval_s = tick_interval_s
        self.linger_s = linger_s
        self.max_pending = max_pending
        self.backfill_age_s = backfill_age_s
        self.stats = PackerStats()
        self._wanted: set[int] = set()
        #: when (monotonic) each source partition last delivered an event older than the age
        self._old_seen: dict[int, float] = {}
        #: when (monotonic) each backfilling source began, and when it was last logged
        self._backfill_began: dict[int, float] = {}
        self._backfill_logged: dict[int, float] = {}
        options = dict(client_options or {})
        self._consumer_args: dict[str, Any] = {
            **options,
            "bootstrap_servers": bootstrap_servers,
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_partition_fetch_bytes": 4 * 1024 * 1024,
            "fetch_max_bytes": 16 * 1024 * 1024,
        }
        self._producer_args: dict[str, Any] = {
            **options,
            "bootstrap_servers": bootstrap_servers,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "max_batch_size": 1024 * 1024,
            "max_request_size": 8 * 1024 * 1024,
        }

    def follow(self, packed_partitions: set[int]) -> None:
        """Pack the source partitions that belong to these packed partitions (faust's assignment)."""
        self._wanted = set(packed_partitions)

    def _sources(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        partitions = consumer.partitions_for_topic(self.events_topic) or set()
        return {
            TopicPartition(self.events_topic, s)
            for s in partitions
            if s % self.packed_partitions in self._wanted
        }

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(**self._consumer_args)
        producer = AIOKafkaProducer(**self._producer_args)
        await producer.start()
        try:
            await consumer.start()
            try:
                await metadata(consumer)  # how many partitions the events topic has
                await self._loop(consumer, producer)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Read, gather for up to ``linger_s``, pack; tick. Records not yet packed stay pending
        (their offsets uncommitted) and are packed on the next try after an error."""
        next_tick = 0.0
        backoff = _BACKOFF_S
        pending: dict[TopicPartition, list[Any]] = {}
        since = 0.0  # when the oldest pending record was read
        while True:
            try:
                sources = self._sources(consumer)
                if sources != consumer.assignment():
                    if pending:  # what was read is packed before the sources change
                        await self._pack(pending, consumer, producer)
                        pending = {}
                    consumer.assign(list(sources))
                    self.stats.lag = {}  # measured again at the next tick
                    log.info("packer sources=%s", sorted(tp.partition for tp in sources))
                if not sources:
                    await asyncio.sleep(0.2)
                    continue
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_pending)
                if batches and not pending:
                    since = time.monotonic()
                for tp, records in batches.items():
                    pending.setdefault(tp, []).extend(records)
                now = time.time()
                ticking = now >= next_tick
                # Whether each source is caught up is measured before packing, so that the time
                # packing takes (each partition's envelopes go in turn) does not count against it.
                sources_read, caught_up = await self._caught_up(consumer) if ticking else ([], [])
                if pending and (
                    ticking  # a tick must not overtake what was read before it
                    or time.monotonic() - since >= self.linger_s
                    or sum(map(len, pending.values())) >= self.max_pending
                ):
                    await self._pack(pending, consumer, producer)
                    pending = {}
                if ticking:
                    await self._tick(now, sources_read, caught_up, producer)
                    next_tick = now + self.tick_interval_s
                backoff = _BACKOFF_S
            except (
                KafkaError
            ) as exc:  # a broker restart, a leader change: try again, never crash the worker
                log.warning("packer error=%s: retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _pack(
        self,
        batches: Mapping[TopicPartition, list[Any]],
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
    ) -> None:
        letters = []
        #: per packed partition, its envelopes in order: (key, value)
        envelopes: dict[int, list[tuple[bytes, bytes]]] = {}
        commits: dict[TopicPartition, int] = {}
        packed = 0
        for tp, records in batches.items():
            #: per kind, its events and an upper bound of each one's size in an envelope
            by_kind: dict[str, list[tuple[dict[str, Any], int]]] = {}
            oldest = math.inf
            for record in records:
                # A slim event keeps some of the record's fields and adds two numbers.
                size = len(record.value or b"") + _SLIM_EXTRA_BYTES
                try:
                    if size > self.max_bytes - _ENVELOPE_BYTES:
                        raise DecodeProblem(
                            f"the event is {size - _SLIM_EXTRA_BYTES} bytes: too big for an "
                            f"envelope of at most {self.max_bytes} bytes (stream.max_record_bytes)"
                        )
                    event = slim_event(record.value, record.offset)
                except DecodeProblem as exc:
                    letters.append(await self._dead_letter(producer, tp, record, str(exc)))
                    continue
                by_kind.setdefault(event["channel_kind"], []).append((event, size))
                oldest = min(oldest, event["_t"])
            if oldest < time.time() - self.backfill_age_s:
                self._old_seen[tp.partition] = time.monotonic()
            for kind, sized in by_kind.items():
                chain = envelopes.setdefault(packed_partition(kind, self.packed_partitions), [])
                chain += [
                    (kind.encode(), pack(tp.partition, chunk)) for chunk in self._split(sized)
                ]
                packed += len(sized)
            commits[tp] = records[-1].offset + 1
        # Acknowledged before the source offsets are committed. A failure cancels the other
        # partitions' sends and leaves everything pending, to be packed again.
        try:
            async with asyncio.TaskGroup() as group:
                for partition, chain in envelopes.items():
                    group.create_task(self._send_in_turn(producer, partition, chain))
                for letter in letters:
                    group.create_task(_delivered(letter))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # a KafkaError: the loop tries again
        await consumer.commit(commits)
        self.stats.events += packed

    def _split(self, sized: list[tuple[dict[str, Any], int]]) -> list[list[dict[str, Any]]]:
        """Events in order, in envelopes of at most ``max_events`` events and ``max_bytes``."""
        chunks: list[list[dict[str, Any]]] = []
        chunk: list[dict[str, Any]] = []
        size = _ENVELOPE_BYTES
        for event, bytes_ in sized:
            if chunk and (len(chunk) >= self.max_events or size + bytes_ > self.max_bytes):
                chunks.append(chunk)
                chunk, size = [], _ENVELOPE_BYTES
            chunk.append(event)
            size += bytes_
        if chunk:
            chunks.append(chunk)
        return chunks

    async def _send_in_turn(
        self, producer: AIOKafkaProducer, partition: int, envelopes: list[tuple[bytes, bytes]]
    ) -> None:
        """One packed partition's envelopes, each sent once the one before it is acknowledged.

        The stream applies a channel's events at most once, by source offset, so an
        envelope must never land after a later one of its source: if one fails (a batch
        that expired while its partition had no leader, say) and a later one were already
        on its way, the later one would land first, and the failed one's events, packed
        again, would be skipped as applied.
        """
        for key, value in envelopes:
            await _delivered(
                await producer.send(self.packed_topic, value, key=key, partition=partition)
            )
            self.stats.envelopes += 1

    async def _dead_letter(
        self, producer: AIOKafkaProducer, tp: TopicPartition, record: Any, reason: str
    ) -> Any:
        self.stats.dead_lettered += 1
        where = f"{tp.topic}[{tp.partition}]@{record.offset}"
        log.warning("undecodable record on the events topic at=%s reason=%s", where, reason)
        letter = unusable_letter(record.value or b"", where, reason, by="packer")
        return await producer.send(self.dlq_topic, letter.raw, headers=letter.headers())

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> tuple[list[int], list[int]]:
        """The source partitions read, and those caught up; their lag goes to the stats.

        A source is caught up once everything its last fetch response found has been read:
        position at the high watermark that response carried. That is as good as reading
        to the end offset asked for afterwards, and unlike it stays true under a steady feed:
        a source receiving a few thousand events a second has new ones by the time the end
        offsets come back, so it would almost never count as caught up, and its quiet groups
        would hold their kinds' windows open (see ``PartitionEngine.tick``). The end offsets,
        asked for after, still give the lag, and a source at its end offset is caught up too
        (before its first fetch, say).
        """
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        if not assigned:
            return [], []
        # Position first, then the high watermark: a fetch that lands in between can only
        # raise the watermark, which asks for more.
        read = [(tp, await consumer.position(tp), consumer.highwater(tp)) for tp in assigned]
        ends = await consumer.end_offsets(assigned)
        caught_up = []
        for tp, position, highwater in read:
            self.stats.lag[tp.partition] = max(0, ends[tp] - position)
            if position >= ends[tp] or (highwater is not None and position >= highwater):
                caught_up.append(tp.partition)
        return [tp.partition for tp in assigned], caught_up

    async def _tick(
        self, now: float, assigned: list[int], caught_up: list[int], producer: AIOKafkaProducer
    ) -> None:
        """Tell every packed partition the time, the source partitions read (``assigned``),
        those caught up (see :meth:`_caught_up`; measured before what was read was packed),
        and those backfilling."""
        if not assigned:
            return
        backfill = self._backfilling(assigned, time.monotonic())
        self.stats.backfill = backfill
        value = tick(now, caught_up, assigned, backfill)
        sends = [
            await producer.send(self.packed_topic, value, key=b"tick", partition=partition)
            for partition in range(self.packed_partitions)
        ]
        await asyncio.gather(*sends)
        self.stats.ticks += 1

    def _backfilling(self, partitions: list[int], at: float) -> list[int]:
        """Those of ``partitions`` that delivered an event older than ``backfill_age_s``
        within the last three ticks (``at``: the monotonic time now).

        A partition that has backfilled for an hour is logged, and again every hour: its
        channels get no idle alerts meanwhile, which is right for an import of history and
        wrong for a source whose events always arrive that late.
        """
        since = at - _BACKFILL_TICKS * self.tick_interval_s
        backfill = [p for p in partitions if self._old_seen.get(p, -math.inf) > since]
        for partition in set(self._backfill_began) - set(backfill):
            del self._backfill_began[partition]
        for partition in backfill:
            began = self._backfill_began.setdefault(partition, at)
            logged = self._backfill_logged.get(partition, -math.inf)
            if at - began >= _LONG_BACKFILL_S and at - logged >= _LONG_BACKFILL_S:
                self._backfill_logged[partition] = at
                log.warning(
                    "partition=%s has delivered events older than backfill_age_s=%.0f for %.0f "
                    "min: no idle alerts for its channels meanwhile (raise stream.backfill_age_s "
                    "if its events normally arrive this late)",
                    partition,
                    self.backfill_age_s,
                    (at - began) / 60,
                )
        return backfill


async def _delivered(sent: asyncio.Future[Any]) -> None:
    await sent
