"""Drives the partition engines from faust: batches in, records and table writes out.

For each batch of packed records (possibly from several partitions):

1. a partition seen for the first time (newly assigned) gets its engine
   rebuilt from its changelog partition (:mod:`streams.changelog`);
2. apply the envelopes and ticks to each partition's engine;
3. send the KPI and alert records, and wait until Kafka has them;
4. write the changed state to the changelog (explicit partition), the
   partition's clock last.

faust acknowledges the batch afterwards and flushes its producer before it
commits offsets, so committed offsets never run ahead of the state: after a
crash, replayed events are applied to each piece of state at most once (see
:mod:`streams.engine.state`), replayed ticks are ignored (by their packed
offset), and KPI records may repeat, with the same values, never go missing.

A rebalance waits for the batch in flight (:meth:`StreamRuntime.revoke`): it
writes its state, and the writes reach Kafka, before the partitions go. So a
partition's changelog, when it is read back, holds whole batches only, and the
offsets faust acknowledges for that batch afterwards never run ahead of the
state. Before, a worker that got its partitions back after a broker restart
could read a changelog without its last batch, or with part of it.

Each partition's clock keeps the packed offset that comes next. A record
after it means records in between never arrived (faust drops what it fetches
while a rebalance holds its flow, and does not seek a partition that has no
committed offset): it is not applied, and the consumer reads the partition
again from the missing offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from metrics.channels import ChannelCatalog
from streams.alerting import IdleAlert
from streams.engine import AlertTransition, EngineConfig, KpiUpdate, PartitionEngine
from streams.envelopes import DecodeProblem, unpack, unusable_letter
from streams.records import encode_update

__all__ = ["ProducerLike", "Restorer", "StreamRuntime", "StreamStats"]

log = logging.getLogger(__name__)

_SEEK_AGAIN_S = 10.0
#: KPI records encoded at a time: a round after a long catch-up has hundreds of thousands,
#: and their bytes are copied into the producer's batches (encoding them all first took
#: about 180 MiB more at the peak)
_ENCODE_CHUNK = 10_000


class ProducerLike(Protocol):
    """The part of faust's producer we use: ``send`` returns a future once queued; and
    ``send_keyed``, records sent in whole batches, each to its key's default partition
    (:func:`streams.keyed.send_keyed`), which returns the futures of the batches."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Any: ...

    async def send_keyed(
        self, topic: str, records: Sequence[tuple[bytes, bytes]]
    ) -> Sequence[Any]: ...

    async def flush(self) -> None: ...


#: reads a partition's state back: ``{table key: value}`` (see :func:`streams.changelog.read_latest`)
Restorer = Callable[[int], Awaitable[Mapping[bytes, bytes]]]
#: makes the consumer read a packed partition again from ``(partition, offset)``; returns the
#: offset it reads from (later, when retention has deleted records since)
Seeker = Callable[[int, int], Awaitable[int]]


@dataclass
class StreamStats:
    envelopes: int = 0
    events: int = 0
    ticks: int = 0
    kpi_records: int = 0
    alert_records: int = 0
    state_writes: int = 0
    late_dropped: int = 0
    #: events stamped more than grace ahead of the worker's clock (the watermark stops at it)
    ahead_of_clock: int = 0
    #: times records of a partition were found missing and read again
    gaps: int = 0
    #: packed records that are neither an envelope nor a tick, sent to the dead-letter topic
    dead_lettered: int = 0
    started: float = field(default_factory=time.time)


