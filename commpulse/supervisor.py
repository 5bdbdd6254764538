"""``commpulse up``: the broker, a stream worker, the sink and HTTP ingest, supervised.

Children run as separate ``commpulse`` processes (see :mod:`commpulse.children`).
One that exits on its own is logged and started again after a back-off that
doubles up to a minute (and resets once it has run for a minute); Ctrl-C or
SIGTERM stops them all, last started first, then the embedded broker.

What cannot work is not retried for ever: the ports are checked before anything
starts (:mod:`commpulse.listening`), and a child that fails twice in a row within
:data:`START_S` of starting, with the same last line, stops ``up`` with that line
(a wrong setting, a file it cannot open: a restart will not mend it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from commpulse.children import Child
from commpulse.kafka import connect
from commpulse.listening import listeners, require_free
from commpulse.settings import KafkaSettings, Settings, child_environment
from ingest.errors import CommpulseError

__all__ = ["SERVICES", "START_S", "ChildFailed", "Service", "supervise"]

log = logging.getLogger(__name__)

_BACKOFF_MAX: Final = 60.0
_HEALTHY_AFTER: Final = 60.0
#: a child that exits this soon after it started failed as it started
START_S: Final = 15.0


@dataclass(frozen=True)
class Service:
    name: str
    args: tuple[str, ...]


SERVICES: Final = (
    Service("stream", ("stream",)),
    Service("sink", ("sink",)),
    Service("ingest", ("serve-ingest",)),
)


class ChildFailed(CommpulseError):
    """A child failed the same way twice as it started."""


@dataclass
class _Slot:
    service: Service
    child: Child
    backoff: float = 1.0
    restart_at: float | None = None
    restarts: int = 0
    #: the last line of the child's log when it last failed as it started
    failed_with: str | None = None


def supervise(
    settings: Settings,
    *,
    services: Sequence[Service] = SERVICES,
    on_event: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    poll_s: float = 0.5,
) -> None:
    """Run ``services`` until ``stop`` is set (or Ctrl-C); restart any that exit."""
    stop = stop or threading.Event()
    logs = settings.data_dir / "logs"
    names = {service.name for service in services}
    require_free(listeners(settings, stream="stream" in names, ingest="ingest" in names))
    with connect(settings) as target:
        here = settings.model_copy(
            update={
                "kafka": settings.kafka
                if settings.kafka.bootstrap_servers
                else KafkaSettings(bootstrap_servers=target.bootstrap_servers)
            }
        )
        env = child_environment(here)
        on_event(f"kafka at {target.bootstrap_servers}; logs in {logs}/")
        slots = [
            _Slot(s, Child(s.name, s.args, env=env, log_path=logs / f"{s.name}.log"))
            for s in services
        ]
        try:
            for slot in slots:
                slot.child.start()
                on_event(f"started {slot.service.name} (pid {slot.child.pid})")
            while not stop.wait(poll_s):
                for slot in slots:
                    _check(slot, on_event)
        finally:
            for slot in reversed(slots):
                code = slot.child.stop()
                if code is not None:
                    on_event(f"stopped {slot.service.name}")


def _check(slot: _Slot, on_event: Callable[[str], None]) -> None:
    child, now = slot.child, time.monotonic()
    if slot.restart_at is not None:
        if now >= slot.restart_at:
            slot.restart_at = None
            slot.restarts += 1
            child.start()
            on_event(f"restarted {slot.service.name} (pid {child.pid}, restart {slot.restarts})")
        return
    code = child.poll()
    if code is None:
        if now - child.started_at > _HEALTHY_AFTER:
            slot.backoff = 1.0
        return
    child.stop()  # reap it and whatever it left in its group
    last = child.tail(1).strip()
    at_start = now - child.started_at < START_S
    if at_start and last == slot.failed_with:
        raise ChildFailed(
            f"{slot.service.name} failed twice as it started (exit code {code}; log: "
            f"{child.log_path}): {last.removeprefix('error: ')}"
        )
    slot.failed_with = last if at_start else None
    on_event(
        f"{slot.service.name} exited with code {code}; restarting in {slot.backoff:.0f} s "
        f"(log: {child.log_path}): {last}"
    )
    log.warning("child=%s exited code=%s", slot.service.name, code)
    slot.restart_at = now + slot.backoff
    slot.backoff = min(slot.backoff * 2, _BACKOFF_MAX)
