"""The sink's feed: batches read from Kafka and decoded in a thread, one batch ahead.

While the sink commits a batch in DuckDB (which lets go of the GIL), the feed reads and
decodes the next one, so the two use both cores. It runs at most one batch ahead of the
commits (a queue of one, plus the batch being decoded); the sink decides alone what is
committed, so a batch read ahead and never taken is simply read again by the next run.

A batch ends when it holds ``batch_events`` records, when ``batch_within_s`` has passed
since it began, or, with ``close_when_caught_up`` (a sink that stops once caught up), as
soon as a poll finds nothing and there is nothing left to read. A round that found no
record at all gives an :class:`Idle`.

An idle feed fetches nothing: with no records left to read it pauses the partitions and
asks only for the end offsets, every :data:`IDLE_POLL_S` (the embedded broker answers an
empty fetch at once, so a fetching consumer at the end of its partitions asks thousands of
times a second).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Self

import polars as pl

from ingest.deadletter import DeadLetter
from warehouse.decode import BatchDecoder
from warehouse.reader import ReaderStopped, TopicReader

__all__ = ["IDLE_POLL_S", "Batch", "Feed", "Idle"]

log = logging.getLogger(__name__)

#: how long an idle feed waits between two looks at the end offsets
IDLE_POLL_S: Final = 0.05
#: how long one look at the end offsets may take; Kafka away, the feed asks again later
_LAG_TIMEOUT_S: Final = 10.0
#: The longest a poll waits for records. Short: a poll at the end of the partitions fetches
#: in a loop on the embedded broker until then; a poll that found nothing is followed by a
#: look at the end offsets, and by another poll if records are left to read.
_POLL_S: Final = 0.02
#: how long closing waits for the thread (it stops within a poll, then closes the client)
_JOIN_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Batch:
    """Decoded records, and where each partition stands after them."""

    rows: pl.DataFrame
    invalid: list[DeadLetter]
    #: partition → next offset to read
    positions: dict[int, int]
    #: records not read yet after this batch (None: Kafka did not say)
    lag: int | None
    #: rows the decoder's fast path proved valid
    fast: int

    @property
    def records(self) -> int:
        return self.rows.height + len(self.invalid)


@dataclass(frozen=True, slots=True)
class Idle:
    """A round that found no record."""

    lag: int | None


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


class Feed:
    """Reads ``topic`` from ``start`` in a thread of its own; :meth:`next` hands out batches.

    ``with`` starts the thread, and on the way out stops it and closes its client.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        start: Mapping[int, int],
        *,
        options: Mapping[str, Any] | None = None,
        batch_events: int = 50_000,
        batch_within_s: float = 2.0,
        close_when_caught_up: bool = False,
    ) -> None:
        self.topic = topic
        self.batch_events = batch_events
        self.batch_within_s = batch_within_s
        self.close_when_caught_up = close_when_caught_up
        self._start = dict(start)
        self._closing = threading.Event()
        self._reader = TopicReader(bootstrap_servers, topic, options, stop=self._closing)
        self._queue: queue.Queue[Batch | Idle | _Failed] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name=f"sink-feed-{topic}", daemon=True)
        self._behind = True  # records may be there to read (not idle)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def next(self, timeout_s: float) -> Batch | Idle | None:
        """The next batch or idle round; None if none came within ``timeout_s``. Raises
        what stopped the feed's thread."""
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            if not self._thread.is_alive() and self._queue.empty():
                raise RuntimeError("the sink's feed stopped") from None
            return None
        if isinstance(item, _Failed):
            raise item.error
        return item

    def close(self) -> None:
        """Stop the thread (it drops what it read ahead) and wait for its client to close."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(_JOIN_S)
            if self._thread.is_alive():
                log.warning("sink: the feed thread did not stop within %s s", _JOIN_S)

    def _run(self) -> None:
        decoder = BatchDecoder()
        try:
            self._reader.open(self._start)
            while not self._closing.is_set():
                values: list[bytes | None] = []
                partitions: list[int] = []
                offsets: list[int] = []
                positions = self._gather(values, partitions, offsets)
                lag = self._reader.lag(_LAG_TIMEOUT_S)
                if not values:
                    self._put(Idle(lag))
                    continue
                decoded = decoder.decode(self.topic, values, partitions, offsets)
                self._put(Batch(decoded.rows, decoded.invalid, positions, lag, decoded.fast))
        except ReaderStopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the sink's thread, raised there
            self._put(_Failed(exc))
        finally:
            self._reader.close()

    def _gather(
        self, values: list[bytes | None], partitions: list[int], offsets: list[int]
    ) -> dict[int, int]:
        """Fill the lists with one batch's records; returns each partition's next offset."""
        positions: dict[int, int] = {}
        deadline = time.monotonic() + self.batch_within_s
        while len(values) < self.batch_events and not self._closing.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self._behind:
                polled = self._reader.poll(self.batch_events - len(values), min(left, _POLL_S))
                for partition, records in polled:
                    values.extend([record.value for record in records])
                    offsets.extend([record.offset for record in records])
                    partitions.extend([partition] * len(records))
                    positions[partition] = records[-1].offset + 1
                if polled:
                    continue
            lag = self._reader.lag(_LAG_TIMEOUT_S)
            if (lag == 0) == self._behind:  # caught up: pause fetching; records came: resume
                self._behind = lag != 0
                (self._reader.resume if self._behind else self._reader.pause)()
            if lag == 0 and self.close_when_caught_up:
                break
            if not self._behind:
                self._closing.wait(min(IDLE_POLL_S, left))
        return positions

    def _put(self, item: Batch | Idle | _Failed) -> None:
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