@dataclass
class _Outcome:
    kpis: list[KpiUpdate] = field(default_factory=list)
    alerts: list[AlertTransition] = field(default_factory=list)
    writes: dict[int, list[tuple[bytes, bytes | None]]] = field(default_factory=dict)
    #: partition -> the first offset that never arrived (its later records were not applied)
    gaps: dict[int, int] = field(default_factory=dict)
    #: (partition, offset, value, reason): packed records that are neither envelope nor tick
    unusable: list[tuple[int, int, bytes, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Current:
    """The latest value of one KPI for one subject and granularity (for HTTP and Prometheus)."""

    update: KpiUpdate
    emitted_at: float


class StreamRuntime:
    def __init__(
        self,
        engine_config: EngineConfig,
        *,
        kpis_topic: str,
        alerts_topic: str,
        changelog_topic: str,
        restore: Restorer,
        seek: Seeker | None = None,
        full_batch: int | None = None,
        dlq_topic: str | None = None,
        packed_topic: str = "packed",
    ) -> None:
        self.engine_config = engine_config
        #: the topic the batches come from (named in dead letters and logs)
        self.packed_topic = packed_topic
        self.kpis_topic = kpis_topic
        self.alerts_topic = alerts_topic
        self.changelog_topic = changelog_topic
        #: where unusable packed records go (None: they are only logged)
        self.dlq_topic = dlq_topic
        self._restore = restore
        self._seek = seek
        #: partition -> (offset, when): the last seek back (records after a gap wait for it)
        self._sought: dict[int, tuple[int, float]] = {}
        #: a batch this large means more is waiting: with records older than ``behind_after_s``
        #: the worker is behind (a full batch of fresh records is just a busy live stream)
        self.full_batch = full_batch
        self.behind_after_s = 5.0
        self.engines: dict[int, PartitionEngine] = {}
        #: the packed partitions assigned to this worker now (None: not told, take every one)
        self.assigned: set[int] | None = None
        self.stats = StreamStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kpi-engine")
        #: held while a batch is processed, and while partitions are revoked
        self._batch = asyncio.Lock()
        #: (subject, kpi, granularity) -> latest window's value
        self.current: dict[tuple[str, str, str], Current] = {}

    @property
    def catalog(self) -> ChannelCatalog:
        return self.engine_config.catalog

    async def _engines(self, partitions: Iterable[int]) -> dict[int, PartitionEngine]:
        """The engines of ``partitions``, restored from the changelog where new."""
        loop = asyncio.get_running_loop()
        for partition in sorted(set(partitions) - self.engines.keys()):
            if self.assigned is not None and partition not in self.assigned:
                # Records faust had buffered before a revocation: not ours now. Restoring
                # here would read a changelog the last owner may still be writing, and the
                # engine would stay if the partition came back.
                log.info(
                    "partition=%s is not assigned: its records are left to its owner", partition
                )
                continue
            started = time.monotonic()
            entries = await self._restore(partition)
            engine = await loop.run_in_executor(
                self._executor,
                PartitionEngine.restore,
                partition,
                self.engine_config,
                list(entries.items()),
            )
            self.engines[partition] = engine
            log.info(
                "partition=%s restored keys=%s channels=%s in %.1f s",
                partition,
                len(entries),
                len(engine.metas),
                time.monotonic() - started,
            )
        return {p: self.engines[p] for p in partitions if p in self.engines}

    async def revoke(self, partitions: Iterable[int], producer: ProducerLike) -> None:
        """Partitions were revoked: after the batch in flight, and once its writes are in Kafka.

        Their state is read back from the changelog if they return.
        """
        async with self._batch:
            for partition in partitions:
                self.engines.pop(partition, None)
                self._sought.pop(partition, None)
                if self.assigned is not None:
                    self.assigned.discard(partition)
            await producer.flush()

    def assign(self, partitions: Iterable[int]) -> None:
        """The partitions assigned to this worker after a rebalance (all of them)."""
        self.assigned = set(partitions)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def process(
        self,
        batch: Sequence[tuple[int, int, bytes]],
        producer: ProducerLike,
        *,
        newest: float | None = None,
    ) -> None:
        """Apply one batch of ``(partition, offset, packed value)``; write everything it caused.

        ``newest`` is when the newest of these records was written (epoch seconds).

        The engine work runs on one thread of its own, so that the event loop
        stays free for heartbeats, the packer and the web server meanwhile.
        """
        async with self._batch:
            await self._process(batch, producer, newest)

    async def _process(
        self, batch: Sequence[tuple[int, int, bytes]], producer: ProducerLike, newest: float | None
    ) -> None:
        loop = asyncio.get_running_loop()
        engines = await self._engines({partition for partition, _, _ in batch})
        now = time.time()
        behind = (
            self.full_batch is not None
            and len(batch) >= self.full_batch
            and newest is not None
            and now - newest > self.behind_after_s
        )
        outcome = await loop.run_in_executor(
            self._executor, self._compute, batch, engines, now, behind
        )

        sends: list[Any] = []
        for start in range(0, len(outcome.kpis), _ENCODE_CHUNK):
            chunk = outcome.kpis[start : start + _ENCODE_CHUNK]
            records = [encode_update(update, now) for update in chunk]
            sends += await producer.send_keyed(self.kpis_topic, records)
            for update in chunk:
                self._remember(update, now)
        for transition in outcome.alerts:
            alert = self.alert(transition, now)
            key = transition.channel_id.encode()
            sends.append(
                await producer.send(self.alerts_topic, key, alert.to_json(), None, None, None)
            )
            log.info(
                "alert status=%s channel=%s idle_business_s=%.0f",
                alert.status,
                alert.channel_id,
                alert.idle_business_s,
            )
        for unusable in outcome.unusable:
            if (sent := await self._dead_letter(producer, *unusable)) is not None:
                sends.append(sent)
        await asyncio.gather(*sends)  # the records are in Kafka before the state that produced them

        for partition, writes in outcome.writes.items():
            for state_key, state_value in writes:
                await producer.send(
                    self.changelog_topic, state_key, state_value, partition, None, None
                )
            self.stats.state_writes += len(writes)
        self.stats.kpi_records += len(outcome.kpis)
        self.stats.alert_records += len(outcome.alerts)
        running = list(self.engines.values())
        self.stats.late_dropped = sum(engine.late_dropped for engine in running)
        self.stats.ahead_of_clock = sum(engine.ahead_of_clock for engine in running)
        for partition, missing in outcome.gaps.items():
            await self._read_again(partition, missing)

    async def _dead_letter(
        self, producer: ProducerLike, partition: int, offset: int, value: bytes, reason: str
    ) -> Any:
        """A packed record that is neither an envelope nor a tick (only the packer should write
        there): skipped, logged, and kept in the dead-letter topic with the reason."""
        self.stats.dead_lettered += 1
        where = f"{self.packed_topic}[{partition}]@{offset}"
        log.error("unusable record on the packed topic at=%s reason=%s: skipped", where, reason)
        if self.dlq_topic is None:
            return None
        letter = unusable_letter(value, where, reason, by="stream")
        return await producer.send(self.dlq_topic, None, letter.raw, None, None, letter.headers())

    async def _read_again(self, partition: int, offset: int) -> None:
        """Records from ``offset`` of ``partition`` never arrived: read them again.

        faust drops records it fetches while a rebalance holds its flow (between
        resuming the partitions and resuming the flow); a partition without a
        committed offset is not sought back afterwards, so they never come. Records
        after the gap that are still on their way are skipped too, until the
        records from ``offset`` come again (asked for again after ``_SEEK_AGAIN_S``).
        """
        now = time.monotonic()
        sought = self._sought.get(partition)
        if sought is not None and sought[0] == offset and now - sought[1] < _SEEK_AGAIN_S:
            return
        self._sought[partition] = (offset, now)
        self.stats.gaps += 1
        log.warning(
            "partition=%s records from offset=%s never arrived: reading them again",
            partition,
            offset,
        )
        if self._seek is None:
            return
        start = await self._seek(partition, offset)
        if start > offset:
            log.error(
                "partition=%s records from offset=%s to %s were deleted (retention) before the "
                "stream read them: their KPIs are missing; continuing",
                partition,
                offset,
                start,
            )
            self.engines[partition].clock.next_offset = start

    def _compute(
        self,
        batch: Sequence[tuple[int, int, bytes]],
        engines: Mapping[int, PartitionEngine],
        now: float,
        behind: bool = False,
    ) -> _Outcome:
        """The engine's part of a batch (runs on the engine thread)."""
        touched: dict[int, PartitionEngine] = {}
        outcome = _Outcome()
        for partition, offset, value in batch:
            engine = engines.get(partition)
            if engine is None:
                continue  # revoked: not ours any more
            clock = engine.clock
            if offset > clock.next_offset > 0:  # records in between never arrived
                outcome.gaps.setdefault(partition, clock.next_offset)
                continue
            if offset >= clock.next_offset:
                clock.next_offset = offset + 1
                engine.mark_clock_dirty()
            touched[partition] = engine
            try:
                data = unpack(value)
            except DecodeProblem as exc:
                outcome.unusable.append((partition, offset, value, str(exc)))
                continue
            if "tick" in data:
                engine.tick(
                    float(data["tick"]),
                    data["sources"],
                    data.get("assigned"),
                    offset=offset,
                    backfill=data.get("backfill", ()),
                )
                self.stats.ticks += 1
            else:
                events = data["events"]
                engine.apply(int(data["src"]), events, now)
                self.stats.envelopes += 1
                self.stats.events += len(events)
        for partition, engine in touched.items():
            kpis, alerts = engine.updates(now, behind=behind)
            outcome.kpis += kpis
            outcome.alerts += alerts
            outcome.writes[partition] = engine.checkpoint()
        return outcome

    def alert(self, transition: AlertTransition, now: float) -> IdleAlert:
        info = self.catalog.info(transition.channel_id)
        return IdleAlert.model_validate(
            {
                "status": transition.status,
                "channel_id": transition.channel_id,
                "channel_kind": transition.channel_kind,
                "scope": transition.scope,
                "channel_name": info.name if info else None,
                "last_activity_at": transition.last_activity_at,
                "threshold_business_s": transition.threshold_business_s,
                "idle_business_s": transition.idle_business_s,
                "starts_at": transition.starts_at,
                "ends_at": transition.ends_at,
                "emitted_at": now,
            }
        )

    def _remember(self, update: KpiUpdate, now: float) -> None:
        subject = (
            update.channel_id
            if update.channel_id is not None
            else f"*{update.channel_kind}/{update.scope}"
        )
        key = (subject, update.kpi, update.window.granularity)
        known = self.current.get(key)
        if known is None or known.update.window.start <= update.window.start:
            self.current[key] = Current(update, now)

    def snapshot(
        self, *, channel: str | None = None, kind: str | None = None
    ) -> list[Mapping[str, Any]]:
        """Current values as plain dicts (the HTTP JSON view)."""
        rows: list[Mapping[str, Any]] = []
        for (subject, kpi, granularity), current in sorted(self.current.items()):
            update = current.update
            if channel is not None and update.channel_id != channel:
                continue
            if kind is not None and update.channel_kind != kind:
                continue
            rows.append(
                {
                    "subject": subject,
                    "channel_id": update.channel_id,
                    "channel_kind": update.channel_kind,
                    "scope": update.scope,
                    "kpi": kpi,
                    "granularity": granularity,
                    "window_start": update.window.start,
                    "window_end": update.window.end,
                    "value": update.result.value,
                    "numerator": update.result.numerator,
                    "denominator": update.result.denominator,
                    "final": update.final,
                }
            )
        return rows
