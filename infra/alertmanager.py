"""A real Prometheus Alertmanager as a child process, for tests and local runs.

Debian's ``prometheus-alertmanager`` (``apt-get install -y prometheus-alertmanager``;
``scripts/system-packages.sh`` does it for the tests). Started in its own
process group on a free loopback port, with clustering off (its gossip port
would otherwise listen on all interfaces). Ready means ``GET /-/ready``
answered 200. Stopping sends SIGTERM, and SIGKILL only after a timeout.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from infra.errors import InfraError
from infra.ports import free_port
from infra.processes import with_parent_death_signal

__all__ = ["AlertmanagerError", "AlertmanagerProcess", "alertmanager_binary"]

log = logging.getLogger(__name__)

HOST: Final = "127.0.0.1"
INSTALL_HINT: Final = "apt-get install -y prometheus-alertmanager"
_DEBIAN_BINARY: Final = Path("/usr/bin/prometheus-alertmanager")
_NAMES: Final = ("prometheus-alertmanager", "alertmanager")
_PORT_ATTEMPTS: Final = 3

#: Used when no config file is given: every alert goes nowhere, quickly.
MINIMAL_CONFIG: Final = """\
# Written by commpulse: a null receiver, nothing is notified.
route:
  receiver: "null"
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


class AlertmanagerError(InfraError):
    """Alertmanager is missing, cannot start, does not answer, or cannot be stopped."""


def alertmanager_binary() -> Path:
    """Path of the Alertmanager executable: Debian's, else one on ``PATH``."""
    if _DEBIAN_BINARY.is_file():
        return _DEBIAN_BINARY
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise AlertmanagerError(f"Alertmanager is not installed (run: {INSTALL_HINT})")


def _is_ready(url: str, timeout: float) -> str | None:
    """One real request, ``GET /-/ready``. ``None`` if it answered 200, else why not."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"GET /-/ready answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
    return None if status == 200 else f"GET /-/ready answered {status}"


class AlertmanagerProcess:
    """One Alertmanager serving ``http://127.0.0.1:port`` with its state in ``data_dir``.

    Nothing happens until :meth:`start`; ``with`` starts and always stops it.
    With ``die_with_parent`` (the default) Linux stops it when the process that
    started it dies, even by SIGKILL; call :meth:`start` from a thread that
    lives as long as Alertmanager should (the main thread).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        config_file: Path | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        die_with_parent: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.config_file = config_file
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.die_with_parent = die_with_parent and sys.platform == "linux"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (the API is under ``/api/v2``)."""
        if self.port is None or not self.is_running():
            raise AlertmanagerError("Alertmanager is not running")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "alertmanager.log"

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self.is_running():
            return self
        binary = alertmanager_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.config_file or self._write_minimal_config()
        if not config.is_file():
            raise AlertmanagerError(f"Alertmanager config file not found: {config}")
        fixed_port = self.port is not None
        for attempt in range(1 if fixed_port else _PORT_ATTEMPTS):
            port = self.port if fixed_port else free_port(HOST)
            assert port is not None
            self._spawn(binary, config, port)
            try:
                self._wait_until_ready(f"http://{HOST}:{port}")
            except AlertmanagerError as exc:
                self._terminate()
                if fixed_port or attempt == _PORT_ATTEMPTS - 1:
                    raise AlertmanagerError(f"{exc}\n{self.log_tail()}".rstrip()) from None
                log.info("alertmanager did not come up on port %s, trying another: %s", port, exc)
                continue
            self.port = port
            log.info("alertmanager ready url=%s pid=%s data=%s", self.url, self.pid, self.data_dir)
            return self
        raise AssertionError("unreachable")

    def _write_minimal_config(self) -> Path:
        path = self.data_dir / "alertmanager.yml"
        path.write_text(MINIMAL_CONFIG)
        return path

    def _spawn(self, binary: Path, config: Path, port: int) -> None:
        command = [
            str(binary),
            f"--config.file={config}",
            f"--storage.path={self.data_dir / 'data'}",
            f"--web.listen-address={HOST}:{port}",
            "--cluster.listen-address=",  # empty: no clustering, nothing on 0.0.0.0:9094
        ]
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

    def _wait_until_ready(self, url: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        problem: str | None = "not tried"
        while time.monotonic() < deadline:
            process = self._process
            if process is not None and process.poll() is not None:
                raise AlertmanagerError(
                    f"alertmanager exited with code {process.returncode} before it was ready"
                )
            problem = _is_ready(url, timeout=1.0)
            if problem is None:
                return
            time.sleep(0.05)
        raise AlertmanagerError(
            f"alertmanager at {url} not ready after {self.ready_timeout:.0f} s: {problem}"
        )

    def stop(self) -> int | None:
        """SIGTERM, wait ``stop_timeout``, then SIGKILL. Returns the exit code."""
        if self._process is None:
            return None
        pid = self._process.pid
        code = self._terminate()
        log.info("alertmanager stopped pid=%s code=%s", pid, code)
        self._process = None
        return code

    def _terminate(self) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "alertmanager pid=%s ignored SIGTERM for %.0f s; killing it",
                    process.pid,
                    self.stop_timeout,
                )
                process.kill()
                process.wait()
        return process.returncode

    def log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
