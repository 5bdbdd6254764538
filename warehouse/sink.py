"""The exactly-once sink: events topic → ``raw.events``, offsets in the same transaction.

The sink reads every partition of the events topic with no consumer group:
where to start is the warehouse's own business. Each batch's new rows and the
next offset of every partition it read commit in one DuckDB transaction, so a
crash at any moment leaves the warehouse at a batch boundary, and a restart
goes on from exactly there. ``event_id`` is the primary key: an event that was
sent twice (a producer retry, a file ingested twice) is stored once.

A record that does not decode to a valid event goes to the dead-letter topic
with the reason (before the batch commits, so nothing is lost) and is counted
in ``ops.loads``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import duckdb
import polars as pl
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import ValidationError

from ingest.deadletter import DeadLetter
from ingest.errors import CommpulseError
from ingest.events import Event
from ingest.validation import rejection_from
from warehouse.schema import scalar

__all__ = [
    "SinkConfig",
    "SinkProgress",
    "SinkResult",
    "commit_batch",
    "decode_record",
    "run_sink",
    "stored_offsets",
]

log = logging.getLogger(__name__)

_COLUMNS: Final = {
    "event_id": pl.String,
    "schema_version": pl.Int16,
    "event_type": pl.String,
    "occurred_at": pl.Float64,
    "channel_id": pl.String,
    "channel_kind": pl.String,
    "scope": pl.String,
    "actor_id": pl.String,
    "actor_role": pl.String,
    "conversation_id": pl.String,
    "message_id": pl.String,
    "in_reply_to": pl.String,
    "recipient_count": pl.Int32,
    "duration_s": pl.Float64,
    "planned_duration_s": pl.Float64,
    "score": pl.Int16,
    "decision": pl.String,
    "category": pl.String,
    "visibility": pl.String,
    "department": pl.String,
    "topic": pl.String,
    "partition": pl.Int32,
    "offset": pl.Int64,
}
_INSERT: Final = (
    "INSERT OR IGNORE INTO raw.events SELECT CAST(event_id AS UUID), schema_version, event_type, "
    "to_timestamp(occurred_at), channel_id, channel_kind, scope, actor_id, actor_role, "
    "conversation_id, message_id, in_reply_to, recipient_count, duration_s, planned_duration_s, "
    'score, decision, category, visibility, department, topic, "partition", "offset", ? '
    "FROM batch"
)


@dataclass(frozen=True)
class SinkConfig:
    bootstrap_servers: str
    topic: str
    dlq_topic: str
    client_options: Mapping[str, Any] = field(default_factory=dict)
    batch_events: int = 50_000
    batch_within_s: float = 2.0


@dataclass
class SinkProgress:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0
    lag: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Events received per second so far."""
        return self.received / max(time.monotonic() - self.started, 1e-9)


@dataclass(frozen=True)
class SinkResult:
    received: int
    stored: int
    duplicates: int
    invalid: int
    seconds: float


class SinkError(CommpulseError):
    """The sink cannot read the events topic."""


def stored_offsets(con: duckdb.DuckDBPyConnection, topic: str) -> dict[int, int]:
    """The next offset to read per partition, as the warehouse last committed it."""
    rows = con.execute(
        'SELECT "partition", next_offset FROM ops.offsets WHERE topic = ?', [topic]
    ).fetchall()
    return {int(p): int(o) for p, o in rows}


