"""Empty fetch answers are paced, whatever the broker does with ``fetch_max_wait_ms``.

A Kafka broker holds a fetch request until there is data or ``fetch.max.wait.ms``
has passed. The embedded broker (noida-db) answers at once, empty, so an aiokafka
consumer at the end of its partitions fetches again and again in a tight loop:
about 3,000 requests a second, measured here. In the stream worker that is the
packer's consumer once it has read the backlog, and faust's once the packed
partitions are drained. Each request costs the event loop CPU, and after each
socket write the thread waits for the GIL that the engine thread holds.

:func:`pace_empty_fetches` makes aiokafka's fetcher hold back its next fetch to a
node after one that brought nothing, until ``min(fetch_max_wait_ms, pause)`` has
passed since that request was sent. Against a broker that holds fetches this never
waits (the answer comes after ``fetch_max_wait_ms`` or with data); against one that
does not, new records are fetched at most ``pause`` later than they could be.

The pause is kept outside the fetch tasks: the fetcher's loop leaves the node out of
its next requests and sleeps until the pause ends, as it does for its own backoffs.
A first version slept inside the fetch task; a task cancelled while awaiting that
task (the fetcher's close does) then lost its cancellation, because the fetch task
returns normally when cancelled, as aiokafka's own does.

aiokafka has no hook for this, so the fetcher's ``_proc_fetch_request`` and
``_get_actions_per_node`` are wrapped; if a future aiokafka lacks them, nothing is
changed and a warning says so.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from aiokafka.consumer import fetcher

__all__ = ["DEFAULT_PAUSE_S", "pace_empty_fetches"]

log = logging.getLogger(__name__)

#: the longest a fetch after an empty one is held back (new records wait at most this long)
DEFAULT_PAUSE_S: Final = 0.05

_MARK: Final = "_commpulse_unpaced"
_WRAPPED: Final = ("_proc_fetch_request", "_get_actions_per_node")


def pace_empty_fetches(pause_s: float = DEFAULT_PAUSE_S) -> bool:
    """Pace aiokafka's fetcher in this process (idempotent); False if it cannot be done."""
    if pause_s <= 0:
        raise ValueError(f"the pause must be positive, got {pause_s}")
    found: list[Any] = [getattr(fetcher.Fetcher, name, None) for name in _WRAPPED]
    if None in found:
        log.warning("aiokafka's Fetcher has changed: empty fetches are not paced")
        return False
    # pacing again replaces the pause: wrap the originals, not the wrappers
    fetch, actions = (getattr(method, _MARK, method) for method in found)

    async def paced_fetch(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        sent = time.monotonic()
        got: bool = await fetch(self, assignment, node_id, request)
        if not got:
            until = sent + min(self._fetch_max_wait_ms / 1000, pause_s)
            if until > time.monotonic():
                _paused(self)[node_id] = until
        return got

    def paced_actions(self: Any, assignment: Any) -> Any:
        requests, resets, timeout, invalid_metadata, resume = actions(self, assignment)
        paused = _paused(self)
        if paused:
            now = time.monotonic()
            for node_id, until in list(paused.items()):
                if until <= now:
                    del paused[node_id]
            held = [node_id for node_id, _ in requests if node_id in paused]
            if held:
                requests = [(node_id, r) for node_id, r in requests if node_id not in paused]
                timeout = min(timeout, *(paused[node_id] - now for node_id in held))
        return requests, resets, timeout, invalid_metadata, resume

    for name, original, wrapper in zip(
        _WRAPPED, (fetch, actions), (paced_fetch, paced_actions), strict=True
    ):
        setattr(wrapper, _MARK, original)
        setattr(fetcher.Fetcher, name, wrapper)
    return True


def _paused(fetcher_: Any) -> dict[int, float]:
    """Per fetcher: node -> until when its next fetch is held back."""
    paused: dict[int, float] | None = fetcher_.__dict__.get("_commpulse_paused")
    if paused is None:
        paused = fetcher_.__dict__["_commpulse_paused"] = {}
    return paused
