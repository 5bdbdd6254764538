"""Read-only SQL against the warehouse: the query runner behind ``commpulse sql``.

A :class:`ReadOnlySession` stops writes three times over:

1. **Up front.** DuckDB's own parser splits the text into statements and each
   must be a query (``SELECT``/``WITH``/``FROM``/``VALUES``/``TABLE``, ``SHOW``,
   ``DESCRIBE``, ``SUMMARIZE``, ``EXPLAIN [ANALYZE]`` of a query, ``PIVOT``,
   ``PRAGMA``, ``CALL``); if one is not, :class:`ReadOnlyViolation` is raised
   and nothing runs — not even the statements before it.
2. **The file.** The database is opened ``read_only``: DuckDB refuses any
   change to it. (DuckDB lets one process write a file *or* any number read
   it, so while a sink holds the warehouse, query the published snapshot.)
3. **The process.** ``enable_external_access`` is switched off and the
   configuration locked (``lock_configuration``), so no statement can read or
   write another file or the network (``COPY ... TO``, ``ATTACH``, ``EXPORT
   DATABASE``, ``INSTALL``/``LOAD``, ``read_csv('/etc/passwd')``) or switch
   any of that back on. Python replacement scans are off too, so a table name
   never resolves to a variable of this process.

Errors are :class:`QueryError`, one line, as DuckDB words them.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, TextIO

import duckdb
import orjson

from warehouse.schema import WarehouseError, open_warehouse

__all__ = [
    "Column",
    "ExportFormat",
    "QueryError",
    "QueryResult",
    "ReadOnlySession",
    "ReadOnlyViolation",
    "TableInfo",
]

log = logging.getLogger(__name__)

ExportFormat = Literal["csv", "json", "parquet"]

_BATCH: Final = 10_000
# DuckDB settings applied, in this order, before the configuration is locked.
_LOCKDOWN: Final = (
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)
_QUERY_TYPES: Final = frozenset(
    {
        duckdb.StatementType.SELECT,
        duckdb.StatementType.EXPLAIN,
        duckdb.StatementType.PRAGMA,
        duckdb.StatementType.CALL,
        duckdb.StatementType.MULTI,  # PIVOT
    }
)
_QUERY_WORDS: Final = (
    "SELECT",
    "WITH",
    "FROM",
    "VALUES",
    "TABLE",
    "SHOW",
    "DESCRIBE",
    "DESC",
    "SUMMARIZE",
    "EXPLAIN",
    "PIVOT",
    "UNPIVOT",
    "PRAGMA",
    "CALL",
)
# Leading comments and opening parentheses, then the first word of a statement.
_FIRST_WORD: Final = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*([A-Za-z_]*)", re.DOTALL)
_EXPLAIN: Final = re.compile(r"EXPLAIN\s+(?:ANALYZE\s+|\([^)]*\)\s*)?", re.IGNORECASE)


class QueryError(WarehouseError):
    """A statement cannot run: a syntax, binder or catalog error, in one line."""


class ReadOnlyViolation(QueryError):
    """A statement would change something, so nothing of the text was run."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class QueryResult:
    """What one statement returned: the first rows, and how many more there were."""

    statement: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    more: int = 0

    @property
    def total(self) -> int:
        return len(self.rows) + self.more


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    kind: Literal["table", "view"]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