def run_sink(
    con: duckdb.DuckDBPyConnection,
    config: SinkConfig,
    *,
    until_caught_up: bool = False,
    stop: threading.Event | None = None,
    on_batch: Callable[[SinkProgress], None] | None = None,
    on_idle: Callable[[SinkProgress], None] | None = None,
) -> SinkResult:
    """Load batches until caught up (or until ``stop`` is set); returns the counts.

    ``on_batch`` is called after every committed batch and ``on_idle`` whenever
    a poll found nothing new (a running sink rebuilds the metrics then).
    """
    stop = stop or threading.Event()
    progress = SinkProgress()
    consumer = KafkaConsumer(
        bootstrap_servers=config.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        **config.client_options,
    )
    producer: KafkaProducer | None = None
    try:
        found = consumer.partitions_for_topic(config.topic)
        if not found:
            raise SinkError(f"topic {config.topic} does not exist: run `commpulse topics` first")
        partitions = [TopicPartition(config.topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        start = stored_offsets(con, config.topic)
        for tp in partitions:
            if tp.partition in start:
                consumer.seek(tp, start[tp.partition])
            else:
                consumer.seek_to_beginning(tp)
        while not stop.is_set():
            rows, invalid, positions = _poll_batch(consumer, config)
            if invalid:
                producer = producer or KafkaProducer(
                    bootstrap_servers=config.bootstrap_servers,
                    acks="all",
                    **config.client_options,
                )
                for letter in invalid:
                    producer.send(config.dlq_topic, letter.raw, headers=letter.headers())
                producer.flush()
            if rows or invalid:
                stored = commit_batch(con, config.topic, rows, len(invalid), positions)
                progress.received += len(rows) + len(invalid)
                progress.stored += stored
                progress.duplicates += len(rows) - stored
                progress.invalid += len(invalid)
                log.info(
                    "batch committed read=%s stored=%s invalid=%s",
                    len(rows) + len(invalid),
                    stored,
                    len(invalid),
                )
            ends = consumer.end_offsets(partitions)
            progress.lag = sum(max(0, ends[tp] - consumer.position(tp)) for tp in partitions)
            if rows or invalid:
                if on_batch:
                    on_batch(progress)
                continue
            if until_caught_up and progress.lag == 0:
                break
            if on_idle:
                on_idle(progress)
    finally:
        consumer.close()
        if producer is not None:
            producer.close()
    return SinkResult(
        progress.received,
        progress.stored,
        progress.duplicates,
        progress.invalid,
        time.monotonic() - progress.started,
    )


def _poll_batch(
    consumer: KafkaConsumer, config: SinkConfig
) -> tuple[list[dict[str, Any]], list[DeadLetter], dict[int, int]]:
    """Up to ``batch_events`` records (or what came within ``batch_within_s``), decoded."""
    rows: list[dict[str, Any]] = []
    invalid: list[DeadLetter] = []
    positions: dict[int, int] = {}
    deadline = time.monotonic() + config.batch_within_s
    while len(rows) + len(invalid) < config.batch_events:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        polled = consumer.poll(
            timeout_ms=int(left * 1000),
            max_records=config.batch_events - len(rows) - len(invalid),
        )
        if not polled:
            break
        for tp, records in polled.items():
            for record in records:
                decoded = decode_record(record.value, tp.topic, tp.partition, record.offset)
                if isinstance(decoded, DeadLetter):
                    invalid.append(decoded)
                else:
                    rows.append(decoded)
            positions[tp.partition] = records[-1].offset + 1
    return rows, invalid, positions


def decode_record(
    value: bytes | None, topic: str, partition: int, offset: int
) -> dict[str, Any] | DeadLetter:
    try:
        event = Event.model_validate_json(value or b"")
    except ValidationError as exc:
        return DeadLetter.of(
            value or b"",
            rejection_from(exc),
            source=f"sink:{topic}/{partition}@{offset}",
            received_at=datetime.now(UTC),
        )
    row = event.model_dump(mode="json")
    row["occurred_at"] = event.occurred_at.timestamp()
    row["topic"], row["partition"], row["offset"] = topic, partition, offset
    return row


def commit_batch(
    con: duckdb.DuckDBPyConnection,
    topic: str,
    rows: list[dict[str, Any]],
    invalid: int,
    positions: dict[int, int],
) -> int:
    """Store a batch and its offsets in one transaction; returns the rows actually stored."""
    batch = pl.DataFrame(rows, schema=_COLUMNS).unique(
        subset="event_id", keep="first", maintain_order=True
    )
    now = datetime.now(UTC)
    con.execute("BEGIN TRANSACTION")
    try:
        before = int(scalar(con, "SELECT count(*) FROM raw.events"))
        if batch.height:
            con.register("batch", batch)
            try:
                con.execute(_INSERT, [now])
            finally:
                con.unregister("batch")
        stored = int(scalar(con, "SELECT count(*) FROM raw.events")) - before
        con.executemany(
            'INSERT INTO ops.offsets (topic, "partition", next_offset, updated_at) '
            'VALUES (?, ?, ?, ?) ON CONFLICT (topic, "partition") DO UPDATE '
            "SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
            [[topic, partition, offset, now] for partition, offset in positions.items()],
        )
        con.execute(
            "INSERT INTO ops.loads VALUES (?, ?, ?, ?, ?)",
            [now, len(rows) + invalid, stored, len(rows) - stored, invalid],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return stored
