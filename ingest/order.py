"""Events a stream worker would find late: more than its grace older than an earlier one.

The stream worker follows each channel's event time and drops an event more
than its grace older than the latest event of its channel it has seen
(docs/streams.md, "Late events"); the warehouse keeps it. :class:`TimeOrder`
watches the events an ingest path accepts, in the order it sends them, so
that the sender hears about such events when they are sent, not only from the
worker's ``late_dropped`` count.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ingest.events import Event
from ingest.producer import Record

__all__ = ["TimeOrder", "describe_late"]


@dataclass
class TimeOrder:
    """Events more than ``tolerance_s`` older than an event of their channel sent before them.

    Counted over the tracker's life (one run of ``ingest``, or an HTTP ingest
    server since it started), across its sources. Safe to share between threads.
    """

    tolerance_s: float
    behind: int = 0
    #: where the first such event came from
    first: str | None = None
    _latest: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def see(self, event: Event, record: Record) -> bool:
        """Note an accepted event; whether it is one of those counted."""
        t = event.occurred_at.timestamp()
        with self._lock:
            latest = self._latest.get(event.channel_id)
            if latest is None or t > latest:
                self._latest[event.channel_id] = t
                return False
            if t >= latest - self.tolerance_s:
                return False
            self.behind += 1
            if self.first is None:
                self.first = record.source
            return True


def describe_late(count: int, first: str | None, tolerance_s: float) -> str:
    """What ``count`` such events mean, for a warning (the CLI's and the HTTP server's)."""
    are = "event is" if count == 1 else "events are"
    return (
        f"{count:,} {are} older than an event of their channel sent before them by more "
        f"than the stream's grace ({tolerance_s:g} s), the first at {first}: a stream worker "
        "drops them as late"
    )
