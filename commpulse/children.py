"""Child ``commpulse`` processes: started in their own process group, always stopped.

The demo and ``commpulse up`` run the stream worker, the sink and the HTTP
ingest as children. A child gets Ctrl-C (SIGINT to its group) to stop, and
SIGKILL if it has not stopped within the timeout; :class:`Child` is a context
manager, so an exception or Ctrl-C in the parent never leaves one behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from infra.processes import python_module

__all__ = ["Child"]

log = logging.getLogger(__name__)


class Child:
    """One ``commpulse <args>`` process, its output in ``log_path``."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        stop_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            python_module("commpulse", *self.args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        log.info("started child=%s pid=%s", self.name, self.process.pid)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def poll(self) -> int | None:
        """The exit code once the child has ended, else None."""
        return self.process.poll() if self.process else None

    def tail(self, lines: int = 20, *, window: int = 64 * 1024) -> str:
        """The last ``lines`` lines of the log, read from its last ``window`` bytes (a log
        nobody rotated can be large)."""
        try:
            with self.log_path.open("rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - window))
                text = file.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """Ctrl-C to the child's group, then SIGKILL after ``stop_timeout``; its exit code."""
        process = self.process
        if process is None:
            return None
        try:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "child=%s did not stop in %ss: killing it", self.name, self.stop_timeout
                    )
            # Whatever it started in its group goes too (nothing may outlive the parent).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return process.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
