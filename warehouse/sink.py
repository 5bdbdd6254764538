"""The exactly-once sink: events topic → ``raw.events``, offsets in the same transaction.

The sink reads every partition of the events topic with no consumer group:
where to start is the warehouse's own business. Each batch's new rows and the
next offset of every partition it read commit in one DuckDB transaction, so a
crash at any moment leaves the warehouse at a batch boundary, and a restart
goes on from exactly there. ``event_id`` is the primary key: an event that was
sent twice (a producer retry, a file ingested twice) is stored once.

Reading and decoding run ahead in threads of their own (:mod:`warehouse.feed`: aiokafka
through :mod:`warehouse.reader`, the batch decoder of :mod:`warehouse.decode`), and hand
each batch over in parts; the sink inserts each part as it comes, inside the batch's one
transaction, while the next part is read and decoded. The transactions, and everything that
touches the warehouse, stay in the caller's thread.

A record that does not decode to a valid event goes to the dead-letter topic
with the reason (before the batch commits, so nothing is lost) and is counted
in ``ops.loads``.

Derived tables (``derive``): a caught-up sink (the batch leaves less than a batch
unread) brings the core and metrics tables up to each batch inside the batch's own
transaction, so rows, offsets and facts commit together; while it catches up on a
backlog, batches load alone and the first batch near the end derives for all of
them. ``loaded_at`` strictly increases from batch to batch (a build reads the events
loaded after the last one it covered), even if the clock steps back.

The quality gate (``quality_gate = "quarantine"``): a :class:`BatchCheck` looks
at each batch before it commits; a batch it refuses is quarantined whole. Its
rows go to ``ops.quarantine`` with the reason instead of ``raw.events``, and
its offsets advance in the same transaction, as for a loaded batch: it is
kept and reported, never read again, never half loaded.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

import duckdb
import orjson
import polars as pl
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from ingest.deadletter import DeadLetter
from ingest.producer import close_by_force
from warehouse.decode import COLUMNS, decode_record
from warehouse.feed import PART_EVENTS, Batch, Feed, Idle
from warehouse.reader import SinkError
from warehouse.schema import scalar

__all__ = [
    "BatchCheck",
    "BatchOutcome",
    "Derive",
    "LoadClock",
    "SinkConfig",
    "SinkError",
    "SinkProgress",
    "SinkResult",
    "commit_batch",
    "decode_record",
    "run_sink",
    "store_batch",
    "stored_offsets",
]

log = logging.getLogger(__name__)

#: how long the sink waits for the feed before it looks at ``stop`` again
_WAIT_S: Final = 0.1
#: How long Kafka gets to acknowledge a batch's dead letters before they are sent again.
_DLQ_DELIVERY_S: Final = 30.0

_COLUMNS: Final = COLUMNS
_INSERT: Final = (
    "INSERT OR IGNORE INTO raw.events SELECT CAST(event_id AS UUID), schema_version, event_type, "
    "to_timestamp(occurred_at), channel_id, channel_kind, scope, actor_id, actor_role, "
    "conversation_id, message_id, in_reply_to, recipient_count, duration_s, planned_duration_s, "
    'score, decision, category, visibility, department, topic, "partition", "offset", ? '
    "FROM batch"
)

#: the same for events known not to be stored yet (a stored one makes it fail)
_INSERT_NEW: Final = _INSERT.replace("INSERT OR IGNORE INTO", "INSERT INTO", 1)

_QUARANTINE: Final = (
    "INSERT INTO ops.quarantine SELECT ?, ?, ?, event_id, CAST(payload AS JSON), topic, "
    '"partition", "offset" FROM quarantined'
)
_TRANSPORT: Final = ("topic", "partition", "offset")


class BatchCheck(Protocol):
    """Judges a batch before it commits (the quality gate; see :mod:`quality.gate`)."""

    def __call__(self, batch: pl.DataFrame, now: datetime) -> str | None:
        """Why ``batch`` (decoded rows, ``occurred_at`` in epoch seconds) must be
        quarantined when loaded at ``now``, or None when it may load."""


@dataclass(frozen=True)
class SinkConfig:
    bootstrap_servers: str
    topic: str
    dlq_topic: str
    client_options: Mapping[str, Any] = field(default_factory=dict)
    batch_events: int = 50_000
    batch_within_s: float = 2.0
    #: a batch reaches the sink in parts of this many records (see :mod:`warehouse.feed`)
    part_events: int = PART_EVENTS
    #: "quarantine": ``batch_check`` judges every batch, and a refused one is quarantined
    quality_gate: Literal["off", "quarantine"] = "off"
    batch_check: BatchCheck | None = None

    def __post_init__(self) -> None:
        if self.quality_gate == "quarantine" and self.batch_check is None:
            raise ValueError('quality_gate "quarantine" needs a batch_check')


@dataclass
class SinkProgress:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0
    quarantined: int = 0
    lag: int = 0
    #: whether the last batch's transaction also brought the derived tables up to it
    derived: bool = False
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
    #: from the start until the sink stopped loading (closing its Kafka client not counted)
    seconds: float
    #: valid events of batches the quality gate quarantined
    quarantined: int = 0


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one batch's valid rows."""

    stored: int
    duplicates: int
    quarantined: int = 0
    #: why the batch was quarantined (None: it loaded)
    reason: str | None = None


