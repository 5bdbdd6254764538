"""Send sources of records (files, the simulator) through the ingest producer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from commpulse import signals
from commpulse.kafka import connect, make_producer
from commpulse.settings import Settings
from ingest import BatchResult, DeliveryFailure, IngestCounts, Record
from ingest.order import TimeOrder

__all__ = ["IngestSummary", "Source", "ingest_sources"]

_PROGRESS_EVERY = 2000


class Source(Protocol):
    """Something that yields records and can tell how far it got (``done`` of ``total``)."""

    @property
    def label(self) -> str: ...

    @property
    def done(self) -> int: ...

    @property
    def total(self) -> int: ...

    def records(self) -> Iterator[Record]: ...


@dataclass
class IngestSummary:
    order: TimeOrder
    results: list[tuple[Source, BatchResult]] = field(default_factory=list)
    counts: IngestCounts = field(default_factory=IngestCounts)
    failures: list[DeliveryFailure] = field(default_factory=list)
    seconds: float = 0.0


def ingest_sources(
    settings: Settings,
    sources: Sequence[Source],
    *,
    on_progress: Callable[[Source], None] | None = None,
) -> IngestSummary:
    """Send every record of ``sources``; returns once Kafka acknowledged (or failed) all.

    Each source is one batch: an event id repeated within it is dead-lettered.
    """
    summary = IngestSummary(order=TimeOrder(settings.stream.grace_s))
    started = time.monotonic()
    with connect(settings) as target, make_producer(settings, target) as producer:
        for source in sources:
            ticks = 0

            def tick(source: Source = source) -> None:
                nonlocal ticks
                ticks += 1
                signals.check()  # an interrupt swallowed inside kafka-python is raised again here
                if on_progress is not None and ticks % _PROGRESS_EVERY == 0:
                    on_progress(source)

            result = producer.send_many(
                source.records(),
                on_record=tick,
                on_accepted=summary.order.see,
                keep_rejections=20,
            )
            summary.results.append((source, result))
            if on_progress is not None:
                on_progress(source)
        summary.counts = producer.flush()
        summary.failures = list(producer.failures)
    summary.seconds = time.monotonic() - started
    return summary
