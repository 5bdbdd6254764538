"""The warehouse at several sizes of history: a full rebuild, 10,000-event loads, the report.

One history is simulated (the simulator's organisation, 55,000 events a day, as in a
mid-size organisation with 10M events in half a year), in time order, with the loads'
events after it. The warehouse of size N holds its first N events, so a bigger
warehouse is a longer history of the same organisation, as a live one grows, and the
load after it is the same kind of traffic at each size. Events reach ``raw.events``
by SQL: reading Kafka is the sink's own figure (``sink`` in the bench's table).

For each size:

* **full rebuild**: :func:`warehouse.build.build` in full, in a child process, so its
  peak RSS is its own (``ru_maxrss``);
* **load**: a transaction that stores 10,000 new events (rows and an ``ops.loads``
  row) and brings every core and metrics table up to them (an incremental build), as
  a live sink does; three in a row, the median reported;
* **report**: ``commpulse report --quarter`` of the warehouse's latest quarter, as a
  user runs it (a new process: start-up included).

How the load's time grows from the smallest history to the largest is the figure
that says whether a load costs what it brings or what the history holds.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl

from infra.processes import python_module
from ingest.simulator import SimulationConfig, simulate

__all__ = ["EVENTS_PER_DAY", "bench_warehouse"]

EVENTS_PER_DAY: Final = 55_000
_END: Final = datetime(2026, 9, 30, 23, 0, tzinfo=UTC)  # the last history ends in 2026Q3
_LOADED: Final = datetime(2026, 10, 1, tzinfo=UTC)
_COLUMNS: Final = (
    "event_id", "event_type", "occurred_at", "channel_id", "channel_kind", "scope", "actor_id",
    "actor_role", "conversation_id", "message_id", "in_reply_to", "recipient_count",
    "duration_s", "planned_duration_s", "score", "decision", "category", "visibility",
    "department",
)  # fmt: skip
_RAW: Final = (
    "CAST(event_id AS UUID), 1, event_type, occurred_at, channel_id, channel_kind, scope, "
    "actor_id, actor_role, conversation_id, message_id, in_reply_to, recipient_count, "
    "duration_s, planned_duration_s, score, decision, category, visibility, department, "
    "'bench', CAST(hash(channel_id) % 8 AS INTEGER), n"
)


def bench_warehouse(
    sizes: tuple[int, ...],
    work: Path,
    report_env: Callable[[Path], dict[str, str]],
    *,
    load: int = 10_000,
    loads: int = 3,
    on_stage: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Figures per history size (see the module docstring); ``load_growth``: the median load
    at the largest size over the median load at the smallest. ``report_env`` gives the
    environment of a ``commpulse report`` of the warehouse at a path."""
    if not sizes:
        return {}
    largest = max(sizes)
    days = max(7, round(largest / EVENTS_PER_DAY))
    history = work / "history.parquet"
    on_stage(f"warehouse: simulate {largest + load * loads:,} events over {days} days")
    _simulate(history, largest + load * loads, days)
    figures: dict[str, Any] = {}
    for size in sorted(sizes):
        on_stage(f"warehouse at {size:,} events: fill, full rebuild, {loads} loads, report")
        path = work / f"warehouse-{size}.duckdb"
        _fill(path, history, size)
        rebuild_s, rss_mib = _in_child(_full_rebuild, path)
        seconds = _loads(path, history, size, load, loads)
        figures[str(size)] = {
            "full_rebuild_s": round(rebuild_s, 2),
            "full_rebuild_rss_mib": round(rss_mib, 1),
            "load_events": load,
            "load_s": [round(s, 3) for s in seconds],
            "load_median_s": round(statistics.median(seconds), 3),
            "report_s": round(_report(path, work, report_env(path)), 2),
        }
        path.unlink(missing_ok=True)
        Path(f"{path}.wal").unlink(missing_ok=True)
    smallest, biggest = figures[str(min(sizes))], figures[str(largest)]
    return {
        "sizes": figures,
        "load_growth": round(biggest["load_median_s"] / smallest["load_median_s"], 2),
        "history_days": days,
    }


