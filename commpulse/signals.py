"""Ctrl-C and SIGTERM that cannot get lost, and that never break kafka-python.

A signal handler raises in whatever code runs at that moment. Two things in
kafka-python 3 make that unsafe there:

- it runs network tasks in the calling thread and logs-and-drops any exception
  from a task, so an interrupt raised there would vanish and the command would
  carry on;
- it takes locks without ``try``/``finally`` on its hot paths (``kafka.future``),
  so an interrupt raised between ``acquire()`` and ``release()`` leaves the lock
  held for ever. The producer's sender thread then blocks on it, the batch
  never completes, and closing the producer waits out every timeout
  (measured: 1 stop in about 250 took 60 s instead of 0.02 s).

So while the main thread is inside kafka-python, the handlers only record the
request and try again every :data:`RETRY_S` until the thread is back in other
code, where they raise. Long loops also call :func:`check`, which raises
from our own code at once. If kafka-python keeps the thread for more than
:data:`NOTICE_AFTER_S`, one line on stderr says so; a second Ctrl-C or SIGTERM
then raises immediately, wherever the thread is.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Final

__all__ = ["NOTICE_AFTER_S", "RETRY_S", "StopRequested", "check", "install", "requested"]

#: How often a postponed interrupt tries again, in seconds.
RETRY_S: Final = 0.02
#: After this long postponed, stderr says why the command has not stopped yet.
NOTICE_AFTER_S: Final = 2.0
_NOTICE: Final = b"stopping once the Kafka client returns; press Ctrl-C again to stop now\n"

#: Packages whose code an interrupt must not break into (see the module's docstring).
_UNSAFE: Final = ("kafka",)

# Signals are process-wide; so is this flag.
_requested = threading.Event()
# The interrupt waiting for the main thread to leave kafka-python, since when, and
# whether stderr said so (main thread only).
_pending: type[BaseException] | None = None
_pending_since = 0.0
_noticed = False


class StopRequested(BaseException):
    """SIGTERM arrived (or an interrupt was swallowed): unwind so every ``finally`` runs."""


def _inside_unsafe_code(frame: FrameType | None) -> bool:
    while frame is not None:
        package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if package in _UNSAFE:
            return True
        frame = frame.f_back
    return False


def _interrupt(kind: type[BaseException], frame: FrameType | None, *, again: bool) -> None:
    global _pending, _pending_since, _noticed
    _requested.set()
    if not again and _inside_unsafe_code(frame):
        if _pending is None:
            _pending, _pending_since, _noticed = kind, time.monotonic(), False
        elif not _noticed and time.monotonic() - _pending_since > NOTICE_AFTER_S:
            _noticed = True
            os.write(2, _NOTICE)  # not a console: it may be mid-print in this very thread
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _cancel_retry()
    raise kind


def _cancel_retry() -> None:
    global _pending
    if _pending is not None:
        _pending = None
        signal.setitimer(signal.ITIMER_REAL, 0)


def _on_sigint(_signum: int, frame: FrameType | None) -> None:
    _interrupt(KeyboardInterrupt, frame, again=_pending is not None)


def _on_sigterm(_signum: int, frame: FrameType | None) -> None:
    _interrupt(StopRequested, frame, again=_pending is not None)


def _on_retry(_signum: int, frame: FrameType | None) -> None:
    if _pending is not None:
        _interrupt(_pending, frame, again=False)


def install() -> None:
    """Handle SIGINT and SIGTERM (main thread only)."""
    _cancel_retry()
    _requested.clear()
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGALRM, _on_retry)


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise :class:`StopRequested` if a stop was requested (call it in long loops)."""
    if _requested.is_set():
        _cancel_retry()
        raise StopRequested
