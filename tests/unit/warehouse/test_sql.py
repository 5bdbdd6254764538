"""``commpulse sql``: exact rows in every format, writes refused, errors in one line, the shell."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from metrics.snapshot import publish_snapshot
from tests.cli import run_main
from warehouse.schema import migrate
from warehouse.sql import ReadOnlySession

KPIS = [
    ("2026Q3", "email:all-hands", "email", "internal", "read_rate", 0.75, 3.0, 4.0, 0.6, True),
    ("2026Q3", None, "email", "internal", "read_rate", 0.5, 5.0, 10.0, 0.6, False),
    ("2026Q3", "chat:web", "chat", "external", "sla_attainment", None, 0.0, 0.0, 0.9, None),
]
QUERY = "SELECT * FROM metrics.kpi_quarterly ORDER BY value NULLS LAST"
COLUMNS = [
    "quarter",
    "channel_id",
    "channel_kind",
    "scope",
    "kpi",
    "value",
    "numerator",
    "denominator",
    "target",
    "met",
]
HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""
EXPECTED = sorted(KPIS, key=lambda row: (row[5] is None, row[5] or 0))


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    try:
        migrate(con)
        con.executemany(
            "INSERT INTO metrics.kpi_quarterly VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", KPIS
        )
        con.execute(
            "INSERT INTO core.requests VALUES ('forum:ideas', 'post-1', 'post', NULL, ?, NULL, "
            "NULL, 3600, NULL, NULL, NULL, 'pending', NULL, 0, 0, NULL)",
            [datetime(2026, 9, 1, 9, tzinfo=UTC)],
        )
    finally:
        con.close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def text(value: object) -> str:
    """How the table and CSV formats write a value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def test_table_shows_the_rows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    code, out, err = run_main(capsys, monkeypatch, "sql", QUERY)
    lines = [line.split() for line in out.splitlines()]
    assert code == 0
    assert lines[0] == COLUMNS
    assert lines[1:] == [[text(value) or "NULL" for value in row] for row in EXPECTED]
    assert err.strip() == "(3 rows)"


