"""Share one embedded broker per data directory among the commands that need it.

:func:`lease_broker` starts a broker for the caller's lifetime, or joins the
one already running for the same directory. A keeper process
(:mod:`infra.keeper`) owns the broker and stops it once the last user is gone,
whether that user returned, raised, was interrupted with Ctrl-C or was killed:
users hold a shared ``flock``, which the kernel releases when they die.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from infra.broker import wait_until_ready
from infra.errors import BrokerError
from infra.keeper import STATE_FILE
from infra.processes import pid_alive, python_module, read_json, try_lock

__all__ = ["BrokerLease", "lease_broker", "running_broker"]

log = logging.getLogger(__name__)

#: A command whose broker takes longer than this to stop says why it waits.
_SAVING_NOTICE_S: Final = 3.0


@dataclass(frozen=True, slots=True)
class BrokerLease:
    bootstrap_servers: str
    broker_pid: int
    keeper_pid: int
    directory: Path
    reused: bool


def running_broker(directory: Path) -> BrokerLease | None:
    """The broker a keeper runs for ``directory``, if any (no locks taken)."""
    state = read_json(directory / STATE_FILE)
    if not state or state.get("status") != "ready":
        return None
    if not (pid_alive(int(state["keeper_pid"])) and pid_alive(int(state["broker_pid"]))):
        return None
    return BrokerLease(
        bootstrap_servers=str(state["bootstrap_servers"]),
        broker_pid=int(state["broker_pid"]),
        keeper_pid=int(state["keeper_pid"]),
        directory=directory,
        reused=True,
    )


@contextmanager
def lease_broker(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    start_timeout: float = 60.0,
    stop_timeout: float = 10.0,
) -> Iterator[BrokerLease]:
    """Use the embedded broker for ``directory`` for the duration of the ``with``."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    keeper_pid: int | None = None
    users = (directory / "users.lock").open("a+")
    try:
        with (directory / "start.lock").open("a+") as start:
            fcntl.flock(start, fcntl.LOCK_EX)
            fcntl.flock(users, fcntl.LOCK_SH)
            lease = running_broker(directory)
            if lease is not None:
                wait_until_ready(lease.bootstrap_servers, timeout=10.0)
                if port and not lease.bootstrap_servers.endswith(f":{port}"):
                    raise BrokerError(
                        f"a broker for {directory} already runs at {lease.bootstrap_servers} "
                        f"(pid {lease.broker_pid}), not on port {port}"
                    )
                log.info(
                    "joined broker bootstrap=%s pid=%s", lease.bootstrap_servers, lease.broker_pid
                )
            else:
                keeper_pid, lease = _start_keeper(
                    directory, host, port, start_timeout, stop_timeout
                )
            # Unlocking start.lock happens when the file closes.
        yield lease
    finally:
        fcntl.flock(users, fcntl.LOCK_UN)
        users.close()
        _await_shutdown_if_last(directory, keeper_pid, stop_timeout + 5.0)


def _start_keeper(
    directory: Path, host: str, port: int | None, start_timeout: float, stop_timeout: float
) -> tuple[int, BrokerLease]:
    """Start a detached keeper (not our child: it outlives us if others join)."""
    state = directory / STATE_FILE
    state.unlink(missing_ok=True)
    command = python_module(
        "infra.keeper", "--detach",
        "--dir", str(directory),
        "--host", host,
        "--port", str(port or 0),
        "--ready-timeout", str(start_timeout),
        "--stop-timeout", str(stop_timeout),
    )  # fmt: skip
    with (directory / "keeper.log").open("ab") as log_file:
        starter = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            timeout=30,
            check=False,
        )
    if starter.returncode != 0 or not starter.stdout.strip().isdigit():
        raise BrokerError(f"the broker keeper did not start; see {directory / 'keeper.log'}")
    keeper_pid = int(starter.stdout)
    deadline = time.monotonic() + start_timeout + 5.0
    while time.monotonic() < deadline:
        data = read_json(state)
        if data and data.get("status") == "ready":
            lease = running_broker(directory)
            if lease is not None:
                log.info(
                    "started broker bootstrap=%s pid=%s", lease.bootstrap_servers, lease.broker_pid
                )
                return keeper_pid, BrokerLease(
                    lease.bootstrap_servers,
                    lease.broker_pid,
                    lease.keeper_pid,
                    directory,
                    reused=False,
                )
        if data and data.get("status") == "failed":
            raise BrokerError(f"the embedded broker did not start: {data.get('error')}")
        if not pid_alive(keeper_pid):
            raise BrokerError(f"the broker keeper exited early; see {directory / 'keeper.log'}")
        time.sleep(0.05)
    os.kill(keeper_pid, signal.SIGTERM)
    raise BrokerError(f"the embedded broker did not start within {start_timeout:.0f} s")


def _await_shutdown_if_last(directory: Path, keeper_pid: int | None, timeout: float) -> None:
    """If nobody else uses the broker, wait until the keeper has stopped it.

    Makes "the command returned" mean "its broker is gone" for the last user. The
    keeper should start stopping within ``timeout``; the stop itself is waited for
    as long as it takes, since the broker saves its data meanwhile and the keeper
    kills it if it gets stuck (:meth:`infra.broker.EmbeddedBroker.stop`).
    """
    deadline = time.monotonic() + timeout
    state_file = directory / STATE_FILE
    stopping_since: float | None = None
    noticed = False
    with (
        (directory / "start.lock").open("a+") as start,
        (directory / "users.lock").open("a+") as users,
    ):
        while stopping_since is not None or time.monotonic() < deadline:
            state = read_json(state_file)
            if state is None:
                if keeper_pid is None or not pid_alive(keeper_pid):
                    return
            elif not pid_alive(int(state.get("keeper_pid", 0))):
                return  # the keeper died; its broker went with it (die-with-parent)
            elif state.get("status") == "stopping":
                if stopping_since is None:
                    stopping_since = time.monotonic()
                elif not noticed and time.monotonic() - stopping_since > _SAVING_NOTICE_S:
                    noticed = True
                    log.warning(
                        "waiting for the embedded broker to save its data (%s) and stop",
                        _megabytes(directory / "data"),
                    )
            else:
                # Under start.lock, as the keeper decides: it cannot be half-way
                # between taking the users lock and announcing that it stops.
                fcntl.flock(start, fcntl.LOCK_EX)
                try:
                    state = read_json(state_file)
                    if state is not None and state.get("status") != "stopping":
                        if not try_lock(users, fcntl.LOCK_EX):
                            return  # someone else still uses it; the last of them will stop it
                        fcntl.flock(users, fcntl.LOCK_UN)
                finally:
                    fcntl.flock(start, fcntl.LOCK_UN)
            time.sleep(0.05)
    log.warning("the embedded broker for %s did not stop within %.0f s", directory, timeout)


def _megabytes(directory: Path) -> str:
    size = 0
    for root, _, names in os.walk(directory):
        for name in names:
            try:
                size += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # rewritten as we look
    return f"{size / 1e6:,.0f} MB on disk"