class ReadOnlySession:
    """A read-only, locked-down connection to a warehouse file.

    ``snapshot=True`` opens a published BI snapshot (``commpulse publish``)
    instead, which has no schema version to check. Nothing is opened until
    :meth:`open` (or ``with``); :meth:`close` releases it.
    """

    def __init__(self, path: Path, *, snapshot: bool = False) -> None:
        self.path = path
        self.snapshot = snapshot
        self._con: duckdb.DuckDBPyConnection | None = None

    def open(self) -> None:
        if self._con is not None:
            return
        con = (
            _open_snapshot(self.path)
            if self.snapshot
            else open_warehouse(self.path, read_only=True)
        )
        try:
            for setting in _LOCKDOWN:
                con.execute(setting)
        except BaseException:
            con.close()
            raise
        self._con = con
        log.debug("read-only SQL session opened path=%s", self.path)

    def close(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            finally:
                self._con = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise WarehouseError("the SQL session is not open")
        return self._con

    def check(self, sql: str) -> list[str]:
        """The statements of ``sql``, each a query; raises before anything runs."""
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(_message(exc)) from exc
        if not statements:
            raise QueryError("no SQL statement given")
        for statement in statements:
            self._check_one(statement)
        return [statement.query for statement in statements]

    def run(self, sql: str, *, max_rows: int | None = None) -> list[QueryResult]:
        """Run every statement of ``sql``; each result keeps at most ``max_rows`` rows."""
        results = []
        for statement in self.check(sql):
            try:
                cursor = self.con.execute(statement)
                columns = _columns(cursor)
                if max_rows is None:
                    rows = cursor.fetchall()
                    more = 0
                else:
                    rows = cursor.fetchmany(max_rows) if columns else cursor.fetchall()
                    more = sum(len(batch) for batch in _batches(cursor))
            except duckdb.Error as exc:
                raise QueryError(_message(exc)) from exc
            results.append(QueryResult(statement.strip(), columns, tuple(rows), more))
        return results

    def export(self, sql: str, fmt: ExportFormat, target: Path | TextIO) -> int:
        """Write the result of one query as CSV, JSON or Parquet; returns the rows written.

        A file target is written next to itself first and then moved into place,
        so it is never left half-written. Parquet needs a file.
        """
        statements = self.check(sql)
        if len(statements) != 1:
            raise QueryError(
                f"--format {fmt} writes one result: give one statement, not {len(statements)}"
            )
        if not isinstance(target, Path):
            if fmt == "parquet":
                raise QueryError("--format parquet needs a file: add --out FILE")
            return self._write_text(statements[0], fmt, target)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            if fmt == "parquet":
                written = self._write_parquet(statements[0], temporary)
            else:
                with temporary.open("w", encoding="utf-8", newline="") as stream:
                    written = self._write_text(statements[0], fmt, stream)
            os.replace(temporary, target)
        except OSError as exc:
            raise QueryError(f"cannot write {target}: {exc.strerror or exc}") from exc
        finally:
            temporary.unlink(missing_ok=True)
        return written

    def tables(self) -> list[TableInfo]:
        """The warehouse's tables and views, by schema and name."""
        rows = self.con.execute(
            "SELECT schema_name, table_name, 'table' FROM duckdb_tables() "
            "WHERE database_name = current_database() AND NOT temporary "
            "UNION ALL "
            "SELECT schema_name, view_name, 'view' FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal AND NOT temporary "
            "ORDER BY 1, 2"
        ).fetchall()
        return [TableInfo(schema, name, kind) for schema, name, kind in rows]

    def schema(self, name: str | None = None) -> list[str]:
        """The ``CREATE`` statements of the tables and views (``name``: one, as
        ``schema.table`` or a table name alone); in the order of :meth:`tables`."""
        rows = self.con.execute(
            "SELECT schema_name, table_name, sql FROM duckdb_tables() "
            "WHERE database_name = current_database() AND NOT temporary "
            "UNION ALL "
            "SELECT schema_name, view_name, sql FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal AND NOT temporary "
            "ORDER BY 1, 2"
        ).fetchall()
        return [
            sql
            for schema, table, sql in rows
            if name is None or name.lower() in (table.lower(), f"{schema}.{table}".lower())
        ]

    def _check_one(self, statement: duckdb.Statement) -> None:
        word = _first_word(statement.query)
        try:
            kind = statement.type
        except ValueError:  # a statement type the Python binding cannot even name
            kind = None
        if kind not in _QUERY_TYPES or word not in _QUERY_WORDS:
            raise ReadOnlyViolation(_refusal(word))
        if word == "EXPLAIN":  # EXPLAIN ANALYZE runs what it explains
            inner = _EXPLAIN.sub("", statement.query[statement.query.upper().index(word) :], 1)
            self.check(inner)

    def _write_text(self, statement: str, fmt: Literal["csv", "json"], stream: TextIO) -> int:
        try:
            cursor = self.con.execute(statement)
            columns = _columns(cursor)
            if not columns:
                raise QueryError("the statement returns no result to write")
            names = [column.name for column in columns]
            written = 0
            if fmt == "csv":
                writer = csv.writer(stream, lineterminator="\n")
                writer.writerow(names)
                for batch in _batches(cursor):
                    writer.writerows([_csv_value(value) for value in row] for row in batch)
                    written += len(batch)
            else:
                stream.write("[")
                for batch in _batches(cursor):
                    for row in batch:
                        record = orjson.dumps(
                            dict(zip(names, row, strict=True)),
                            default=_json_value,
                            option=orjson.OPT_NON_STR_KEYS,
                        )
                        stream.write(("\n" if written == 0 else ",\n") + record.decode())
                        written += 1
                stream.write("\n]\n" if written else "]\n")
        except duckdb.Error as exc:
            raise QueryError(_message(exc)) from exc
        return written

    def _write_parquet(self, statement: str, path: Path) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            relation = self.con.sql(statement)
            if relation is None:
                raise QueryError("the statement returns no result to write")
            reader = relation.to_arrow_reader(_BATCH)
            written = 0
            with pq.ParquetWriter(str(path), reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    written += batch.num_rows
        except duckdb.Error as exc:
            raise QueryError(_message(exc)) from exc
        except pa.ArrowException as exc:
            raise QueryError(f"cannot write this result as Parquet: {exc}") from exc
        return written


def _open_snapshot(path: Path) -> duckdb.DuckDBPyConnection:
    if not path.is_file():
        raise WarehouseError(f"no snapshot at {path}: run `commpulse publish` first")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open the snapshot {path}: {_message(exc)}") from exc


def _columns(cursor: duckdb.DuckDBPyConnection) -> tuple[Column, ...]:
    description = cursor.description
    if not description:
        return ()
    return tuple(Column(name, str(kind)) for name, kind, *_ in description)


def _batches(cursor: duckdb.DuckDBPyConnection) -> Iterator[list[tuple[Any, ...]]]:
    """The rest of a result in batches, read to its end (DuckDB 2 insists)."""
    while batch := cursor.fetchmany(_BATCH):
        yield batch


def _first_word(sql: str) -> str:
    match = _FIRST_WORD.match(sql)
    return match.group(1).upper() if match else ""


def _refusal(word: str) -> str:
    return (
        f"commpulse sql is read-only: refused {word or 'the statement'} "
        "(only queries run: SELECT, WITH, FROM, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN, PIVOT, "
        "PRAGMA, CALL)"
    )


def _message(exc: BaseException) -> str:
    """DuckDB's message without its caret diagram (``LINE 1: ...`` and the carets under it).

    One line where DuckDB adds one line to it (a "Did you mean" or "Candidate bindings"
    hint, joined to it); a message that goes on (the ``Candidate functions:`` of a call
    that matched none) keeps every line, the list indented: the list is the answer.
    """
    lines: list[str] = []
    for line in str(exc).splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    if not lines:
        return type(exc).__name__
    if len(lines) <= 2:
        return " ".join(lines)
    return "\n".join([lines[0], lines[1], *(f"  {line}" for line in lines[2:])])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta | bytes):
        return _json_value(value)
    if isinstance(value, list | dict):
        return orjson.dumps(value, default=_json_value, option=orjson.OPT_NON_STR_KEYS).decode()
    return value


def _json_value(value: Any) -> Any:
    """What orjson cannot write itself: DECIMAL, INTERVAL, BLOB, and anything else as text."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
