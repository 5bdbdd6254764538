"""One owner per directory: a second ``demo`` or ``up`` on the same one refuses at once.

Two demos on one work directory destroyed each other (the second emptied the first's
folder while it ran, then waited for ever on a broker that was gone), and two ``up`` on
one data directory fought over its broker, warehouse and ports. :func:`sole_owner` holds
an exclusive ``flock`` on ``<directory>/.commpulse-owner`` for as long as its ``with``
runs, with the owner's PID and command written in the file; a second owner is refused
with one line naming the first. The lock goes with the process that holds it (a killed
owner leaves no stale lock), and children do not inherit it (Python closes their file
descriptors), so a child left behind does not keep a directory.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from infra.processes import try_lock
from ingest.errors import ConfigurationError

__all__ = ["OWNER_FILE", "DirectoryInUse", "sole_owner"]

OWNER_FILE: Final = ".commpulse-owner"


class DirectoryInUse(ConfigurationError):
    """Another commpulse process owns the directory."""


@contextmanager
def sole_owner(directory: Path, command: str, *, option: str) -> Iterator[None]:
    """Own ``directory`` (created if missing) while the ``with`` runs; ``command`` names the
    owner in the refusal another one gets, which suggests ``option`` to choose another."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / OWNER_FILE
    handle = path.open("a+", encoding="utf-8")
    try:
        if not try_lock(handle, fcntl.LOCK_EX):
            handle.seek(0)
            owner = handle.read().strip() or "another commpulse process"
            raise DirectoryInUse(
                f"{directory} is in use by {owner}; stop it first, or choose another {option}"
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"`commpulse {command}` (pid {os.getpid()})\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock; the file stays (removing it would race a new owner)
