"""`commpulse up`: every service as a child, a crashed one restarted, a second `up` on the same
data directory refused, Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

import pytest

from infra import free_port, running_broker
from tests.integration.support import COMMPULSE, run_cli, wait_for
from tests.integration.test_simulate_and_demo import plain_env, processes_under


def started(log: Path) -> dict[str, int]:
    """The latest pid of each service, from up's own output."""
    pids: dict[str, int] = {}
    for name, pid in re.findall(r"(?:re)?started (\w+) \(pid (\d+)", log.read_text()):
        pids[name] = int(pid)
    return pids


def start_up(data: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``commpulse up`` on ``data``, its output in ``log``, once it started every service."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [COMMPULSE, "--data-dir", str(data), "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if not wait_for(lambda: set(started(log)) == {"stream", "sink", "ingest"}, timeout=90):
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=90)
        raise AssertionError(f"up did not start every service:\n{log.read_text()}")
    return process


@pytest.mark.parametrize(("how", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_up_restarts_a_crashed_child_and_stops_everything_on_ctrl_c_or_sigterm(
    tmp_path: Path, how: signal.Signals, code: int
) -> None:
    data = tmp_path / "data"
    log = Path(tempfile.mkdtemp()) / "up.log"
    env = plain_env() | {"COMMPULSE_INGEST__PORT": "0", "COMMPULSE_STREAM__WEB_PORT": "0"}
    process = start_up(data, env, log)
    try:
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
        if how == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in its terminal
        else:
            process.send_signal(signal.SIGTERM)  # a service manager stopping it
        process.wait(timeout=90)
    assert process.returncode == code, log.read_text()
    assert "stopped stream" in log.read_text()
    assert wait_for(lambda: processes_under(data) == [], timeout=15), processes_under(data)
    assert running_broker(data / "broker") is None


def test_up_with_a_port_taken_says_which_at_once_and_starts_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = plain_env() | {"COMMPULSE_STREAM__WEB_PORT": str(port)}
        started_at = time.monotonic()
        done = run_cli("--data-dir", str(data), "up", env=env, timeout=60)
    assert time.monotonic() - started_at < 15
    assert done.returncode == 1
    refusal = (
        f"error: port {port} on 127.0.0.1 (the stream worker's web server) is in use: stop what "
        "listens there, or set stream.web_port (COMMPULSE_STREAM__WEB_PORT) to another port; "
        "0 runs no web server"
    )
    assert done.stderr.splitlines() == [refusal]
    assert running_broker(data / "broker") is None and not (data / "logs").exists()


def test_a_child_that_fails_twice_as_it_starts_stops_up_with_its_own_error(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    (data / "not-a-file").mkdir(parents=True)  # a warehouse path the sink cannot open
    env = plain_env() | {
        "COMMPULSE_INGEST__PORT": str(free_port()),
        "COMMPULSE_STREAM__WEB_PORT": "0",
        "COMMPULSE_WAREHOUSE__PATH": str(data / "not-a-file"),
    }
    done = run_cli("--data-dir", str(data), "up", env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert "sink exited with code 1; restarting in 1 s" in done.stderr  # once, then given up
    assert re.fullmatch(
        rf"error: sink failed twice as it started \(exit code 1; log: {data}/logs/sink.log\): "
        rf"cannot open the warehouse {data}/not-a-file: .+",
        lines[-1],
    ), lines[-1]
    assert "stopped stream" in done.stderr and "stopped ingest" in done.stderr
    assert wait_for(lambda: processes_under(data) == [], timeout=15), processes_under(data)
    assert running_broker(data / "broker") is None


def test_while_up_loads_sql_report_and_quality_read_its_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = Path(tempfile.mkdtemp()) / "up.log"
    env = plain_env() | {
        "COMMPULSE_INGEST__PORT": str(free_port()),
        "COMMPULSE_STREAM__WEB_PORT": "0",
        # the sink republishes the snapshot after a build at most this often
        "COMMPULSE_WAREHOUSE__BUILD_INTERVAL_S": "1",
    }
    volume = (
        "SELECT CAST(sum(value) AS BIGINT) AS events FROM metrics.kpi_daily "
        "WHERE kpi = 'volume' AND channel_id IS NOT NULL"
    )

    polls: list[tuple[int, int | None]] = []  # (exit code, events seen) of every sql run

    def events_seen() -> int | None:
        done = run_cli("--data-dir", str(data), "sql", volume, env=env, timeout=60)
        value = done.stdout.split()[-1] if done.returncode == 0 else ""
        polls.append((done.returncode, int(value) if value.isdigit() else None))
        return polls[-1][1]

    def shows(total: int) -> bool:
        return events_seen() == total

    process = start_up(data, env, log)
    try:
        for sent, seed in ((3000, 1), (6000, 2)):
            simulated = run_cli(
                "--data-dir", str(data), "simulate", "--events", "3000", "--seed", str(seed),
                "--send", env=env,
            )  # fmt: skip
            assert simulated.returncode == 0, simulated.stderr
            polls.clear()
            assert wait_for(partial(shows, sent), timeout=90), (events_seen(), log.read_text())
        # while the second round loaded, every query succeeded, on a snapshot only ever newer
        seen = [events or 0 for _, events in polls]
        assert {code for code, _ in polls} == {0} and seen == sorted(seen), polls
        assert seen[0] >= 3000, polls
        # every reader ran on the snapshot, while up held the warehouse
        query = run_cli("--data-dir", str(data), "sql", volume, env=env)
        assert query.returncode == 0 and query.stdout.split()[-1] == "6000"
        assert query.stderr.startswith("the warehouse is held by a running sink (PID ")
        quarter = run_cli(
            "--data-dir", str(data), "sql", "SELECT max(quarter) AS q FROM metrics.kpi_quarterly",
            env=env,
        ).stdout.split()[-1]  # fmt: skip
        report = run_cli("--data-dir", str(data), "report", "--quarter", quarter, env=env)
        assert report.returncode == 0, report.stderr
        assert report.stderr.startswith("the warehouse is held by a running sink (PID ")
        assert (data / "reports" / f"report-{quarter}.html").exists()
        quality = run_cli("--data-dir", str(data), "quality", env=env)
        assert quality.returncode == 0, quality.stdout + quality.stderr
        assert "not recorded (the snapshot is read-only)" in quality.stdout
        # the stream's final day windows against the snapshot's (they differ here: the second
        # round's events came after the stream had closed their days, which the warehouse
        # counts and the stream cannot, docs/streams.md)
        reconciled = run_cli("--data-dir", str(data), "reconcile", env=env, timeout=120)
        assert reconciled.stderr.startswith("the warehouse is held by a running sink (PID ")
        assert re.search(
            r"^[\d,]+ final day windows compared, [\d,]+ different", reconciled.stdout, re.MULTILINE
        ), reconciled.stdout[-2000:] + reconciled.stderr
        assert process.poll() is None  # up kept running through all of it
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)
    assert process.returncode == 0, log.read_text()
