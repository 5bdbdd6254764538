"""Small process helpers shared by the broker lease, its keeper, and the stream worker."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import IO, Any, NoReturn

__all__ = [
    "bytes_written",
    "cpu_seconds",
    "exit_now",
    "memory_kib",
    "pid_alive",
    "python_module",
    "read_json",
    "try_lock",
    "with_parent_death_signal",
    "write_json_atomic",
]

log = logging.getLogger(__name__)


def python_module(module: str, *args: str) -> list[str]:
    """The command that runs ``module`` in this Python, never one a folder shadows.

    ``-P``: the working directory is not put first on ``sys.path``, so a ``commpulse/``
    or ``infra/`` folder where the user stands (a checkout, say) cannot replace the
    installed package in a child (it did: ``cannot import name '__version__'``).
    """
    return [sys.executable, "-P", "-m", module, *args]


def with_parent_death_signal(command: list[str]) -> list[str]:
    """Prefix ``command`` so Linux SIGTERMs it when the thread that started it dies.

    ``setpriv`` (util-linux, on every Debian) sets the parent-death signal and
    execs the command, so the child's pid is the command's own; unlike
    ``preexec_fn`` it is safe in threaded programs.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning(
            "setpriv not found: %s will not stop by itself if its starter is killed", command[0]
        )
        return command
    return [setpriv, "--pdeathsig", "TERM", "--", *command]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of ``pid`` from /proc (``VmRSS`` now, ``VmHWM`` its peak), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time ``pid`` has used so far, user and system, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bytes_written(pid: int) -> int:
    """Bytes ``pid`` has written so far (to files, pipes and sockets alike), from /proc."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def exit_now(error: str) -> NoReturn:
    """End the process at once with exit code 1, as a kill -9 would, but with the log
    flushed and ``error: <error>`` as the last line on stderr."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.write(f"error: {error}\n")
    sys.stderr.flush()
    os._exit(1)


def try_lock(handle: IO[Any], mode: int) -> bool:
    """Non-blocking flock; True if taken."""
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
