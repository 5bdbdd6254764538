"""The embedded Kafka-protocol broker (noida-db), one process per data directory.

Started as the binary inside the ``noida_db`` package (the Python wrapper does
not pass signals on), in its own process group, bound to loopback by default.
Ready means it answered a real Kafka request (Metadata). Stopping asks it to
stop its Kafka service, then sends SIGTERM; it saves its data meanwhile. It is
killed only once it has done no work for a while: noida-db rewrites its files
when it stops (about 30 s for 1 GB of records here), and a broker killed in the
middle loses records it had saved long before (measured: 466,000 of 820,000).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from infra.errors import BrokerError
from infra.ports import free_port
from infra.processes import bytes_written, cpu_seconds, with_parent_death_signal

__all__ = [
    "FETCH_RESPONSE_MAX_BYTES",
    "EmbeddedBroker",
    "broker_binary",
    "kafka_reachable",
    "wait_until_ready",
]

log = logging.getLogger(__name__)

#: kafka-python's ``receive_message_max_bytes`` for consumers that fetch records.
#: noida-db answers a fetch with everything up to the end of the log, whatever
#: ``fetch_max_bytes`` and ``max_partition_fetch_bytes`` say (measured: all
#: 300,000 events, 114 MB, in one answer to a fetch limited to 1 MB); kafka-python
#: refuses any answer over 100 MB by default. This is the largest a Kafka frame can
#: be. A Kafka cluster keeps to the fetch limits, so there it changes nothing.
FETCH_RESPONSE_MAX_BYTES: Final = 2**31 - 1

_PORT_ATTEMPTS: Final = 3
#: A stopping broker that keeps working is left to finish for at most this long.
_STOP_CAP_S: Final = 3600.0
_STOP_POLL_S: Final = 0.1
_NOISE: Final = ("weak version",)  # harmless loader warning on Debian 12


def broker_binary() -> Path:
    """Path of the noida-db executable shipped in its Python package."""
    try:
        path = Path(str(files("noida_db").joinpath("noida-db")))
    except ModuleNotFoundError as exc:
        raise BrokerError("the embedded broker is not installed (pip install noida-db)") from exc
    if not path.is_file():
        raise BrokerError(f"the noida-db binary is missing at {path}")
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | 0o111)
        except OSError as exc:
            raise BrokerError(f"{path} is not executable and cannot be made so: {exc}") from exc
    return path


def kafka_reachable(
    bootstrap: str, *, timeout: float = 2.0, client_options: Mapping[str, Any] | None = None
) -> str | None:
    """One real Kafka request (Metadata). ``None`` if it answered, else why not."""
    if not _accepts_connections(bootstrap, timeout):
        # (kafka-python leaks a socket when it cannot bootstrap, so knock first)
        return f"nothing accepts connections at {bootstrap}"
    millis = max(int(timeout * 1000), 100)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=millis,
            bootstrap_timeout_ms=millis,
            **(client_options or {}),
        )
    except KafkaError as exc:
        return str(exc)
    try:
        admin.list_topics()
    except KafkaError as exc:
        return str(exc)
    finally:
        admin.close()
    return None


def wait_until_ready(
    bootstrap: str, timeout: float, *, alive: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until ``bootstrap`` answers a Metadata request, or raise BrokerError."""
    deadline = time.monotonic() + timeout
    problem: str | None = "not tried"
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise BrokerError(f"broker exited with code {alive.returncode} before it was ready")
        problem = kafka_reachable(bootstrap, timeout=1.0)
        if problem is None:
            return
        time.sleep(0.05)
    raise BrokerError(f"broker at {bootstrap} not ready after {timeout:.0f} s: {problem}")


def _accepts_connections(bootstrap: str, timeout: float) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


