"""``commpulse sql``: read-only SQL against the warehouse, one query or a shell."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from commpulse.cli.console import err, out
from commpulse.cli.root import EXIT_ERROR, EXIT_USAGE, State, app, fail
from commpulse.reading import read_from
from ingest.errors import CommpulseError
from warehouse.sql import QueryResult, ReadOnlySession

PROMPT: Final = "commpulse> "
CONTINUED: Final = "       ..> "
_HELP: Final = """\
End each statement with ; (it may span lines). Only queries run: the warehouse is read-only.
  .tables          list the tables and views
  .schema [NAME]   the CREATE statements of every table and view, or of one
  .help            this text
  .quit            leave (Ctrl-D too)"""
_UNLIMITED: Final = 1_000_000
_NUMERIC: Final = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"}
    | {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)


@app.command()
def sql(
    ctx: typer.Context,
    query: Annotated[
        str | None,
        typer.Argument(help="SQL to run; without it an interactive shell opens (stdin works)."),
    ] = None,
    fmt: Annotated[
        Literal["table", "csv", "json", "parquet"],
        typer.Option("--format", "-f", help="Output format (parquet needs --out)."),
    ] = "table",
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the result to this file instead of stdout."),
    ] = None,
    max_rows: Annotated[
        int, typer.Option(min=1, help="Most rows shown by --format table; the rest are counted.")
    ] = 100,
    snapshot: Annotated[
        bool,
        typer.Option(
            "--snapshot",
            help="Query the published BI snapshot (what is read anyway while a sink holds "
            "the warehouse).",
        ),
    ] = False,
) -> None:
    """Run read-only SQL on the warehouse, or open an SQL shell.

    Only queries run (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, ...): anything that
    would write is refused before it runs, the file is opened read-only, and
    DuckDB's access to other files is switched off. While a running sink holds
    the warehouse, its published snapshot (core and metrics) is read instead.
    """
    if fmt == "parquet" and out_file is None:
        fail("--format parquet needs --out FILE", EXIT_USAGE)
    if fmt == "table" and out_file is not None:
        fail("--out writes csv, json or parquet: add --format", EXIT_USAGE)
    if query is None and fmt != "table":
        fail("the SQL shell prints tables: give a query to use --format", EXIT_USAGE)
    settings = ctx.ensure_object(State).settings()
    if snapshot:
        path = settings.serving_path
    else:  # the warehouse, or its snapshot while a running sink holds it
        source = read_from(settings)
        path, snapshot = source.path, source.snapshot
        if source.note:
            err.print(source.note, markup=False)
    session = ReadOnlySession(path, snapshot=snapshot)
    session.open()
    with session:
        if query is None:
            failed = run_shell(
                session, history=settings.data_dir / "sql_history", max_rows=max_rows
            )
            if failed and not sys.stdin.isatty():  # a script that failed somewhere
                raise typer.Exit(EXIT_ERROR)
        elif fmt == "table":
            for result in session.run(query, max_rows=max_rows):
                show(result)
        else:
            written = session.export(query, fmt, out_file or sys.stdout)
            if out_file is not None:
                err.print(f"wrote {_rows(written)} to {out_file}", markup=False)


def run_shell(session: ReadOnlySession, *, history: Path, max_rows: int) -> int:
    """Read statements until ``.quit`` or end of input; returns how many failed.

    An error is printed and the shell carries on.
    """
    interactive = sys.stdin.isatty()
    if interactive:
        err.print(
            f"commpulse SQL shell on {session.path} (read-only); .help for help", markup=False
        )
    buffer: list[str] = []
    failed = 0
    with _history(history if interactive else None):
        while True:
            try:
                line = input((CONTINUED if buffer else PROMPT) if interactive else "")
            except EOFError:  # Ctrl-D
                if interactive:
                    err.print()
                break
            except KeyboardInterrupt:  # drop the statement being typed, like psql
                buffer.clear()
                err.print()
                continue
            if not buffer and line.strip().startswith("."):
                if line.strip().split()[0].lower() in (".quit", ".exit", ".q"):
                    break
                failed += not _command(session, line.strip())
                continue
            buffer.append(line)
            text = "\n".join(buffer).strip()
            if not text:
                buffer.clear()
            elif text.endswith(";"):
                buffer.clear()
                failed += not _run(session, text, max_rows)
        if "\n".join(buffer).strip():  # a last statement without its ;
            failed += not _run(session, "\n".join(buffer), max_rows)
    return failed


def show(result: QueryResult) -> None:
    """A result as a table, with a note when rows were left out."""
    if not result.columns:
        out.print("OK", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in result.columns:
        table.add_column(column.name, justify="right" if _numeric(column.type) else "left")
    for row in result.rows:
        table.add_row(*(_cell(value) for value in row))
    if out.is_terminal:  # a table that fits the screen
        out.print(table)
    else:  # a pipe or a file gets every character
        natural = out.measure(table, options=out.options.update_width(_UNLIMITED)).maximum
        Console(width=max(out.width, natural), highlight=False).print(table)
    if result.more:
        out.print(
            f"… {result.more:,} more rows (first {len(result.rows):,} shown; "
            "use --max-rows, or --format csv for all)",
            markup=False,
        )
    err.print(f"({_rows(result.total)})", markup=False)


def _run(session: ReadOnlySession, text: str, max_rows: int) -> bool:
    try:
        for result in session.run(text, max_rows=max_rows):
            show(result)
    except CommpulseError as exc:
        _error(str(exc))
        return False
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return False
    return True


def _command(session: ReadOnlySession, line: str) -> bool:
    """Run a dot command other than ``.quit``; False if there is no such command."""
    name = line.split()[0].lower()
    if name == ".tables":
        for info in session.tables():
            out.print(info.qualified + (" (view)" if info.kind == "view" else ""), markup=False)
    elif name == ".schema":
        which = line.split()[1] if len(line.split()) > 1 else None
        statements = session.schema(which)
        if not statements:
            _error(f"no table or view named {which}; .tables lists them")
            return False
        for statement in statements:
            out.print(statement.rstrip(";") + ";", markup=False)
    elif name == ".help":
        out.print(_HELP, markup=False)
    else:
        _error(f"unknown command {name}; try .help")
        return False
    return True


def _error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


@contextmanager
def _history(path: Path | None) -> Iterator[None]:
    """Line editing and a history file, where Python has ``readline``."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline
        yield
        return
    if path is not None:
        with suppress(OSError):
            readline.read_history_file(path)
    try:
        yield
    finally:
        if path is not None:
            readline.set_history_length(1000)
            with suppress(OSError):
                readline.write_history_file(path)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _numeric(kind: str) -> bool:
    return kind in _NUMERIC or kind.startswith("DECIMAL")


def _rows(count: int) -> str:
    return f"{count:,} row" + ("" if count == 1 else "s")