def stored_offsets(con: duckdb.DuckDBPyConnection, topic: str) -> dict[int, int]:
    """The next offset to read per partition, as the warehouse last committed it."""
    rows = con.execute(
        'SELECT "partition", next_offset FROM ops.offsets WHERE topic = ?', [topic]
    ).fetchall()
    return {int(p): int(o) for p, o in rows}


#: what a batch's transaction runs before it commits (the derived tables' build)
Derive = Callable[[duckdb.DuckDBPyConnection], None]


def run_sink(
    con: duckdb.DuckDBPyConnection,
    config: SinkConfig,
    *,
    until_caught_up: bool = False,
    stop: threading.Event | None = None,
    on_batch: Callable[[SinkProgress], None] | None = None,
    on_idle: Callable[[SinkProgress], None] | None = None,
    derive: Derive | None = None,
) -> SinkResult:
    """Load batches until caught up (or until ``stop`` is set); returns the counts.

    ``derive`` runs inside the transaction of every batch that leaves less than a batch
    unread (see the module docstring; ``progress.derived`` says whether the last batch did).
    ``on_batch`` is called after every committed batch, ``on_idle`` whenever a poll found
    nothing new. Batches are read and decoded ahead, in threads (:mod:`warehouse.feed`),
    and come in parts; each batch is one transaction here, in the caller's thread, and a
    sink stopped inside a batch commits none of it.

    ``seconds`` in the result runs until the sink stopped loading: closing the Kafka client
    afterwards is not counted (nor is it in the bench's consume baselines).
    """
    stop = stop or threading.Event()
    progress = SinkProgress()
    check = config.batch_check if config.quality_gate == "quarantine" else None
    producer: KafkaProducer | None = None
    loaded = LoadClock(con)
    threads = int(scalar(con, "SELECT current_setting('threads')"))
    feed = Feed(
        config.bootstrap_servers,
        config.topic,
        stored_offsets(con, config.topic),
        options=config.client_options,
        batch_events=config.batch_events,
        batch_within_s=config.batch_within_s,
        close_when_caught_up=until_caught_up,
        part_events=config.part_events,
    )
    pending: _Pending | None = None
    with feed:
        try:
            while not stop.is_set():
                item = feed.next(_WAIT_S)
                if item is None:
                    continue
                if item.lag is not None:
                    progress.lag = item.lag
                if isinstance(item, Idle):
                    if until_caught_up and item.lag == 0:
                        break
                    if on_idle:
                        on_idle(progress)
                    continue
                if item.invalid:
                    producer = dead_letter(producer, config, item.invalid, stop)
                    if producer is None:  # stopped before the DLQ had them: commit nothing
                        break
                pending = pending or _Pending(con, config.topic, check, loaded(), threads)
                pending.add(item)
                if not item.ends:
                    continue
                live = (
                    derive is not None and item.lag is not None and item.lag < config.batch_events
                )
                batch, pending = pending, None
                batch.commit(progress, derive if live else None)
                progress.derived = live
                if on_batch:
                    on_batch(progress)
                if until_caught_up and item.lag == 0:
                    break
        finally:
            loading = time.monotonic() - progress.started
            if pending is not None:  # stopped inside a batch: none of it is committed
                pending.abandon()
            if producer is not None:
                producer.close()
    return SinkResult(
        progress.received,
        progress.stored,
        progress.duplicates,
        progress.invalid,
        loading,
        progress.quarantined,
    )