def _simulate(path: Path, events: int, days: int) -> None:
    """The history as Parquet, in time order, with a row number ``n`` from 1."""
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None
    chunk: list[dict[str, Any]] = []
    written = 0

    def flush() -> None:
        nonlocal writer, written
        frame = (
            pl.from_dicts(chunk, schema={name: _DTYPES[name] for name in _COLUMNS})
            .with_columns(pl.col("event_id").cast(pl.String))
            .with_row_index("n", offset=written + 1)
        )
        table = frame.to_arrow()
        writer = writer or pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table)
        written += len(chunk)
        chunk.clear()

    try:
        for event in simulate(SimulationConfig(events=events, days=days, seed=1, end=_END)):
            chunk.append(event)
            if len(chunk) >= 250_000:
                flush()
        if chunk:
            flush()
    finally:
        if writer is not None:
            writer.close()


_DTYPES: Final[dict[str, Any]] = {
    **dict.fromkeys(_COLUMNS, pl.String),
    "occurred_at": pl.Datetime("us", "UTC"),
    "recipient_count": pl.Int32,
    "duration_s": pl.Float64,
    "planned_duration_s": pl.Float64,
    "score": pl.Int16,
}


def _fill(path: Path, history: Path, size: int) -> None:
    from warehouse.schema import open_warehouse

    path.unlink(missing_ok=True)
    con = open_warehouse(path)
    try:
        con.execute(
            f"INSERT INTO raw.events SELECT {_RAW}, ? FROM read_parquet(?) WHERE n <= ?",
            [_LOADED, str(history), size],
        )
        con.execute("INSERT INTO ops.loads VALUES (?, ?, ?, 0, 0, 0)", [_LOADED, size, size])
    finally:
        con.close()


def _full_rebuild(path: Path) -> tuple[float, float]:
    """In a child process: a full build of ``path``; (seconds, this process's peak RSS MiB)."""
    from metrics.channels import ChannelCatalog
    from warehouse.build import build
    from warehouse.schema import open_warehouse

    con = open_warehouse(path)
    try:
        started = time.perf_counter()
        build(con, ChannelCatalog(), "UTC", now=_LOADED, full=True)
        seconds = time.perf_counter() - started
    finally:
        con.close()
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(
    target: Callable[[Path], tuple[float, float]], path: Path, queue: multiprocessing.Queue[Any]
) -> None:
    queue.put(target(path))


def _in_child(target: Callable[[Path], tuple[float, float]], path: Path) -> tuple[float, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_run_child, args=(target, path, queue))
    child.start()
    try:
        result: tuple[float, float] = queue.get(timeout=3600)
    finally:
        child.join(timeout=60)
    if child.exitcode != 0:
        raise RuntimeError(f"the full rebuild of {path} failed (exit code {child.exitcode})")
    return result


def _loads(path: Path, history: Path, size: int, count: int, loads: int) -> list[float]:
    """``loads`` loads, as a live sink makes them (its connection open): each stores ``count``
    events and builds, in one transaction; the seconds of each."""
    from metrics.channels import ChannelCatalog
    from warehouse.build import build
    from warehouse.schema import open_warehouse

    con = open_warehouse(path)
    catalog = ChannelCatalog()
    seconds = []
    try:
        for number in range(1, loads + 1):
            loaded = _LOADED + timedelta(seconds=number)
            after = size + (number - 1) * count
            started = time.perf_counter()
            con.execute("BEGIN TRANSACTION")
            con.execute(
                f"INSERT INTO raw.events SELECT {_RAW}, ? FROM read_parquet(?) "
                "WHERE n > ? AND n <= ?",
                [loaded, str(history), after, after + count],
            )
            con.execute("INSERT INTO ops.loads VALUES (?, ?, ?, 0, 0, 0)", [loaded, count, count])
            build(con, catalog, "UTC", now=_LOADED + timedelta(hours=number), in_transaction=True)
            con.execute("COMMIT")
            seconds.append(time.perf_counter() - started)
    finally:
        con.close()
    return seconds


def _report(path: Path, work: Path, env: dict[str, str]) -> float:
    """``commpulse report`` of the warehouse's latest quarter, end to end, in a new process."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        quarter = con.execute("SELECT max(quarter) FROM metrics.quarterly_evaluation").fetchone()
    finally:
        con.close()
    assert quarter is not None and quarter[0] is not None, "no quarter was evaluated"
    started = time.perf_counter()
    done = subprocess.run(
        python_module(
            "commpulse", "report", "--quarter", quarter[0], "--out", str(work / "reports")
        ),
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"commpulse report failed: {done.stderr.strip()[-500:]}")
    return seconds
