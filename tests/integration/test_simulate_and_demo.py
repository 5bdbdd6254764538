"""The simulator through ingest on the embedded broker, as a new user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from commpulse.settings import TopicSettings
from infra import lease_broker, record_counts, running_broker
from infra.processes import pid_alive
from tests.integration.support import COMMPULSE, commpulse_env, run_cli, wait_for

TOPICS = TopicSettings()


def plain_env() -> dict[str, str]:
    """No cluster configured: commands start (or join) the embedded broker of their data dir."""
    return commpulse_env()


def counts_in(data_dir: Path) -> dict[str, int]:
    with lease_broker(data_dir / "broker") as lease:
        return record_counts(lease.bootstrap_servers, [TOPICS.events, TOPICS.dlq])


def test_simulate_100k_send_leaves_exactly_100k_records(tmp_path: Path) -> None:
    result = run_cli(
        "--data-dir", str(tmp_path), "simulate", "--events", "100000", "--send", env=plain_env()
    )
    assert result.returncode == 0, result.stderr
    assert "100,000 sent · 0 dead-lettered · " in result.stdout
    assert running_broker(tmp_path / "broker") is None  # its broker stopped with it
    # Counted by offsets on a broker restarted from the same data: nothing lost, nothing extra.
    assert counts_in(tmp_path) == {TOPICS.events: 100_000, TOPICS.dlq: 0}


def test_the_sink_loads_a_backlog_bigger_than_kafka_pythons_largest_answer(
    tmp_path: Path,
) -> None:
    # The embedded broker answers the sink's first fetch with the whole backlog,
    # whatever the fetch limits say: 300,000 events are about 115 MB, over the 100 MB
    # kafka-python accepts by default ("Invalid frame length", the sink failed).
    sent = run_cli(
        "--data-dir", str(tmp_path), "simulate", "--events", "300000", "--send", env=plain_env()
    )
    assert sent.returncode == 0, sent.stderr
    loaded = run_cli("--data-dir", str(tmp_path), "sink", "--until-caught-up", env=plain_env())
    assert loaded.returncode == 0, loaded.stderr
    assert "300,000 events read: 300,000 stored, 0 duplicates, 0 dead-lettered" in loaded.stdout
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT event_id) FROM raw.events").fetchone() == (
            300_000,
        )
    finally:
        con.close()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupting_an_ingest_stops_everything(tmp_path: Path, how: str) -> None:
    with subprocess.Popen(
        [COMMPULSE, "--data-dir", str(tmp_path), "simulate", "--events", "5000000", "--send"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=plain_env(),
        start_new_session=True,  # its own process group, like a terminal's foreground job
    ) as process:
        assert wait_for(lambda: running_broker(tmp_path / "broker") is not None, timeout=30)
        lease = running_broker(tmp_path / "broker")
        assert lease is not None
        time.sleep(2)  # let it send for a while
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            process.terminate()
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().endswith("interrupted; stopped cleanly")
    assert "Traceback" not in err
    assert wait_for(
        lambda: not pid_alive(lease.broker_pid) and not pid_alive(lease.keeper_pid), timeout=15
    )


def running_demo(workdir: Path) -> subprocess.Popen[str]:
    """A 20,000-event demo started in ``workdir``, in its own process group (as a terminal's
    foreground job), its output piped."""
    return subprocess.Popen(
        [COMMPULSE, "demo", "--events", "20000", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=plain_env(),
        start_new_session=True,
    )


def processes_under(directory: Path) -> list[int]:
    """Processes whose command line or environment names ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(directory).encode() in seen:
            found.append(int(entry.name))
    return found


