"""The broker keeper: owns one embedded broker and stops it when nobody uses it.

Run as ``python -m infra.keeper --dir DIR`` by :func:`infra.lease.lease_broker`,
in a session of its own. Every process using the broker holds a shared lock on
``DIR/users.lock``; the keeper polls for an exclusive lock on it, and once it
gets one (nobody left, whether they exited, failed or were killed) it stops the
broker. ``DIR/start.lock`` serialises this with processes that are starting or
joining, so none of them can join a broker that is being stopped.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from infra.broker import EmbeddedBroker
from infra.errors import BrokerError
from infra.processes import try_lock, write_json_atomic

__all__ = ["STATE_FILE", "main"]

log = logging.getLogger("infra.keeper")

STATE_FILE = "keeper.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.keeper")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-timeout", type=float, default=30.0)
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument(
        "--detach", action="store_true", help="fork, print the keeper's pid, and return"
    )
    args = parser.parse_args(argv)
    if args.detach:
        _detach()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    directory: Path = args.dir
    state = directory / STATE_FILE
    stopping = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)

    broker = EmbeddedBroker(
        directory,
        host=args.host,
        port=args.port or None,
        ready_timeout=args.ready_timeout,
        stop_timeout=args.stop_timeout,
    )
    try:
        broker.start()
    except BrokerError as exc:
        write_json_atomic(state, {"status": "failed", "keeper_pid": os.getpid(), "error": str(exc)})
        return 1
    write_json_atomic(
        state,
        {
            "status": "ready",
            "keeper_pid": os.getpid(),
            "broker_pid": broker.pid,
            "bootstrap_servers": broker.bootstrap_servers,
        },
    )

    with (
        (directory / "start.lock").open("a+") as start,
        (directory / "users.lock").open("a+") as users,
    ):
        try:
            while not stopping:
                time.sleep(args.poll)
                if not broker.is_running():
                    log.error("broker exited on its own; see %s", broker.log_path)
                    fcntl.flock(start, fcntl.LOCK_EX)
                    break
                if try_lock(start, fcntl.LOCK_EX):
                    if try_lock(users, fcntl.LOCK_EX):
                        log.info("no users left: stopping the broker")
                        break
                    fcntl.flock(start, fcntl.LOCK_UN)
            else:
                fcntl.flock(start, fcntl.LOCK_EX)
            # From here on we hold start.lock: nobody joins while we stop.
            write_json_atomic(
                state, {"status": "stopping", "keeper_pid": os.getpid(), "broker_pid": broker.pid}
            )
        finally:
            broker.stop()
            state.unlink(missing_ok=True)
    return 0


def _detach() -> None:
    """Fork into a new session: the starter reaps us at once, the keeper lives on."""
    child = os.fork()
    if child:
        print(child, flush=True)
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, sys.stdin.fileno())
    os.close(devnull)
    # stdout was the pipe to our starter; from now on everything goes to the log on stderr.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
