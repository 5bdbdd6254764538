"""``commpulse publish``: the read-only BI snapshot of the warehouse."""

from __future__ import annotations

import typer
from rich.table import Table

from commpulse.cli.console import err, out
from commpulse.cli.root import State, app
from metrics.snapshot import SnapshotResult, publish_snapshot
from warehouse.schema import open_warehouse


@app.command()
def publish(ctx: typer.Context) -> None:
    """Write the read-only BI snapshot: DuckDB and Parquet files.

    The snapshot (default <data dir>/serving.duckdb, with parquet/ beside it)
    holds the core and metrics schemas and a meta.snapshot row, never the raw
    events or the ops tables. It is written aside and then moved over the old
    one, so BI tools reading it are never broken. See docs/bi.md.
    """
    settings = ctx.ensure_object(State).settings()
    con = open_warehouse(settings.warehouse_path, read_only=True)
    try:
        result = publish_snapshot(con, settings.serving_path)
    finally:
        con.close()
    report(result)


def report(result: SnapshotResult) -> None:
    table = Table(box=None, pad_edge=False)
    for name in ("table", "kind", "rows", "parquet"):
        table.add_column(name, justify="right" if name == "rows" else "left")
    for published in result.tables:
        table.add_row(
            published.qualified, published.kind, f"{published.rows:,}", published.parquet.name
        )
    out.print(table)
    for view in result.skipped_views:
        err.print(f"left out view {view}: it reads tables that are not published", markup=False)
    as_of = result.data_as_of.isoformat() if result.data_as_of else "unknown"
    out.print(
        f"published {len(result.tables)} tables and views ({result.rows:,} rows, "
        f"schema version {result.schema_version}, data as of {as_of})",
        markup=False,
    )
    out.print(f"snapshot  {result.path}", markup=False)
    out.print(f"parquet   {result.parquet_dir}/", markup=False)