def test_demo_runs_end_to_end_and_leaves_no_process(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    # Run from a folder holding folders named like commpulse's packages (a checkout, say):
    # the demo's children (worker, sink, broker keeper) must still run the installed ones.
    here = tmp_path / "checkout"
    for package in ("commpulse", "infra", "ingest", "warehouse"):
        (here / package).mkdir(parents=True)
        (here / package / "__init__.py").write_text("raise ImportError('shadowed')\n")
    result = run_cli(
        "demo", "--events", "20000", "--workdir", str(workdir), env=plain_env(), cwd=here
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "20,000 sent · 0 dead-lettered" in out
    assert "warehouse: 20,000 events stored (0 duplicates, 0 dead-lettered)" in out
    assert "stream: 20,000 events applied, 0 late" in out
    assert re.search(r"quality: passed: \d+ expectations in \d+ suites", out), out
    [alert] = [line for line in out.splitlines() if line.startswith("alert: ")]
    moment = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    assert re.fullmatch(
        rf"alert: \S+ went idle \(firing since {moment}\) and resolved at {moment} when "
        "activity returned",
        alert,
    ), alert
    # The one extra event is the activity the demo sent to resolve the alert.
    assert re.search(r"topic commpulse\.events +20,001 records", out)
    assert re.search(r"topic commpulse\.alerts +[1-9][\d,]* records", out)

    [html] = (workdir / "reports").glob("report-*.html")
    page = html.read_text()
    assert "quarterly evaluation" in page and "Worst SLA breaches" in page
    con = duckdb.connect(str(workdir / "data" / "serving.duckdb"), read_only=True)
    try:
        schemas = {
            row[0] for row in con.execute("SELECT schema_name FROM duckdb_tables()").fetchall()
        }
        [(quarterly,)] = con.execute("SELECT count(*) FROM metrics.kpi_quarterly").fetchall()
    finally:
        con.close()
    assert "raw" not in schemas and quarterly > 100
    # three example queries, each a command that works as printed (in a pipe, uncut)
    commands = [line.strip() for line in out.splitlines() if " --data-dir " in line]
    assert len(commands) == 3 and str(workdir / "data" / "warehouse.duckdb") in out
    channels = subprocess.run(
        commands[1], shell=True, cwd=here, env=plain_env(), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert channels.returncode == 0, channels.stderr
    assert "channel_id" in channels.stdout and "last_activity_at" in channels.stdout
    assert running_broker(workdir / "data" / "broker") is None
    assert processes_under(workdir) == []


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = run_cli("demo", "--events", "1000", "--workdir", str(tmp_path), env=plain_env())
    assert result.returncode == 1
    assert "is not empty and was not made by `commpulse demo`" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("how", ["ctrl-c"])  # SIGTERM takes the same path: see the ingest test
def test_interrupting_the_demo_stops_its_worker_and_broker(tmp_path: Path, how: str) -> None:
    workdir = tmp_path / "demo"
    with running_demo(workdir) as process:
        log = workdir / "logs" / "stream.log"
        # Interrupt it while the stream worker (a child process) is running.
        assert wait_for(lambda: log.exists() and "stream worker" in log.read_text(), timeout=120)
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.terminate()
        _, err = process.communicate(timeout=90)
    assert process.returncode == 130, err
    assert err.strip().endswith("interrupted; stopped cleanly")
    assert "Traceback" not in err
    assert wait_for(lambda: processes_under(workdir) == [], timeout=15), processes_under(workdir)


def test_a_second_demo_or_an_up_on_a_running_demos_directories_is_refused_at_once(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "demo"
    with running_demo(workdir) as first:
        log = workdir / "logs" / "stream.log"
        assert wait_for(lambda: log.exists(), timeout=120)  # it is running its children
        second = run_cli("demo", "--events", "1000", "--workdir", str(workdir), env=plain_env())
        up = run_cli("--data-dir", str(workdir / "data"), "up", env=plain_env(), timeout=30)
        out, err = first.communicate(timeout=300)
    owner = f"is in use by `commpulse demo` (pid {first.pid})"
    assert second.returncode == 1 and second.stderr.strip().splitlines() == [
        f"error: {workdir} {owner}; stop it first, or choose another --workdir"
    ], second.stderr
    assert up.returncode == 1 and up.stderr.strip().splitlines() == [
        f"error: {workdir / 'data'} {owner}; stop it first, or choose another --data-dir"
    ], up.stderr
    # the first demo was not disturbed: it ran to its end with everything it sent
    assert first.returncode == 0, err
    assert "warehouse: 20,000 events stored (0 duplicates, 0 dead-lettered)" in out
