"""Empty fetch answers are paced, whatever the broker does with ``fetch_max_wait_ms``.

A Kafka broker holds a fetch request until there is data or ``fetch.max.wait.ms``
has passed. The embedded broker (noida-db) answers at once, empty, so an aiokafka
consumer at the end of its partitions fetches again and again in a tight loop:
about 3,000 requests a second, measured here. In the stream worker that is the
packer's consumer once it has read the backlog, and faust's once the packed
partitions are drained. Each request costs the event loop CPU, and after each
socket write the thread waits for the GIL that the engine thread holds.

:func:`pace_empty_fetches` makes aiokafka's fetcher wait, after a fetch that
brought nothing, until ``min(fetch_max_wait_ms, pause)`` has passed since the
request was sent. Against a broker that holds fetches this never waits (the
answer comes after ``fetch_max_wait_ms`` or with data); against one that does
not, new records are fetched at most ``pause`` later than they could be.

aiokafka has no hook for this, so the fetcher's ``_proc_fetch_request`` is
wrapped; if a future aiokafka lacks it, nothing is changed and a warning says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiokafka.consumer import fetcher

__all__ = ["DEFAULT_PAUSE_S", "pace_empty_fetches"]

log = logging.getLogger(__name__)

#: the longest an empty fetch answer is held back (new records wait at most this long)
DEFAULT_PAUSE_S: Final = 0.05

_MARK: Final = "_commpulse_paced"


def pace_empty_fetches(pause_s: float = DEFAULT_PAUSE_S) -> bool:
    """Pace aiokafka's fetcher in this process (idempotent); False if it cannot be done."""
    if pause_s <= 0:
        raise ValueError(f"the pause must be positive, got {pause_s}")
    original = getattr(fetcher.Fetcher, "_proc_fetch_request", None)
    if original is None:
        log.warning("aiokafka's Fetcher has no _proc_fetch_request: empty fetches are not paced")
        return False
    original = getattr(original, _MARK, original)  # pacing again replaces the pause

    async def paced(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        sent = time.monotonic()
        got: bool = await original(self, assignment, node_id, request)
        if not got:
            wait = min(self._fetch_max_wait_ms / 1000, pause_s) - (time.monotonic() - sent)
            if wait > 0:
                try:
                    await asyncio.sleep(wait)
                except asyncio.CancelledError:
                    # as the original does: the fetcher cancels its fetches when the
                    # assignment changes or it closes, and awaits them as they return
                    return False
        return got

    setattr(paced, _MARK, original)
    wrapped: Callable[..., Awaitable[bool]] = paced
    fetcher.Fetcher._proc_fetch_request = wrapped
    return True