class LoadClock:
    """``loaded_at`` for the next batch: now, but always after the last batch's."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        last = scalar(con, "SELECT max(loaded_at) FROM ops.loads")
        self._last: datetime | None = last

    def __call__(self) -> datetime:
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now


class _Pending:
    """A batch's transaction while its parts come from the feed.

    Each part is inserted as it comes (DuckDB lets go of the GIL while the feed reads the
    next), with one DuckDB thread fewer (see :meth:`_fewer_threads`); :meth:`commit`
    adds the offsets, the load's row and the build, and commits. A batch the quality gate
    must judge, or one holding an event stored before (the plain INSERT fails), is stored
    whole at the end instead, by :func:`store_batch`, as one frame.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        topic: str,
        check: BatchCheck | None,
        now: datetime,
        threads: int,
    ) -> None:
        self._con, self._topic, self._check, self._now = con, topic, check, now
        self._threads = threads
        self._parts: list[Batch] = []
        self._open = False
        self._lowered = False  # DuckDB runs with one thread fewer
        self._whole = check is not None  # stored whole at the end
        self._stored = 0

    def add(self, part: Batch) -> None:
        self._parts.append(part)
        if self._whole or not part.rows.height:
            return
        if not self._open:
            self._fewer_threads(True)
            self._con.execute("BEGIN TRANSACTION")
            self._open = True
        try:
            self._stored += _insert(self._con, part.rows, self._now, ignore_stored=False)
        except duckdb.ConstraintException:
            log.debug("batch holds events stored before; storing it whole at the end")
            self._whole = True
            self.abandon()

    def commit(self, progress: SinkProgress, derive: Derive | None) -> None:
        parts = self._parts
        valid = sum(part.rows.height for part in parts)
        invalid = sum(len(part.invalid) for part in parts)
        positions = {p: o for part in parts for p, o in part.positions.items()}
        if self._whole:
            rows = pl.concat([part.rows for part in parts]) if len(parts) > 1 else parts[0].rows
            self._fewer_threads(derive is None)  # a build: both of DuckDB's threads
            try:
                outcome = store_batch(
                    self._con, self._topic, rows, invalid, positions,
                    check=self._check, now=self._now, derive=derive,
                )  # fmt: skip
            finally:
                self._fewer_threads(False)
        else:
            if not self._open:  # no valid row in the batch: offsets and the load's row only
                self._con.execute("BEGIN TRANSACTION")
                self._open = True
            if derive is not None:
                self._fewer_threads(False)  # a build: both of DuckDB's threads
            outcome = BatchOutcome(self._stored, valid - self._stored)
            try:
                _finish(self._con, self._topic, valid + invalid, outcome, invalid,
                        positions, self._now, derive)  # fmt: skip
            finally:
                self._open = False
                self._fewer_threads(False)
        progress.received += valid + invalid
        progress.stored += outcome.stored
        progress.duplicates += outcome.duplicates
        progress.invalid += invalid
        progress.quarantined += outcome.quarantined
        log.info(
            "batch committed read=%s stored=%s invalid=%s quarantined=%s fast=%s",
            valid + invalid,
            outcome.stored,
            invalid,
            outcome.quarantined,
            sum(part.fast for part in parts),
        )

    def abandon(self) -> None:
        """Roll back what was inserted (the sink stopped inside the batch, or a clash)."""
        if self._open:
            self._open = False
            try:
                self._con.execute("ROLLBACK")
            finally:
                self._fewer_threads(False)

    def _fewer_threads(self, fewer: bool) -> None:
        """DuckDB with one thread fewer (``fewer``) or all of them again, leaving a core to
        the feed while DuckDB inserts and commits.

        Measured on 2 cores (200,000 events, the embedded broker, 4 alternating runs each):
        a median of 62,600 events/s with DuckDB's 2 threads, 82,200 with 1. The insert gains
        nothing from a second thread, and the feed (with polars' threads) then had no core.
        The setting changes only when it must: each statement costs a few milliseconds
        while the feed holds the GIL (see :func:`_store`).
        """
        if self._threads > 1 and fewer != self._lowered:
            self._con.execute(f"SET threads = {self._threads - 1 if fewer else self._threads}")
            self._lowered = fewer


