"""The ingest producer: validate, pseudonymise, send, or dead-letter.

Every path into Kafka (HTTP, files, importers, the simulator, the Python API)
goes through :class:`Producer`, so every event is validated and pseudonymised
the same way, and every rejected input reaches the dead-letter topic with its
reason.

Counting: ``received = sent + dead_lettered + failed`` once
:meth:`Producer.flush` has returned. ``sent`` and ``dead_lettered`` count
records Kafka acknowledged (acks=all); ``failed`` counts records it did not
acknowledge after all retries, kept in :attr:`Producer.failures` so that a
caller can report them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaConfigurationError, KafkaError, KafkaTimeoutError
from pydantic_core import PydanticSerializationError

from ingest.codec import encode, kafka_key, timestamp_ms
from ingest.deadletter import DeadLetter
from ingest.errors import ConfigurationError, KafkaUnreachableError
from ingest.events import Event
from ingest.pseudonym import Pseudonymiser
from ingest.validation import RejectCode, Rejection, Validator

__all__ = ["BatchResult", "DeliveryFailure", "IngestCounts", "Producer", "Record", "close_by_force"]

log = logging.getLogger(__name__)

_MAX_KEPT: Final = 1000
#: How long each call into kafka-python waits while flushing with no timeout, in seconds.
_FLUSH_SLICE_S: Final = 0.5
#: After kafka-python could not queue a record within ``max_block_ms`` (Kafka away, its
#: buffer full), records fail at once for this long instead of each waiting as long again.
_REFUSING_S: Final = 1.0
#: kafka-python (3.0.12) can stop answering for the records it holds. Its idempotent sender
#: resets its producer id when a batch it had sent expires (Kafka went away mid-request),
#: and never asks for a new one: from then on it sends nothing and expires nothing, and a
#: flush waits forever, even after Kafka is back. Records still pending this long after
#: the delivery timeout, with no answer for any record meanwhile, are given up as not
#: delivered, and a new kafka-python producer takes the next ones (:meth:`Producer._give_up`).
#: The stall can also begin as the last records it held expire: so a client that lost
#: records is replaced as soon as it holds none (:meth:`Producer._retire_if_troubled`).
_STALL_GRACE_S: Final = 10.0
#: How long the stalled producer's I/O thread gets to fail what it holds, in seconds.
_GIVE_UP_WAIT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Record:
    """One input item and where it came from.

    ``data`` is raw JSON bytes, a mapping (a CSV/Parquet row), an :class:`Event`,
    or a :class:`Rejection` when the reader already knows the input is bad.
    ``raw`` is what goes to the dead-letter topic if it is rejected; it defaults
    to ``data`` itself for bytes and to its JSON for mappings.
    """

    data: bytes | Mapping[str, Any] | Event | Rejection
    source: str = "api"
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    topic: str
    source: str
    event_id: str | None
    error: str


@dataclass(slots=True)
class IngestCounts:
    received: int = 0
    sent: int = 0
    dead_lettered: int = 0
    failed: int = 0
    pending: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def copy(self) -> IngestCounts:
        return IngestCounts(
            self.received, self.sent, self.dead_lettered, self.failed, self.pending,
            Counter(self.by_reason),
        )  # fmt: skip


@dataclass(slots=True)
class BatchResult:
    """What happened to one batch (one HTTP request, one file)."""

    received: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    #: of ``dead_lettered``: event ids that came earlier in the batch
    duplicates: int = 0
    failed: int = 0
    rejections: list[tuple[int, str, Rejection]] = field(default_factory=list)
    #: ``(index, event id)`` of each input Kafka did not take (with ``wait``); the id is
    #: None for a rejected input whose dead letter did not arrive
    undelivered: list[tuple[int, str | None]] = field(default_factory=list)


class Producer:
    """Validating, pseudonymising Kafka producer (kafka-python, acks=all, idempotent).

    Constructing it does no I/O; :meth:`start` (or ``with``) connects.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        events_topic: str,
        dlq_topic: str,
        pseudonymiser: Pseudonymiser,
        validator: Validator | None = None,
        client_options: Mapping[str, Any] | None = None,
        linger_ms: int = 20,
        batch_size: int = 256 * 1024,
        delivery_timeout_ms: int = 120_000,
        max_block_ms: int = 30_000,
        dedupe_window: int = 1_000_000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not bootstrap_servers:
            raise ConfigurationError("no Kafka bootstrap servers given")
        self.events_topic = events_topic
        self.dlq_topic = dlq_topic
        self.validator = validator or Validator()
        self._pseudonymiser = pseudonymiser
        self._dedupe_window = dedupe_window
        self._clock = clock or (lambda: datetime.now(UTC))
        self._config: dict[str, Any] = {
            **(client_options or {}),
            "bootstrap_servers": bootstrap_servers,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "batch_size": batch_size,
            "delivery_timeout_ms": delivery_timeout_ms,
            "max_block_ms": max_block_ms,
        }
        self._delivery_timeout_s = delivery_timeout_ms / 1000
        self._kafka: KafkaProducer | None = None
        self._started = False
        self._lock = threading.Lock()
        self._counts = IngestCounts()
        self.failures: list[DeliveryFailure] = []
        self._refusing_until = 0.0  # time.monotonic(); see _REFUSING_S
        # Each kafka-python producer in turn is a generation (see _STALL_GRACE_S): what each
        # holds (together: the counts' ``pending``), and which were given up, whose late
        # answers no longer count.
        self._generation = 0
        self._pending_of: Counter[int] = Counter()
        self._given_up: set[int] = set()
        self._troubled: set[int] = set()  # generations whose client lost a record
        self._giving_up: int | None = None
        self._last_answer = time.monotonic()  # or hand-over: the last sign of progress

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        if self._kafka is None:
            try:
                self._kafka = KafkaProducer(**self._config)
            except KafkaConfigurationError as exc:
                raise ConfigurationError(f"Kafka producer settings: {exc}") from exc
            except KafkaError as exc:
                servers = self._config["bootstrap_servers"]
                raise KafkaUnreachableError(f"cannot reach Kafka at {servers}: {exc}") from exc
            # the version learned: a producer replacing a stalled one starts without Kafka
            self._config.setdefault("api_version", self._kafka.config["api_version"])
        self._started = True
        return self

    def flush(self, timeout: float | None = None) -> IngestCounts:
        """Wait until every record handed over is acknowledged or failed.

        With no ``timeout`` it waits as long as that takes (each record is delivered
        or fails within the delivery timeout), in short calls into kafka-python: a
        signal handler that waits for kafka-python to return (as commpulse's does)
        then acts within one of them.
        """
        if timeout is not None:
            if self._kafka is not None:
                self._kafka.flush(timeout=timeout)
            return self.counts
        while (kafka := self._kafka) is not None:
            try:
                kafka.flush(timeout=_FLUSH_SLICE_S)
            except KafkaTimeoutError:
                self._give_up_if_stalled()
                continue
            break
        return self.counts

    def close(self, timeout: float = 30.0) -> IngestCounts:
        """Deliver what was handed over and close, all within ``timeout`` seconds."""
        kafka, self._kafka = self._kafka, None
        self._started = False
        if kafka is not None:
            deadline = time.monotonic() + timeout
            try:
                kafka.flush(timeout=timeout)
            finally:
                # KafkaProducer.close flushes first too: after a flush that timed out,
                # a full timeout there would double the wait
                kafka.close(timeout=max(deadline - time.monotonic(), 0.0))
        return self.counts

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def counts(self) -> IngestCounts:
        with self._lock:
            counts = self._counts.copy()
            counts.pending = self._pending_of.total()
        return counts

    # -- sending -----------------------------------------------------------

    def send(
        self, item: bytes | Mapping[str, Any] | Event, *, source: str = "api"
    ) -> Event | Rejection:
        """Send one input; returns the event as sent, or why it was dead-lettered."""
        return self._send_one(Record(item, source), None)

    def send_many(
        self,
        records: Iterable[Record],
        *,
        wait: bool = False,
        keep_rejections: int = 100,
        on_record: Callable[[], None] | None = None,
        on_accepted: Callable[[Event, Record], object] | None = None,
    ) -> BatchResult:
        """Send a batch. An event id that came earlier in the batch is dead-lettered.

        Such a duplicate is dropped from the events topic and kept, with the place of the
        first, in the dead-letter topic (code ``duplicate_event_id``): a retransmission
        is harmless there, and an event that reuses another's id is not lost.

        With ``wait`` the call returns only once Kafka acknowledged (or failed)
        every record of the batch, and ``failed`` tells how many it did not.
        ``on_accepted`` sees each event handed to Kafka (pseudonymised), with its record.
        """
        result = BatchResult()
        seen: dict[Any, str] = {}
        futures: list[Any] | None = [] if wait else None
        owners: list[tuple[int, str | None]] = []  # whose record each future is
        for index, record in enumerate(records):
            result.received += 1
            outcome = self._send_one(record, seen, futures)
            if futures is not None and len(futures) > len(owners):
                owners.append(
                    (index, str(outcome.event_id) if isinstance(outcome, Event) else None)
                )
            if isinstance(outcome, Rejection):
                result.dead_lettered += 1
                result.duplicates += outcome.code is RejectCode.DUPLICATE_EVENT_ID
                if len(result.rejections) < keep_rejections:
                    result.rejections.append((index, record.source, outcome))
            else:
                result.accepted += 1
                if on_accepted is not None:
                    on_accepted(outcome, record)
            if on_record is not None:
                on_record()
        for owner, future in zip(owners, futures or (), strict=True):
            if not self._delivered(future):
                result.failed += 1
                if len(result.undelivered) < keep_rejections:
                    result.undelivered.append(owner)
        return result

    def _send_one(
        self, record: Record, seen: dict[Any, str] | None, futures: list[Any] | None = None
    ) -> Event | Rejection:
        self._require_started()
        data = record.data
        context = self._pseudonymiser.context  # pseudonymises while validating
        if isinstance(data, bytes):
            outcome = self.validator.from_json(data, context)
        elif isinstance(data, Event):
            outcome = self.validator.check_time(self._pseudonymiser.apply(data))
        elif isinstance(data, Rejection):
            outcome = data
        else:
            outcome = self.validator.from_mapping(data, context)

        value = b""
        if isinstance(outcome, Event):
            event = outcome
            try:
                value = encode(event)
            except (PydanticSerializationError, UnicodeError):  # lone surrogates from a mapping
                outcome = Rejection(
                    RejectCode.INVALID_ENCODING, "a text field is not valid Unicode"
                )
            else:
                # Raw JSON was size-checked before parsing; other inputs are checked here.
                outcome = (
                    event
                    if isinstance(data, bytes)
                    else self.validator.oversized(len(value)) or event
                )

        if isinstance(outcome, Event) and seen is not None:
            first = seen.get(outcome.event_id)
            if first is not None:
                outcome = Rejection(
                    RejectCode.DUPLICATE_EVENT_ID,
                    f"event_id {outcome.event_id} came earlier in this batch, at {first}",
                )
            else:
                seen[outcome.event_id] = record.source
                if len(seen) > self._dedupe_window:
                    del seen[next(iter(seen))]

        if isinstance(outcome, Rejection):
            self._dead_letter(record, outcome, futures)
            return outcome

        with self._lock:
            self._counts.received += 1
        self._hand_over(
            self.events_topic,
            record.source,
            str(outcome.event_id),
            futures,
            self._on_sent,
            value=value,
            key=kafka_key(outcome),
            timestamp_ms=timestamp_ms(outcome),
        )
        return outcome

    def _dead_letter(self, record: Record, rejection: Rejection, futures: list[Any] | None) -> None:
        raw = record.raw if record.raw is not None else _raw_of(record.data)
        letter = DeadLetter.of(raw, rejection, source=record.source, received_at=self._clock())
        with self._lock:
            self._counts.received += 1
            self._counts.by_reason[rejection.code.value] += 1
        log.debug("dead-letter source=%s reason=%s", record.source, rejection)
        self._hand_over(
            self.dlq_topic, record.source, None, futures, self._on_dead_lettered,
            value=letter.raw, headers=letter.headers(),
        )  # fmt: skip

    def _hand_over(
        self,
        topic: str,
        source: str,
        event_id: str | None,
        futures: list[Any] | None,
        on_success: Callable[[int, object], None],
        **record: Any,
    ) -> None:
        """Give one record to kafka-python; a refusal counts as not delivered.

        ``futures`` gets ``(generation, future)``, or ``(generation, error)`` for a refusal.
        """
        with self._lock:
            retired = self._retire_if_troubled()
            generation = self._generation
            self._pending_of[generation] += 1
        if retired is not None:
            close_by_force(retired, 0)
        try:
            if time.monotonic() < self._refusing_until:
                raise KafkaTimeoutError("Kafka took no record within max_block_ms just before")
            if self._kafka is None:  # the last one was given up or retired
                self._kafka = KafkaProducer(**self._config)
            future = self._kafka.send(topic, **record)
        except KafkaError as exc:  # e.g. no metadata within max_block_ms: Kafka unreachable
            if isinstance(exc, KafkaTimeoutError):
                self._refusing_until = max(self._refusing_until, time.monotonic() + _REFUSING_S)
            self._on_failed(generation, topic, source, event_id, exc)
            if futures is not None:
                futures.append((generation, exc))
            return
        self._last_answer = time.monotonic()
        future.add_callback(on_success, generation)
        future.add_errback(self._on_lost, generation, topic, source, event_id)
        if futures is not None:
            futures.append((generation, future))

    def _delivered(self, sent: tuple[int, Any]) -> bool:
        """Whether Kafka took the record of a ``(generation, future)`` send_many waits for."""
        generation, future = sent
        if isinstance(future, KafkaError):  # refused before it was queued
            return False
        while not future.is_done:
            try:
                future.get(timeout=_FLUSH_SLICE_S)
            except KafkaTimeoutError:
                self._give_up_if_stalled()
                if generation in self._given_up and not future.is_done:
                    return False  # counted as failed when it was given up
            except Exception:  # noqa: BLE001 - counted (and logged) by the errback too
                return False
        return bool(future.succeeded())

    # -- a stalled kafka-python producer (see _STALL_GRACE_S) --------------

    def _retire_if_troubled(self) -> KafkaProducer | None:
        """The client, once it lost a record and holds none, for closing (locked)."""
        generation = self._generation
        if self._kafka is None or generation not in self._troubled or self._pending_of[generation]:
            return None
        retired, self._kafka = self._kafka, None
        self._generation += 1
        return retired

    def _give_up_if_stalled(self) -> None:
        with self._lock:
            pending = self._pending_of.total()
        silent = time.monotonic() - self._last_answer
        if pending and silent > self._delivery_timeout_s + _STALL_GRACE_S:
            self._give_up(silent)

    def _give_up(self, silent: float) -> None:
        """Fail what the kafka-python producer holds, and let a new one take the next records.

        Its I/O thread, closed by force, fails every record it holds (the errbacks count
        them); what it has not failed within ``_GIVE_UP_WAIT_S`` is counted here.
        """
        kafka, self._kafka = self._kafka, None
        if kafka is None:
            return
        with self._lock:
            generation, self._giving_up = self._generation, self._generation
            self._generation += 1
            held = self._pending_of[generation]
        log.warning(
            "Kafka answered for no record in %.3g s (delivery timeout %g s) while %s were "
            "pending: the Kafka client stopped; they are counted as not delivered, and a new "
            "client takes the next records", silent, self._delivery_timeout_s, held,
        )  # fmt: skip
        close_by_force(kafka, _GIVE_UP_WAIT_S)
        with self._lock:
            self._given_up.add(generation)
            self._giving_up = None
            self._counts.failed += self._pending_of.pop(generation, 0)
        self._last_answer = time.monotonic()

    # -- delivery callbacks (run on kafka-python's I/O thread) ------------

    def _on_sent(self, generation: int, _metadata: object) -> None:
        with self._lock:
            if self._answered(generation):
                self._counts.sent += 1

    def _on_dead_lettered(self, generation: int, _metadata: object) -> None:
        with self._lock:
            if self._answered(generation):
                self._counts.dead_lettered += 1

    def _answered(self, generation: int) -> bool:
        """One of ``generation``'s records was answered; whether it still counts (locked)."""
        if generation in self._given_up:
            return False
        self._pending_of[generation] -= 1
        self._last_answer = time.monotonic()
        return True

    def _on_lost(
        self, generation: int, topic: str, source: str, event_id: str | None, exc: BaseException
    ) -> None:
        """The client failed a record it had taken (unlike a refusal at hand-over)."""
        with self._lock:
            self._troubled.add(generation)
        self._on_failed(generation, topic, source, event_id, exc)

    def _on_failed(
        self, generation: int, topic: str, source: str, event_id: str | None, exc: BaseException
    ) -> None:
        with self._lock:
            if not self._answered(generation):
                return
            if generation == self._giving_up:
                exc = KafkaTimeoutError(
                    f"no answer from Kafka within the delivery timeout "
                    f"({self._delivery_timeout_s:g} s); the Kafka client had stopped"
                )
            first = not self._counts.failed
            self._counts.failed += 1
            if len(self.failures) < _MAX_KEPT:
                self.failures.append(DeliveryFailure(topic, source, event_id, _described(exc)))
        (log.warning if first else log.debug)(
            "not delivered topic=%s source=%s event_id=%s error=%s%s",
            topic, source, event_id, exc, " (further failures are counted, not logged)" if first else "",
        )  # fmt: skip

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("Producer.start() was not called")


def _raw_of(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        if isinstance(data, Event):
            return encode(data)
        return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, PydanticSerializationError, UnicodeError):
        return repr(data).encode("utf-8", "backslashreplace")


def close_by_force(kafka: KafkaProducer, wait_s: float) -> None:
    """Close a kafka-python producer now: it fails every record it holds (their errbacks
    run) within ``wait_s`` seconds, unless its I/O thread is stuck.

    kafka-python's own ``close(timeout=0)`` flushes first, and raises while it holds records.
    """
    sender = getattr(kafka, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(wait_s)
    try:
        kafka.close(timeout=0)
    except KafkaError:
        log.debug("closing a Kafka producer by force", exc_info=True)


def _described(error: BaseException) -> str:
    """``Type: message``, once (kafka-python's errors already start with their type)."""
    text, kind = str(error), type(error).__name__
    return text if text.startswith(f"{kind}:") else f"{kind}: {text}"
