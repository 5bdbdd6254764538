"""Numbered migrations: a new file gets them all, an older file is upgraded, a newer refused."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from warehouse.schema import MIGRATIONS, WarehouseError, open_warehouse, version_of


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()
    return {name for (name,) in rows}


def test_an_older_file_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE SCHEMA ops; CREATE TABLE ops.schema_version (version INTEGER PRIMARY KEY, "
        "description VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    con.execute(MIGRATIONS[0].sql)  # a file written when version 1 was the latest
    con.execute("INSERT INTO ops.schema_version (version, description) VALUES (1, 'v1')")
    con.execute("INSERT INTO ops.offsets VALUES ('commpulse.events', 0, 42, now())")
    con.close()

    upgraded = open_warehouse(path)
    try:
        assert version_of(upgraded) == MIGRATIONS[-1].version == 6
        assert {
            "core.requests", "core.working_periods", "core.channel_days", "metrics.kpi_daily",
            "metrics.quarterly_evaluation", "ops.message_strays",
        } <= tables(upgraded)  # fmt: skip
        assert upgraded.execute("SELECT next_offset FROM ops.offsets").fetchall() == [(42,)]
        versions = upgraded.execute("SELECT version FROM ops.schema_version ORDER BY 1").fetchall()
        assert versions == [(1,), (2,), (3,), (4,), (5,), (6,)]
        health = upgraded.execute("DESCRIBE metrics.channel_health").fetchall()
        assert [column[0] for column in health][-1] == "name"
    finally:
        upgraded.close()


def test_read_only_opens_refuse_an_outdated_file_and_a_missing_one(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="no warehouse at .*run `commpulse sink` first"):
        open_warehouse(tmp_path / "missing.duckdb", read_only=True)
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(WarehouseError, match="schema version 0, expected 6"):
        open_warehouse(path, read_only=True)


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    open_warehouse(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO ops.schema_version (version, description) VALUES (99, 'future')")
    con.close()
    with pytest.raises(WarehouseError, match="schema version 99, newer than this commpulse"):
        open_warehouse(path)
