"""``commpulse quality``: the table, the recorded run, the exit codes, a locked warehouse."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from metrics.snapshot import publish_snapshot
from quality import SUITE_NAMES, check_warehouse
from quality.checks import QualityError
from tests.cli import run_main


@pytest.fixture
def data_dir(clean_warehouse: Path, tmp_path: Path) -> Path:
    shutil.copy(clean_warehouse, tmp_path / "warehouse.duckdb")
    return tmp_path


def change(path: Path, sql: str) -> None:
    """Run ``sql`` on the warehouse at ``path`` (a corruption the suites must find)."""
    con = duckdb.connect(str(path))
    try:
        con.execute(sql)
    finally:
        con.close()


@contextmanager
def holding(path: Path) -> Iterator[int]:
    """Another process holds the warehouse at ``path`` (as a running sink does); its PID."""
    hold = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); input()"
    with subprocess.Popen(
        [sys.executable, "-c", hold, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    ) as holder:  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "open\n"
            yield holder.pid
        finally:
            holder.communicate("\n", timeout=30)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_clean_warehouse_exits_0_and_records_the_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    args = ["--data-dir", str(data_dir), "quality", "-s", "core.messages", "-s", "core.surveys"]
    code, out, err = run_main(capsys, monkeypatch, *args)
    assert code == 0, err
    assert "core.messages  readers_at_most_recipients" in out
    assert "6 expectations in 2 suites: 6 passed, 0 critical failed, 0 warnings" in out
    recorded = rows(data_dir / "warehouse.duckdb", "SELECT suite, success FROM ops.quality_runs")
    assert sorted(recorded) == [("core.messages", True), ("core.surveys", True)]


def test_a_critical_failure_exits_1_and_shows_the_rows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    path = data_dir / "warehouse.duckdb"
    change(
        path,
        "UPDATE core.surveys SET score = 9 "
        "WHERE answered_at = (SELECT min(answered_at) FROM core.surveys)",
    )
    code, out, err = run_main(
        capsys, monkeypatch, "--data-dir", str(data_dir), "quality", "--suite", "core.surveys"
    )
    assert code == 1
    assert err.strip() == "error: 1 critical expectation(s) failed: score_1_to_5 (core.surveys)"
    [line] = [line for line in out.splitlines() if "score_1_to_5" in line]
    assert line.split()[3:6] == ["critical", "NO", "1"] and '"score":9' in line
    assert rows(path, "SELECT success, critical_failures FROM ops.quality_runs") == [(False, 1)]


def test_no_record_leaves_the_file_untouched(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    args = ["--data-dir", str(data_dir), "quality", "-s", "core.surveys", "--no-record"]
    code, out, _ = run_main(capsys, monkeypatch, *args)
    assert code == 0 and out.rstrip().endswith("not recorded")
    assert rows(data_dir / "warehouse.duckdb", "SELECT count(*) FROM ops.quality_runs") == [(0,)]


def test_an_unknown_suite_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    code, _, err = run_main(
        capsys, monkeypatch, "--data-dir", str(data_dir), "quality", "-s", "nope"
    )
    assert code == 2 and "unknown suite 'nope': choose from events, core.requests" in err


def test_a_warehouse_held_by_a_sink_is_checked_through_its_snapshot(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    path = data_dir / "warehouse.duckdb"

    def held(*args: str) -> tuple[int, str, str, int]:
        with holding(path) as pid:
            return (*run_main(capsys, monkeypatch, "--data-dir", str(data_dir), *args), pid)

    code, _, err, pid = held("quality")
    assert code == 1
    [line] = err.strip().splitlines()
    assert line == (
        f"error: the warehouse {path} is held by a running sink (PID {pid}) and it has not "
        f"published a snapshot at {data_dir / 'serving.duckdb'} yet: try again after its "
        "first build"
    )
    con = duckdb.connect(str(path), read_only=True)
    try:
        publish_snapshot(con, data_dir / "serving.duckdb")
    finally:
        con.close()
    code, out, err, pid = held("quality")
    assert code == 0, err
    assert err.splitlines()[0].startswith(
        f"the warehouse is held by a running sink (PID {pid}): reading its snapshot "
    )
    table = out.splitlines()[1:]
    suites = {cells[0] for cells in map(str.split, table) if cells and cells[0] in SUITE_NAMES}
    assert {"core.requests", "core.messages", "metrics"} <= suites and "events" not in suites
    assert "not recorded (the snapshot is read-only)" in out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith(
        "not checked on the snapshot (they read raw or ops; run again once the sink stops): "
    )
    assert "volume_row_per_active_day (metrics)" in last and "(events)" in last
    assert rows(path, "SELECT count(*) FROM ops.quality_runs") == [(0,)]


def test_in_a_pipe_every_expectation_is_named_in_full_and_the_last_line_names_the_failures(
    data_dir: Path,
) -> None:
    # as in a CI log: stdout and stderr are pipes, and no COLUMNS says how wide to be
    change(
        data_dir / "warehouse.duckdb",
        "UPDATE core.requests SET first_response_at = opened_at - INTERVAL 1 HOUR "
        "WHERE conversation_id = (SELECT min(conversation_id) FROM core.requests "
        "WHERE first_response_at IS NOT NULL)",
    )
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "commpulse", "--data-dir", str(data_dir), "quality",
         "-s", "core.requests"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    table = done.stdout.splitlines()
    for name in (
        "first_response_after_opening",
        "first_response_business_s_non_negative",
        "business_time_within_calendar_time",
        "pending_has_no_first_response",
    ):
        [row] = [line for line in table if f" {name} " in line]
        assert row.startswith("core.requests")
    [failed] = [line for line in table if " first_response_after_opening " in line]
    cells = [cell.strip() for cell in re.split(r"\s{2,}", failed)]
    assert cells[:5] == [
        "core.requests",
        "first_response_after_opening",
        "first_response_at, opened_at",
        "critical",
        "NO",
    ]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "critical expectation(s) failed: " in last
    assert "first_response_after_opening (core.requests)" in last


def test_checking_a_held_warehouse_directly_is_one_line_naming_the_holder(data_dir: Path) -> None:
    # what `commpulse quality` meets if a sink takes the file between its look and its open
    path = data_dir / "warehouse.duckdb"
    with holding(path) as pid, pytest.raises(QualityError) as refused:
        check_warehouse(path, ["core.surveys"])
    assert str(refused.value).startswith(
        f"the warehouse {path} is locked by another process (PID {pid}), most likely a "
        "running `commpulse sink`"
    )