def dead_letter(
    producer: KafkaProducer | None,
    config: SinkConfig,
    letters: list[DeadLetter],
    stop: threading.Event,
) -> KafkaProducer | None:
    """Put ``letters`` in the dead-letter topic before their batch is committed.

    Until Kafka acknowledged every one, they are sent again (with a new producer: a
    kafka-python producer can stall for good after a broker restart, see
    ingest/producer.py); a letter may then be there twice, never missing. Returns the
    producer to use next, or None once ``stop`` was set first.
    """
    while not stop.is_set():
        try:
            producer = producer or KafkaProducer(
                **{
                    "delivery_timeout_ms": int(_DLQ_DELIVERY_S * 1000),
                    "request_timeout_ms": int(_DLQ_DELIVERY_S * 500),
                    **config.client_options,
                    "bootstrap_servers": config.bootstrap_servers,
                    "acks": "all",
                }
            )
            futures = [
                producer.send(config.dlq_topic, letter.raw, headers=letter.headers())
                for letter in letters
            ]
            deadline = time.monotonic() + _DLQ_DELIVERY_S + 10
            while not stop.is_set():
                try:
                    producer.flush(timeout=1)
                except KafkaTimeoutError:
                    if time.monotonic() < deadline:
                        continue
                    raise
                for future in futures:
                    future.get(timeout=0)
                return producer
        except KafkaError as exc:
            log.warning(
                "sink: %s invalid records not in %s yet (%s); sending them again",
                len(letters), config.dlq_topic, exc,
            )  # fmt: skip
            if producer is not None:
                close_by_force(producer, 10)
            producer = None
            stop.wait(1)
    if producer is not None:
        close_by_force(producer, 10)
    return None


def commit_batch(
    con: duckdb.DuckDBPyConnection,
    topic: str,
    rows: pl.DataFrame | list[dict[str, Any]],
    invalid: int,
    positions: dict[int, int],
    *,
    check: BatchCheck | None = None,
) -> int:
    """Store a batch and its offsets in one transaction; returns the rows actually stored."""
    return store_batch(con, topic, rows, invalid, positions, check=check).stored


def store_batch(
    con: duckdb.DuckDBPyConnection,
    topic: str,
    rows: pl.DataFrame | list[dict[str, Any]],
    invalid: int,
    positions: dict[int, int],
    *,
    check: BatchCheck | None = None,
    now: datetime | None = None,
    derive: Derive | None = None,
) -> BatchOutcome:
    """Store a batch (or, if ``check`` refuses it, quarantine it) and its offsets, in one
    transaction; ``invalid`` counts the records of the batch that were dead-lettered.
    ``derive`` runs in that transaction after them (a build of the derived tables), so
    all commit together or none; ``now`` is the batch's ``loaded_at`` (default: the clock).

    ``rows`` are decoded events: a frame with the columns of :data:`warehouse.decode.COLUMNS`
    (what the feed gives), or dicts as :func:`decode_record` makes them."""
    batch = _frame(rows)
    now = now or datetime.now(UTC)
    reason = check(batch, now) if check is not None and batch.height else None
    store = functools.partial(_store, con, topic, batch, invalid, positions, now, reason, derive)
    try:
        outcome = store(ignore_stored=False)
    except duckdb.ConstraintException:
        # An event of the batch is stored already (sent twice, or a replay): the same
        # transaction again, leaving out the events that are there.
        log.debug("batch holds events stored before; storing the new ones")
        outcome = store(ignore_stored=True)
    if reason is not None:
        log.warning("batch quarantined events=%s reason=%s", batch.height, reason)
    return outcome