def test_a_long_table_is_cut_with_a_note(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    code, out, err = run_main(capsys, monkeypatch, "sql", "SELECT range AS n FROM range(250)")
    lines = out.splitlines()
    assert code == 0
    assert [line.strip() for line in lines[:3]] == ["n", "0", "1"]
    assert lines[100].strip() == "99"
    assert lines[101].startswith("… 150 more rows")
    assert err.strip() == "(250 rows)"


def test_csv_to_stdout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    code, out, _ = run_main(capsys, monkeypatch, "sql", QUERY, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0
    assert rows[0] == COLUMNS
    assert rows[1:] == [[text(value) for value in row] for row in EXPECTED]


def test_json_to_a_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    warehouse: Path,
    tmp_path: Path,
) -> None:
    target = tmp_path / "kpis.json"
    code, out, err = run_main(capsys, monkeypatch, "sql", QUERY, "-f", "json", "--out", str(target))
    assert (code, out, err.strip()) == (0, "", f"wrote 3 rows to {target}")
    assert json.loads(target.read_text()) == [
        dict(zip(COLUMNS, row, strict=True)) for row in EXPECTED
    ]


def test_json_of_nothing_is_an_empty_list(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    code, out, _ = run_main(capsys, monkeypatch, "sql", "SELECT 1 AS a WHERE false", "-f", "json")
    assert code == 0 and json.loads(out) == []


def test_parquet_needs_a_file_and_reads_back(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    warehouse: Path,
    tmp_path: Path,
) -> None:
    code, _, err = run_main(capsys, monkeypatch, "sql", QUERY, "--format", "parquet")
    assert (code, err.strip()) == (2, "error: --format parquet needs --out FILE")

    target = tmp_path / "out" / "kpis.parquet"
    target.parent.mkdir()
    code, _, err = run_main(capsys, monkeypatch, "sql", QUERY, "-f", "parquet", "-o", str(target))
    frame = pl.read_parquet(target)
    assert (code, err.strip()) == (0, f"wrote 3 rows to {target}")
    assert frame.columns == COLUMNS
    assert frame.rows() == EXPECTED
    assert [p.name for p in target.parent.iterdir()] == ["kpis.parquet"]  # no temporary left


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        ("INSERT INTO metrics.kpi_quarterly SELECT * FROM metrics.kpi_quarterly", "INSERT"),
        ("CREATE TABLE core.mine (a INTEGER)", "CREATE"),
        ("DELETE FROM core.requests", "DELETE"),
        ("COPY (SELECT 1) TO '{tmp}/x.csv'", "COPY"),
        ("ATTACH '{tmp}/other.duckdb' AS other; INSERT INTO other.t VALUES (1)", "ATTACH"),
        ("SELECT 1; DROP TABLE core.requests", "DROP"),
        ("EXPORT DATABASE '{tmp}/export'", "EXPORT"),
        ("INSTALL httpfs", "INSTALL"),
        ("SET enable_external_access = true", "SET"),
        ("EXPLAIN ANALYZE UPDATE core.requests SET reopen_count = 9", "UPDATE"),
        ("CHECKPOINT", "CHECKPOINT"),
    ],
)
def test_writes_are_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    warehouse: Path,
    tmp_path: Path,
    statement: str,
    refused: str,
) -> None:
    before = digest(warehouse)
    files = sorted(tmp_path.iterdir())
    code, out, err = run_main(capsys, monkeypatch, "sql", statement.format(tmp=tmp_path))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: commpulse sql is read-only: refused {refused} (only queries")
    assert digest(warehouse) == before
    assert sorted(tmp_path.iterdir()) == files


def test_the_engine_refuses_writes_even_past_the_check(warehouse: Path, tmp_path: Path) -> None:
    """The parser check is the first line; the read-only file and locked settings hold alone."""
    before = digest(warehouse)
    with ReadOnlySession(warehouse) as session:
        attempts = [
            "INSERT INTO core.surveys VALUES ('x', now(), 5)",
            f"COPY (SELECT 1) TO '{tmp_path}/x.csv'",
            f"ATTACH '{tmp_path}/other.duckdb' AS other (READ_WRITE)",
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SELECT * FROM read_csv('/etc/hostname')",
        ]
        for attempt in attempts:
            with pytest.raises(duckdb.Error):
                session.con.execute(attempt).fetchall()
        assert session.run("SELECT count(*) AS n FROM core.reviews")[0].rows == ((1,),)
    assert digest(warehouse) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELEC 1", 'error: Parser Error: syntax error at or near "SELEC"'),
        (
            "SELECT nope FROM core.surveys",
            'error: Binder Error: Referenced column "nope" not found',
        ),
        ("SELECT * FROM core.nope", "error: Catalog Error: Table with name nope does not exist!"),
        ("  ;  ", "error: no SQL statement given"),
    ],
)
def test_sql_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    warehouse: Path,
    query: str,
    message: str,
) -> None:
    code, out, err = run_main(capsys, monkeypatch, "sql", query)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(message)


def test_no_warehouse_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    code, _, err = run_main(capsys, monkeypatch, "sql", "SELECT 1")
    assert code == 1
    assert err.strip() == (
        f"error: no warehouse at {tmp_path / 'warehouse.duckdb'}: run `commpulse sink` first"
    )


def test_a_warehouse_held_by_a_sink_is_read_through_its_snapshot(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    query = "SELECT kpi, value FROM metrics.kpi_quarterly ORDER BY kpi"

    def held() -> tuple[int, str, str, int]:
        """``sql query`` while another process holds the warehouse; and its PID."""
        with subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(warehouse)], stdout=subprocess.PIPE, text=True
        ) as holder:
            try:
                assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
                return (*run_main(capsys, monkeypatch, "sql", query), holder.pid)
            finally:
                holder.kill()

    code, _, err, pid = held()
    assert code == 1 and err.strip() == (  # no snapshot yet: one line that says so
        f"error: the warehouse {warehouse} is held by a running sink (PID {pid}) and it has "
        f"not published a snapshot at {warehouse.parent / 'serving.duckdb'} yet: try again "
        "after its first build"
    )
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        publish_snapshot(con, warehouse.parent / "serving.duckdb")
    finally:
        con.close()
    code, out, err, pid = held()
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == sorted(row[4] for row in KPIS)
    note = err.splitlines()[0]
    assert note.startswith(
        f"the warehouse is held by a running sink (PID {pid}): reading its snapshot "
        f"{warehouse.parent / 'serving.duckdb'}, published 20"
    )


