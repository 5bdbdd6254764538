"""The BI snapshot: the ``core`` and ``metrics`` schemas as a separate, read-only file.

BI tools (Superset, Metabase, Grafana, Excel) never open the warehouse: DuckDB
lets one process write a file *or* many read it, and the sink writes the
warehouse. :func:`publish_snapshot` copies what they may see into a new
DuckDB file and Parquet files, then moves them into place:

* ``serving.duckdb`` — the tables of ``core`` and ``metrics`` (data and column
  types; not their keys or constraints), their views recreated *as views* from
  their own definitions, and ``meta.snapshot`` (one row: when, which schema
  version, how fresh the data is). Nothing of ``raw`` (pseudonymised actors
  with their Kafka positions) or ``ops`` is copied. The new file is written
  next to the old one and ``os.replace``-d onto it, so a reader that had the
  old file open keeps reading it, and a new reader sees the whole new one.
  It is written in the storage format of DuckDB 1.0 (:data:`STORAGE_VERSION`),
  which BI drivers embedding an older DuckDB than ours can still read.
* ``parquet/<schema>.<table>.parquet`` — one file per table, view (its rows)
  and ``meta.snapshot``, written to a temporary directory and each moved
  into place atomically; files of tables no longer published are removed.

A view whose definition does not bind in the snapshot (it reads a schema that
is not published) is left out and named in the result, never materialised.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import duckdb

from ingest.errors import CommpulseError

__all__ = [
    "PUBLISHED_SCHEMAS",
    "STORAGE_VERSION",
    "PublishedTable",
    "SnapshotError",
    "SnapshotResult",
    "publish_snapshot",
]

log = logging.getLogger(__name__)

PUBLISHED_SCHEMAS: Final = ("core", "metrics")
#: The oldest DuckDB that can read the snapshot. DuckDB 2 writes, by default, a
#: storage format no DuckDB 1.x reads — and BI drivers embed their own DuckDB.
STORAGE_VERSION: Final = "v1.0.0"
_ALIAS: Final = "commpulse_snapshot"
_META: Final = """
CREATE SCHEMA {db}.meta;
CREATE TABLE {db}.meta.snapshot (
    published_at    TIMESTAMPTZ NOT NULL,
    schema_version  INTEGER NOT NULL,  -- of the warehouse it was copied from
    built_at        TIMESTAMPTZ,       -- the last build of core and metrics
    data_as_of      TIMESTAMPTZ        -- the latest event that build saw
);
"""


class SnapshotError(CommpulseError):
    """The BI snapshot could not be written or put in place."""


@dataclass(frozen=True)
class PublishedTable:
    schema: str
    name: str
    kind: Literal["table", "view"]
    rows: int
    parquet: Path

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class SnapshotResult:
    path: Path
    parquet_dir: Path
    published_at: datetime
    schema_version: int
    data_as_of: datetime | None
    tables: tuple[PublishedTable, ...]
    skipped_views: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables if table.kind == "table")


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    serving_path: Path,
    parquet_dir: Path | None = None,
    *,
    now: datetime | None = None,
    storage_version: str = STORAGE_VERSION,
) -> SnapshotResult:
    """Copy ``core`` and ``metrics`` of the warehouse open in ``con`` to ``serving_path``.

    ``con`` may be read-only; it must be allowed to attach files and must not be
    in a transaction. Parquet files go to ``parquet_dir`` (default: ``parquet/``
    beside ``serving_path``). The file is readable by DuckDB ``storage_version``
    and later.
    """
    published_at = now or datetime.now(UTC)
    parquet_dir = parquet_dir or serving_path.parent / "parquet"
    serving_path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    new_file = serving_path.with_name(f".{serving_path.name}.{token}.tmp")
    new_parquet = parquet_dir.with_name(f".{parquet_dir.name}.{token}.tmp")
    try:
        source = _source(con)
        _copy_tables(con, source, new_file, published_at, storage_version)
        new_parquet.mkdir(parents=True)
        tables, skipped = _finish(new_file, source, new_parquet)
        _put_in_place(new_file, serving_path)
        files = _put_parquet_in_place(new_parquet, parquet_dir)
    except duckdb.Error as exc:
        raise SnapshotError(f"cannot publish the snapshot: {_one_line(exc)}") from exc
    except OSError as exc:
        raise SnapshotError(f"cannot publish the snapshot to {serving_path}: {exc}") from exc
    finally:
        for leftover in (new_file, Path(f"{new_file}.wal")):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(new_parquet, ignore_errors=True)
    published = tuple(
        PublishedTable(t.schema, t.name, t.kind, t.rows, files[t.parquet.name]) for t in tables
    )
    log.info(
        "snapshot published path=%s tables=%s rows=%s",
        serving_path,
        len(published),
        sum(t.rows for t in published),
    )
    return SnapshotResult(
        path=serving_path,
        parquet_dir=parquet_dir,
        published_at=published_at,
        schema_version=source.schema_version,
        data_as_of=source.data_as_of,
        tables=published,
        skipped_views=skipped,
    )


@dataclass(frozen=True)
class _Source:
    database: str
    tables: tuple[tuple[str, str], ...]
    views: tuple[tuple[str, str, str], ...]  # schema, name, CREATE VIEW statement
    schema_version: int
    built_at: datetime | None
    data_as_of: datetime | None


def _source(con: duckdb.DuckDBPyConnection) -> _Source:
    database = _rows(con, "SELECT current_database()")[0][0]
    where = "database_name = ? AND list_contains(?, schema_name) AND NOT temporary"
    params: list[Any] = [database, list(PUBLISHED_SCHEMAS)]
    tables = _rows(
        con,
        f"SELECT schema_name, table_name FROM duckdb_tables() WHERE {where} ORDER BY 1, 2",
        params,
    )
    if not tables:
        raise SnapshotError(
            f"the warehouse has no {' or '.join(PUBLISHED_SCHEMAS)} tables to publish"
        )
    views = _rows(
        con,
        f"SELECT schema_name, view_name, sql FROM duckdb_views() WHERE {where} AND NOT internal "
        "ORDER BY 1, 2",
        params,
    )
    ops = {
        name
        for (name,) in _rows(
            con,
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'ops'",
            [database],
        )
    }
    version = 0
    if "schema_version" in ops:
        version = _rows(
            con, f"SELECT coalesce(max(version), 0) FROM {_id(database)}.ops.schema_version"
        )[0][0]
    built_at = data_as_of = None
    if "builds" in ops:
        latest = _rows(
            con,
            f"SELECT built_at, as_of FROM {_id(database)}.ops.builds ORDER BY built_at DESC LIMIT 1",
        )
        if latest:
            built_at, data_as_of = latest[0]
    return _Source(database, tuple(tables), tuple(views), int(version), built_at, data_as_of)


def _copy_tables(
    con: duckdb.DuckDBPyConnection,
    source: _Source,
    new_file: Path,
    published_at: datetime,
    storage_version: str,
) -> None:
    """Every published table into ``new_file``, read in one transaction (one consistent state)."""
    con.execute(
        f"ATTACH {_literal(str(new_file))} AS {_ALIAS} "
        f"(READ_WRITE, STORAGE_VERSION {_literal(storage_version)})"
    )
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            for schema in PUBLISHED_SCHEMAS:
                con.execute(f"CREATE SCHEMA {_ALIAS}.{_id(schema)}")
            for schema, name in source.tables:
                con.execute(
                    f"CREATE TABLE {_ALIAS}.{_id(schema)}.{_id(name)} AS "
                    f"SELECT * FROM {_id(source.database)}.{_id(schema)}.{_id(name)}"
                )
            con.execute(_META.format(db=_ALIAS))
            con.execute(
                f"INSERT INTO {_ALIAS}.meta.snapshot VALUES (?, ?, ?, ?)",
                [published_at, source.schema_version, source.built_at, source.data_as_of],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.execute(f"DETACH {_ALIAS}")


def _finish(
    new_file: Path, source: _Source, parquet_dir: Path
) -> tuple[list[PublishedTable], tuple[str, ...]]:
    """Views recreated, row counts taken and Parquet written, all from the new file itself."""
    snap = duckdb.connect(str(new_file))
    try:
        skipped = _create_views(snap, source.views)
        listed = _rows(
            snap,
            "SELECT schema_name, table_name, 'table' FROM duckdb_tables() "
            "UNION ALL SELECT schema_name, view_name, 'view' FROM duckdb_views() WHERE NOT internal "
            "ORDER BY 1, 2",
        )
        tables = []
        for schema, name, kind in listed:
            qualified = f"{_id(schema)}.{_id(name)}"
            rows = int(_rows(snap, f"SELECT count(*) FROM {qualified}")[0][0])
            parquet = parquet_dir / f"{schema}.{name}.parquet"
            snap.execute(
                f"COPY (SELECT * FROM {qualified}) TO {_literal(str(parquet))} (FORMAT parquet)"
            )
            tables.append(PublishedTable(schema, name, kind, rows, parquet))
        snap.execute("CHECKPOINT")
    finally:
        snap.close()
    return tables, skipped


def _create_views(
    snap: duckdb.DuckDBPyConnection, views: tuple[tuple[str, str, str], ...]
) -> tuple[str, ...]:
    """Each view from its own ``CREATE VIEW``; views over views may need several rounds."""
    pending = list(views)
    while pending:
        failed = []
        for schema, name, statement in pending:
            try:
                snap.execute(statement)
            except duckdb.Error as exc:
                failed.append((schema, name, statement))
                log.debug("view not created yet view=%s.%s error=%s", schema, name, _one_line(exc))
        if len(failed) == len(pending):
            break
        pending = failed
    skipped = tuple(f"{schema}.{name}" for schema, name, _ in pending)
    for view in skipped:
        log.warning("view left out of the snapshot view=%s: it reads what is not published", view)
    return skipped


def _put_in_place(new_file: Path, serving_path: Path) -> None:
    if Path(f"{new_file}.wal").exists():
        raise SnapshotError(f"the new snapshot {new_file} was not checkpointed")
    # A write-ahead log left by someone who wrote to the old snapshot would be
    # replayed onto the new one: it is stale either way.
    Path(f"{serving_path}.wal").unlink(missing_ok=True)
    try:
        os.replace(new_file, serving_path)
    except PermissionError as exc:  # Windows: a reader holds the old file open
        raise SnapshotError(
            f"cannot replace {serving_path}: it is open elsewhere ({exc.strerror})"
        ) from exc


def _put_parquet_in_place(new_dir: Path, parquet_dir: Path) -> dict[str, Path]:
    """Each new file moved over the old one (atomic per file), stale files removed."""
    parquet_dir.mkdir(parents=True, exist_ok=True)
    placed = {}
    for file in sorted(new_dir.iterdir()):
        target = parquet_dir / file.name
        os.replace(file, target)
        placed[file.name] = target
    for stale in parquet_dir.glob("*.parquet"):
        if stale.name not in placed:
            stale.unlink(missing_ok=True)
    return placed


def _rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


def _id(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