def _store(
    con: duckdb.DuckDBPyConnection,
    topic: str,
    batch: pl.DataFrame,
    invalid: int,
    positions: dict[int, int],
    now: datetime,
    reason: str | None,
    derive: Derive | None,
    *,
    ignore_stored: bool,
) -> BatchOutcome:
    """The batch's transaction. Without ``ignore_stored`` it raises ConstraintException (and
    rolls back) if an event of the batch is stored already.

    As few statements as it takes: while the feed's thread runs Python, each DuckDB statement
    waits for the GIL (measured: 5 ms for ``SELECT current_setting(...)``, 0.3 ms alone; 56
    ms for the offsets of 8 partitions as ``executemany``, one statement here).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        if reason is None:
            stored = _insert(con, batch, now, ignore_stored=ignore_stored)
            outcome = BatchOutcome(stored, batch.height - stored)
        else:
            _quarantine(con, batch, now, reason)
            outcome = BatchOutcome(0, 0, batch.height, reason)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    _finish(con, topic, batch.height + invalid, outcome, invalid, positions, now, derive)
    return outcome


def _finish(
    con: duckdb.DuckDBPyConnection,
    topic: str,
    received: int,
    outcome: BatchOutcome,
    invalid: int,
    positions: dict[int, int],
    now: datetime,
    derive: Derive | None,
) -> None:
    """The end of a batch's transaction, its rows inserted: the offsets, the load's row in
    ``ops.loads``, the build, COMMIT (ROLLBACK if any fails)."""
    try:
        if positions:
            con.execute(
                'INSERT INTO ops.offsets (topic, "partition", next_offset, updated_at) VALUES '
                + ", ".join(["(?, ?, ?, ?)"] * len(positions))
                + ' ON CONFLICT (topic, "partition") DO UPDATE '
                "SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
                [
                    v
                    for partition, offset in positions.items()
                    for v in (topic, partition, offset, now)
                ],
            )
        con.execute(
            "INSERT INTO ops.loads (loaded_at, received, stored, duplicates, invalid, quarantined) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [now, received, outcome.stored, outcome.duplicates, invalid, outcome.quarantined],
        )
        if derive is not None:
            derive(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _frame(rows: pl.DataFrame | list[dict[str, Any]]) -> pl.DataFrame:
    """The batch as a frame with exactly the columns and dtypes of ``_COLUMNS``."""
    if not isinstance(rows, pl.DataFrame):
        return pl.DataFrame(rows, schema=_COLUMNS)
    if rows.schema != _COLUMNS:
        raise ValueError(f"a batch frame needs the columns {dict(_COLUMNS)}, got {rows.schema}")
    return rows


def _insert(
    con: duckdb.DuckDBPyConnection, batch: pl.DataFrame, now: datetime, *, ignore_stored: bool
) -> int:
    """Insert the batch's new events (one row per event id); returns how many were new.

    Without ``ignore_stored`` a plain INSERT, which fails (ConstraintException) if an event
    is stored already, so that every row of the batch is new; with it, INSERT OR IGNORE,
    and the rows counted. The plain one takes less than half the time (0.07 against 0.18 s
    for 50,000 events, measured), and a batch seldom holds a stored event.
    """
    batch = batch.unique(subset="event_id", keep="first", maintain_order=True)
    if not batch.height:
        return 0
    before = int(scalar(con, "SELECT count(*) FROM raw.events")) if ignore_stored else 0
    con.register("batch", batch)
    # a failure aborts the transaction; its ROLLBACK drops the view (unregister would fail)
    con.execute(_INSERT if ignore_stored else _INSERT_NEW, [now])
    con.unregister("batch")
    if not ignore_stored:
        return batch.height
    return int(scalar(con, "SELECT count(*) FROM raw.events")) - before


def _quarantine(
    con: duckdb.DuckDBPyConnection, batch: pl.DataFrame, now: datetime, reason: str
) -> None:
    """Every row of the batch into ``ops.quarantine``: the event as JSON, and where it sat."""
    fields = [column for column in batch.columns if column not in _TRANSPORT]
    payloads = [
        orjson.dumps(
            {**event, "occurred_at": datetime.fromtimestamp(event["occurred_at"], UTC)}
        ).decode()
        for event in batch.select(fields).iter_rows(named=True)
    ]
    quarantined = batch.select("event_id", *_TRANSPORT).with_columns(
        pl.Series("payload", payloads, dtype=pl.String)
    )
    con.register("quarantined", quarantined)
    try:
        con.execute(_QUARANTINE, [uuid.uuid4(), now, reason])
    finally:
        con.unregister("quarantined")
