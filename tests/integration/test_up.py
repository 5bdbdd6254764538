"""`commpulse up`: every service as a child, a crashed one restarted, a second `up` on the same
data directory refused, Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

from infra import running_broker
from tests.integration.support import COMMPULSE, run_cli, wait_for
from tests.integration.test_simulate_and_demo import plain_env, processes_under


def started(log: Path) -> dict[str, int]:
    """The latest pid of each service, from up's own output."""
    pids: dict[str, int] = {}
    for name, pid in re.findall(r"(?:re)?started (\w+) \(pid (\d+)", log.read_text()):
        pids[name] = int(pid)
    return pids


def test_up_restarts_a_crashed_child_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = Path(tempfile.mkdtemp()) / "up.log"
    env = plain_env() | {"COMMPULSE_INGEST__PORT": "0", "COMMPULSE_STREAM__WEB_PORT": "0"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [COMMPULSE, "--data-dir", str(data), "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_for(lambda: set(started(log)) == {"stream", "sink", "ingest"}, timeout=90), (
            log.read_text()
        )
        first = started(log)
        assert running_broker(data / "broker") is not None
        second = run_cli("--data-dir", str(data), "up", env=env, timeout=30)
        refusal = f"error: {data} is in use by `commpulse up` (pid {process.pid}); stop it first"
        assert second.returncode == 1 and second.stderr.splitlines() == [
            f"{refusal}, or choose another --data-dir"
        ], second.stderr
        os.kill(first["sink"], signal.SIGKILL)  # the sink crashes
        assert wait_for(lambda: started(log)["sink"] != first["sink"], timeout=30), log.read_text()
        text = log.read_text()
        assert "sink exited with code -9; restarting in 1 s" in text
        assert started(log)["stream"] == first["stream"]  # the others kept running
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=90)
    assert process.returncode == 130, log.read_text()
    assert "stopped stream" in log.read_text()
    assert wait_for(lambda: processes_under(data) == [], timeout=15), processes_under(data)
    assert running_broker(data / "broker") is None
