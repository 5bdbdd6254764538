"""Ctrl-C and SIGTERM that cannot get lost.

A signal handler raises in whatever code runs at that moment; kafka-python 3
runs network tasks in the calling thread and logs-and-drops any exception
from a task, so an interrupt raised there would vanish and the command would
carry on. The handlers therefore also set a flag, and long loops call
:func:`check`, which raises again from our own code.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import NoReturn

__all__ = ["StopRequested", "check", "install", "requested"]

# Signals are process-wide; so is this flag.
_requested = threading.Event()


class StopRequested(BaseException):
    """SIGTERM arrived (or an interrupt was swallowed): unwind so every ``finally`` runs."""


def _on_sigint(_signum: int, _frame: FrameType | None) -> NoReturn:
    _requested.set()
    raise KeyboardInterrupt


def _on_sigterm(_signum: int, _frame: FrameType | None) -> NoReturn:
    _requested.set()
    raise StopRequested


def install() -> None:
    """Handle SIGINT and SIGTERM (main thread only)."""
    _requested.clear()
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise :class:`StopRequested` if a stop was requested (call it in long loops)."""
    if _requested.is_set():
        raise StopRequested