def test_the_shell_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT 42;\n.tables\n.quit\nSELECT 43;\n"))
    code, out, _ = run_main(capsys, monkeypatch, "sql")
    lines = [line.strip() for line in out.splitlines()]
    assert code == 0
    assert lines[:2] == ["42", "42"]  # the column is named after its expression
    assert "core.requests" in lines and "metrics.kpi_quarterly" in lines
    assert "core.reviews (view)" in lines and "raw.events" in lines
    assert "43" not in lines  # .quit left the shell


def test_the_shell_spans_lines_and_survives_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    script = (
        "SELECT\n  1 + 1\n  AS two;\n"
        "SELEC 3;\n"
        "DELETE FROM core.requests;\n"
        ".nope\n"
        "SELECT count(*) AS requests FROM core.requests\n"  # no ; before the end: still runs
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    code, out, err = run_main(capsys, monkeypatch, "sql")
    lines = [line.strip() for line in out.splitlines()]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == ["two", "2", "requests", "1"]
    assert errors == [
        'error: Parser Error: syntax error at or near "SELEC"',
        errors[1],
        "error: unknown command .nope; try .help",
    ]
    assert errors[1].startswith("error: commpulse sql is read-only: refused DELETE")
    assert code == 1  # a script with errors fails, after running to its end


def test_the_shell_shows_the_schema_of_every_table_or_of_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    script = ".schema core.channels\n.schema nope\n.schema\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    code, out, err = run_main(capsys, monkeypatch, "sql")
    statements = [part.strip() for part in out.split(";") if part.strip()]
    assert statements[0].startswith("CREATE TABLE core.channels(channel_id VARCHAR")
    assert "error: no table or view named nope; .tables lists them" in err
    every = statements[1:]
    assert any(s.startswith("CREATE TABLE raw.events(") for s in every)
    assert any(s.startswith("CREATE VIEW core.reviews") for s in every)
    assert len(every) == len(
        [line for line in _tables(monkeypatch, capsys) if line.strip()]
    )  # one statement per table and view
    assert code == 1  # the unknown table failed


def _tables(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(".tables\n"))
    _, out, _ = run_main(capsys, monkeypatch, "sql")
    return out.splitlines()


def test_an_error_that_goes_on_is_printed_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, warehouse: Path
) -> None:
    code, _, err = run_main(capsys, monkeypatch, "sql", "SELECT date_part(1, 'x')")
    lines = err.strip().splitlines()
    assert code == 1 and lines[0].startswith("error: Binder Error: No function matches")
    assert lines[1].strip() == "Candidate functions:"
    candidates = [line.strip() for line in lines[2:]]
    assert "date_part(part VARCHAR, ts DATE) -> DOUBLE" in candidates and len(candidates) > 10
    assert not any(line.startswith(("LINE 1", "^")) for line in candidates)


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_a_reader_that_stops_reading_is_no_error(warehouse: Path, fmt: str) -> None:
    # `commpulse sql ... | head -1`: head closes the pipe after a line
    command = [sys.executable, "-P", "-m", "commpulse", "sql", "--format", fmt,
               "--max-rows", "100000", "SELECT * FROM range(1000000)"]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy()
    ) as process:
        assert process.stdout is not None and process.stdout.readline().strip() == b"range"
        process.stdout.close()
        _, err = process.communicate(timeout=120)
    assert (process.returncode, err) == (0, b"")