class EmbeddedBroker:
    """One noida-db process serving Kafka on ``host:port`` with data in ``data_dir``.

    Nothing happens until :meth:`start`; ``with`` starts and always stops it.
    With ``die_with_parent`` (the default) Linux stops the broker when the
    process that started it dies, even by SIGKILL, so no broker is orphaned.
    Linux ties that signal to the *thread* that started it: call :meth:`start`
    from a thread that lives as long as the broker should (the main thread).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        die_with_parent: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.die_with_parent = die_with_parent and sys.platform == "linux"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise BrokerError("broker not started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self.is_running():
            return self
        binary = broker_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None
        for attempt in range(1 if fixed_port else _PORT_ATTEMPTS):
            port = self.port if fixed_port else free_port(self.host)
            assert port is not None
            self._spawn(binary, port)
            try:
                wait_until_ready(f"{self.host}:{port}", self.ready_timeout, alive=self._process)
            except BrokerError as exc:
                self._terminate()
                if fixed_port or attempt == _PORT_ATTEMPTS - 1:
                    raise BrokerError(f"{exc}\n{self.log_tail()}".rstrip()) from None
                log.info("broker did not come up on port %s, trying another: %s", port, exc)
                continue
            self.port = port
            log.info(
                "broker ready bootstrap=%s pid=%s data=%s",
                self.bootstrap_servers,
                self.pid,
                self.data_dir,
            )
            return self
        raise AssertionError("unreachable")

    def _spawn(self, binary: Path, port: int) -> None:
        command = [
            str(binary), "start",
            "--data-dir", str(self.data_dir / "data"),
            "--host", self.host,
            "--only", "kafka",
            "--kafka-port", str(port),
        ]  # fmt: skip
        if self.die_with_parent:
            command = with_parent_death_signal(command)
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal does not reach it; we stop it
            )

    def stop(self) -> int | None:
        """Stop its Kafka service, then SIGTERM; SIGKILL once it has done no work
        (used no CPU, written nothing) for ``stop_timeout`` seconds.

        Returns the exit code.
        """
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._stop_service()
        code = self._terminate()
        log.info("broker stopped pid=%s code=%s", self._process.pid, code)
        self._process = None
        return code

    def _stop_service(self) -> None:
        """Ask the broker to stop its Kafka service (``noida-db stop kafka``) before SIGTERM.

        It stops serving Kafka and saves what it acknowledged. On SIGTERM alone noida-db
        keeps answering produce requests while it shuts down and acknowledges records it
        never saves (measured: the last few hundred records of a producer writing during
        the stop; tests/integration/test_faults.py). If this fails, SIGTERM does its best.
        """
        command = [str(broker_binary()), "stop", "kafka", "--data-dir", str(self.data_dir / "data")]
        try:
            stopper = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except (OSError, BrokerError) as exc:
            log.warning("broker pid=%s: stopping its Kafka service failed: %s", self.pid, exc)
            return
        try:
            working = self._wait_while_working(lambda: stopper.poll() is not None)
        finally:
            if stopper.poll() is None:
                stopper.kill()
                stopper.wait()
        if not working:
            log.warning(
                "broker pid=%s did no work for %.0f s while stopping its Kafka service",
                self.pid,
                self.stop_timeout,
            )
        elif stopper.returncode != 0:
            log.warning(
                "broker pid=%s: `noida-db stop kafka` exited %s", self.pid, stopper.returncode
            )

    def _terminate(self) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            if not self._wait_while_working(lambda: process.poll() is not None):
                log.warning(
                    "broker pid=%s did no work for %.0f s after SIGTERM; killing it",
                    process.pid,
                    self.stop_timeout,
                )
                process.kill()
            process.wait()
        return process.returncode

    def _wait_while_working(self, done: Callable[[], bool]) -> bool:
        """Wait until ``done()``. False if the broker did no work for ``stop_timeout``
        seconds first (it is stuck), or is still at it after an hour."""
        pid = self.pid
        assert pid is not None
        started = last_work = time.monotonic()
        seen = _work_done(pid)
        while not done():
            now = time.monotonic()
            work = _work_done(pid)
            if work != seen:
                seen, last_work = work, now
            if now - last_work > self.stop_timeout or now - started > _STOP_CAP_S:
                return False
            time.sleep(_STOP_POLL_S)
        return True

    def log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        useful = [line for line in text if not any(noise in line for noise in _NOISE)]
        return "\n".join(useful[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _work_done(pid: int) -> tuple[float, int]:
    """CPU seconds used and bytes written by ``pid`` so far; they grow while it works."""
    try:
        return cpu_seconds(pid), bytes_written(pid)
    except (OSError, ValueError, IndexError):
        return (0.0, 0)  # gone, or not Linux: no sign of work
