"""``commpulse publish``: core and metrics in a new file, nothing of raw, swapped in atomically."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
import sqlalchemy

from metrics.snapshot import SnapshotError, SnapshotResult, publish_snapshot
from tests.cli import run_main
from warehouse.schema import migrate

T = datetime(2026, 9, 1, 9, 30, tzinfo=UTC)
DAY = date(2026, 9, 1)
MARKER = "RAWONLY"  # only raw.events and ops.offsets hold it
ROWS: dict[str, list[tuple[Any, ...]]] = {
    "core.channels": [
        ("email:all-hands", "email", "internal", "All hands", "default", 86400.0, T, T, None, 12),
        ("chat:web", "chat", "external", None, "support", 3600.0, T, T, None, 3),
    ],
    "core.calendar": [(DAY, "default", "Europe/Berlin", True, False, False, 28800.0, "2026Q3")],
    "core.requests": [
        ("chat:web", "c-1", "message", None, T, T, T, 600.0, T, 60.0, 60.0, "met", T, 0, 1, True),
        ("forum:ideas", "p-1", "post", "idea", T, T, T, 3600.0, None, None, None, "breached",
         None, 0, 0, None),
    ],
    "core.messages": [("email:all-hands", "m-1", T, "sender-1", 10, 7, T, False, False, True)],
    "core.meetings": [("meet:weekly", T, 3600.0, 3000.0, True)],
    "core.surveys": [("chat:web", T, 5)],
    "core.activity": [("email:all-hands", DAY, "actor-1"), ("chat:web", DAY, "actor-2")],
    "core.channel_days": [("email:all-hands", DAY, 3), ("chat:web", DAY, 2)],
    "core.working_periods": [("default", T, T, 0.0, 3600.0, 0.0, 3600.0)],
    "metrics.kpi_daily": [
        (DAY, "email:all-hands", "email", "internal", "read_rate", 0.7, 7.0, 10.0),
        (DAY, None, "email", "internal", "read_rate", 0.7, 7.0, 10.0),
    ],
    "metrics.kpi_quarterly": [
        ("2026Q3", "email:all-hands", "email", "internal", "read_rate", 0.7, 7.0, 10.0, 0.6, True),
        ("2026Q3", "chat:web", "chat", "external", "sla_attainment", 1.0, 1.0, 1.0, 0.9, True),
    ],
    "metrics.channel_health": [
        ("email:all-hands", "email", "internal", T, 86400.0, 3600.0, False, False, T,
         "All hands")
    ],
    "metrics.quarterly_evaluation": [
        ("2026Q3", "email:all-hands", "email", "internal", "read_rate", 0.7, 0.6, True, 0.65,
         0.05, "B"),
    ],
    "raw.events": [
        (uuid.uuid4(), 1, "message_sent", T, "email:all-hands", "email", "internal",
         f"actor-{MARKER}", "employee", f"conv-{MARKER}", f"msg-{MARKER}", None, 10, None, None,
         None, None, None, None, f"dept-{MARKER}", f"topic-{MARKER}", 3, 424242, T),
    ],
    "ops.offsets": [(f"topic-{MARKER}", 3, 424243, T)],
    "ops.builds": [(T, 1, T, 0.25, "full", T, "0123abcd", "{}", None, None)],
}  # fmt: skip
PUBLISHED = sorted(name for name in ROWS if name.startswith(("core.", "metrics.")))


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    try:
        migrate(con)
        for table, rows in ROWS.items():
            marks = ", ".join("?" * len(rows[0]))
            con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        yield con
    finally:
        con.close()


def rows(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[Any, ...]]:
    return con.execute(f"SELECT * FROM {relation} ORDER BY ALL").fetchall()


def relations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT schema_name || '.' || table_name, 'table' FROM duckdb_tables() "
        "UNION ALL SELECT schema_name || '.' || view_name, 'view' FROM duckdb_views() "
        "WHERE NOT internal ORDER BY 1"
    ).fetchall()


def marked(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    """Rows of ``relation`` with the raw-only marker in any column."""
    columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    where = " OR ".join(f'CAST("{column}" AS VARCHAR) LIKE ?' for column in columns)
    found = con.execute(
        f"SELECT count(*) FROM {relation} WHERE {where}", [f"%{MARKER}%"] * len(columns)
    ).fetchall()
    return int(found[0][0])


def publish(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> SnapshotResult:
    return publish_snapshot(con, tmp_path / "serve" / "serving.duckdb", now=T)


def test_the_snapshot_has_core_and_metrics_with_the_same_rows(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    result = publish(warehouse, tmp_path)
    assert result.path == tmp_path / "serve" / "serving.duckdb"
    assert (result.schema_version, result.data_as_of, result.published_at) == (6, T, T)
    assert result.skipped_views == ()
    published = {table.qualified: table for table in result.tables}
    assert sorted(published) == sorted([*PUBLISHED, "core.reviews", "meta.snapshot"])
    snapshot = duckdb.connect(str(result.path), read_only=True)
    try:
        assert relations(snapshot) == sorted(
            [(name, "table") for name in [*PUBLISHED, "meta.snapshot"]] + [("core.reviews", "view")]
        )
        for name in PUBLISHED:
            assert rows(snapshot, name) == rows(warehouse, name), name
            assert published[name].rows == len(ROWS[name])
            assert published[name].kind == "table"
        assert published["core.reviews"].kind == "view"
        assert rows(snapshot, "core.reviews") == rows(warehouse, "core.reviews")
        assert [row[1] for row in rows(snapshot, "core.reviews")] == ["p-1"]
        assert rows(snapshot, "meta.snapshot") == [(T, 6, T, T)]
        schemas = snapshot.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE NOT internal ORDER BY 1"
        ).fetchall()
        assert schemas == [("core",), ("meta",), ("metrics",)]
        tags = snapshot.execute(
            "SELECT tags FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchall()
        assert tags == [({"storage_version": "v1.0.0+"},)]  # DuckDB 1.x BI drivers read it
    finally:
        snapshot.close()


def test_nothing_of_raw_reaches_the_snapshot(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    assert marked(warehouse, "raw.events") == 1  # the scan finds the marker where it is
    result = publish(warehouse, tmp_path)
    files = [result.path, *sorted(result.parquet_dir.iterdir())]
    for file in files:
        assert MARKER.encode() not in file.read_bytes(), file
    snapshot = duckdb.connect(str(result.path), read_only=True)
    try:
        for name, _ in relations(snapshot):
            assert marked(snapshot, name) == 0, name
        kafka_columns = snapshot.execute(
            "SELECT table_schema || '.' || table_name || '.' || column_name "
            "FROM information_schema.columns WHERE column_name IN ('topic', 'partition', 'offset')"
        ).fetchall()
        assert kafka_columns == []
    finally:
        snapshot.close()
    for file in files[1:]:
        assert marked(warehouse, f"read_parquet('{file}')") == 0, file


def test_a_view_over_unpublished_tables_is_left_out(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    warehouse.execute("CREATE VIEW core.leaky AS SELECT actor_id FROM raw.events")
    result = publish(warehouse, tmp_path)
    assert result.skipped_views == ("core.leaky",)
    assert "core.leaky" not in {table.qualified for table in result.tables}
    assert not (result.parquet_dir / "core.leaky.parquet").exists()
    assert MARKER.encode() not in result.path.read_bytes()


def test_the_parquet_files_hold_the_same_rows(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    result = publish(warehouse, tmp_path)
    assert result.parquet_dir == tmp_path / "serve" / "parquet"
    names = sorted(path.name for path in result.parquet_dir.iterdir())
    assert names == sorted(f"{table.qualified}.parquet" for table in result.tables)
    for table in result.tables:
        assert table.parquet == result.parquet_dir / f"{table.qualified}.parquet"
        assert pl.read_parquet(table.parquet).height == table.rows, table.qualified
        if table.schema != "meta":
            assert rows(warehouse, f"read_parquet('{table.parquet}')") == rows(
                warehouse, table.qualified
            )
    kpis = pl.read_parquet(result.parquet_dir / "metrics.kpi_quarterly.parquet")
    assert sorted(kpis.rows()) == sorted(ROWS["metrics.kpi_quarterly"])


def test_a_second_publish_replaces_the_file_under_open_readers(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = publish(warehouse, tmp_path)
    inode = first.path.stat().st_ino
    stale = first.parquet_dir / "core.gone.parquet"
    stale.write_bytes(b"a table no longer published")
    reader = duckdb.connect(str(first.path), read_only=True)
    try:
        warehouse.execute(
            "INSERT INTO metrics.kpi_quarterly VALUES "
            "('2026Q4', NULL, 'chat', 'external', 'volume', 9, NULL, NULL, NULL, NULL)"
        )
        second = publish(warehouse, tmp_path)
        assert second.path == first.path and second.path.stat().st_ino != inode
        # The reader keeps the file it opened, whole: the old rows, still readable.
        assert len(rows(reader, "metrics.kpi_quarterly")) == 2
        assert len(rows(reader, "core.reviews")) == 1
    finally:
        reader.close()
    fresh = duckdb.connect(str(second.path), read_only=True)
    try:
        assert len(rows(fresh, "metrics.kpi_quarterly")) == 3
    finally:
        fresh.close()
    assert pl.read_parquet(second.parquet_dir / "metrics.kpi_quarterly.parquet").height == 3
    assert not stale.exists()
    assert sorted(path.name for path in second.path.parent.iterdir()) == [
        "parquet",
        "serving.duckdb",
    ]  # no temporary file or directory left behind


@pytest.mark.parametrize("uri_option", [False, True], ids=["connect_args", "uri"])
def test_bi_tools_read_it_through_sqlalchemy(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, uri_option: bool
) -> None:
    """As Superset does, with duckdb-engine; the URI form is the one docs/bi.md gives."""
    result = publish(warehouse, tmp_path)
    if uri_option:
        engine = sqlalchemy.create_engine(f"duckdb:///{result.path}?access_mode=read_only")
    else:
        engine = sqlalchemy.create_engine(
            "duckdb:///" + str(result.path), connect_args={"read_only": True}
        )
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sqlalchemy.text(
                    "SELECT quarter, channel_id, kpi, value, target, met "
                    "FROM metrics.kpi_quarterly ORDER BY kpi"
                )
            ).all()
            inspector = sqlalchemy.inspect(connection)
            tables = inspector.get_table_names(schema="metrics")
            columns = inspector.get_columns("kpi_quarterly", schema="metrics")  # Superset asks
            with pytest.raises(sqlalchemy.exc.DBAPIError, match="read-only"):
                connection.execute(sqlalchemy.text("DELETE FROM metrics.kpi_quarterly"))
    finally:
        engine.dispose()
    assert [tuple(row) for row in found] == [
        ("2026Q3", "email:all-hands", "read_rate", 0.7, 0.6, True),
        ("2026Q3", "chat:web", "sla_attainment", 1.0, 0.9, True),
    ]
    assert sorted(tables) == [name.split(".")[1] for name in PUBLISHED if "metrics." in name]
    assert [c["name"] for c in columns][:3] == ["quarter", "channel_id", "channel_kind"]


def test_a_warehouse_without_tables_is_refused(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    try:
        with pytest.raises(SnapshotError, match="no core or metrics tables to publish"):
            publish(con, tmp_path)
    finally:
        con.close()
    assert not (tmp_path / "serve" / "serving.duckdb").exists()


def test_publish_command_reports_what_it_wrote(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    warehouse: duckdb.DuckDBPyConnection,
    tmp_path: Path,
) -> None:
    warehouse.close()  # the command opens it itself
    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    code, out, err = run_main(capsys, monkeypatch, "publish")
    lines = [line.split() for line in out.splitlines()]
    assert (code, err) == (0, "")
    assert lines[0] == ["table", "kind", "rows", "parquet"]
    assert ["metrics.kpi_quarterly", "table", "2", "metrics.kpi_quarterly.parquet"] in lines
    assert ["core.reviews", "view", "1", "core.reviews.parquet"] in lines
    assert lines[-2:] == [
        ["snapshot", str(tmp_path / "serving.duckdb")],
        ["parquet", f"{tmp_path / 'parquet'}/"],
    ]
    # ... and the analyst can query it while a sink holds the warehouse.
    code, out, _ = run_main(
        capsys, monkeypatch, "sql", "--snapshot", "SELECT count(*) AS n FROM core.reviews"
    )
    assert (code, out.split()) == (0, ["n", "1"])
    code, _, err = run_main(capsys, monkeypatch, "sql", "--snapshot", "SELECT * FROM raw.events")
    assert code == 1 and err.startswith(
        'error: Catalog Error: Table with name "raw.events" does not exist'
    )


def test_publish_without_a_warehouse_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    code, _, err = run_main(capsys, monkeypatch, "publish")
    assert code == 1
    assert err.strip() == (
        f"error: no warehouse at {tmp_path / 'warehouse.duckdb'}: run `commpulse sink` first"
    )
