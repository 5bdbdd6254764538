"""Wiring for the warehouse commands: sink, replay, reconcile."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from commpulse.kafka import KafkaTarget, connect
from commpulse.reading import open_for_reading
from commpulse.settings import Settings
from commpulse.streaming import load_catalog, read_kpis
from metrics.snapshot import publish_snapshot
from quality import BatchGate
from warehouse.build import BuildResult, build, check_configuration
from warehouse.reconcile import ReconcileResult, StreamWindow, reconcile
from warehouse.schema import open_warehouse
from warehouse.sink import SinkConfig, SinkProgress, SinkResult, run_sink

__all__ = ["SinkRun", "reconcile_with_stream", "replay", "sink"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkRun:
    sink: SinkResult
    build: BuildResult | None
    path: Path


def _sink_config(settings: Settings, target: KafkaTarget) -> SinkConfig:
    gate = settings.warehouse.quality_gate
    return SinkConfig(
        bootstrap_servers=target.bootstrap_servers,
        topic=settings.topics.events,
        dlq_topic=settings.topics.dlq,
        client_options=target.consumer_options,
        batch_events=settings.warehouse.batch_events,
        batch_within_s=settings.warehouse.batch_within_s,
        quality_gate=gate,
        batch_check=(
            BatchGate(future_tolerance_s=settings.ingest.future_tolerance_s)
            if gate == "quarantine"
            else None
        ),
    )


@contextlib.contextmanager
def _warehouse(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_warehouse(path)
    try:
        yield con
    finally:
        con.close()


def sink(
    settings: Settings,
    *,
    until_caught_up: bool,
    on_progress: Callable[[SinkProgress], None] = lambda _: None,
    on_build: Callable[[BuildResult], None] = lambda _: None,
    stop: threading.Event | None = None,
    path: Path | None = None,
    full: bool = False,
    reconfigure: bool = False,
) -> SinkRun:
    """Load the events topic into the warehouse; bring core and metrics tables up to it.

    Builds are incremental (warehouse/build.py). A caught-up sink builds inside each
    batch's transaction; while it catches up on a backlog it loads only, and the first
    batch near the end builds for all (warehouse/sink.py). An idle running sink builds
    every ``build_interval_s`` (time alone breaches unanswered requests and makes
    channels idle) and refreshes the BI snapshot at most that often. ``full`` makes the
    first build a full one, ``reconfigure`` lets it rebuild under a configuration other
    than the warehouse's; without it, a warehouse built under another configuration is
    refused (:class:`warehouse.build.ConfigurationChanged`) before anything is loaded.
    """
    path = path or settings.warehouse_path
    catalog = load_catalog(settings)
    timezone = settings.metrics.timezone
    interval = settings.warehouse.build_interval_s
    publish = settings.warehouse.publish_after_build and path == settings.warehouse_path
    with connect(settings) as target, _warehouse(path) as con:
        if not reconfigure:
            check_configuration(con, catalog, timezone)
        built: BuildResult | None = None
        pending = False  # events stored and not built yet
        last_build = last_publish = time.monotonic()
        first = {"full": full, "reconfigure": reconfigure}

        def derive(con: duckdb.DuckDBPyConnection, *, in_transaction: bool = True) -> None:
            nonlocal built, last_build
            built = build(
                con,
                catalog,
                timezone,
                full=first["full"],
                reconfigure=first["reconfigure"],
                in_transaction=in_transaction,
            )
            last_build = time.monotonic()

        def built_now() -> None:
            nonlocal pending, last_publish
            first.update(full=False, reconfigure=False)
            pending = False
            assert built is not None
            on_build(built)
            if publish and time.monotonic() - last_publish >= interval:
                # The sink holds the file's only write lock, so it is the one that can copy
                # it for BI tools while it keeps loading.
                publish_snapshot(con, settings.serving_path)
                last_publish = time.monotonic()

        def batch_done(progress: SinkProgress) -> None:
            nonlocal pending
            on_progress(progress)
            if progress.derived:
                built_now()
            else:
                pending = pending or progress.stored > 0

        def idle(progress: SinkProgress) -> None:
            on_progress(progress)
            if pending or time.monotonic() - last_build >= interval:
                derive(con, in_transaction=False)
                built_now()

        result = run_sink(
            con,
            _sink_config(settings, target),
            until_caught_up=until_caught_up,
            stop=stop,
            on_batch=batch_done,
            on_idle=idle,
            derive=derive,
        )
        if pending or (until_caught_up and built is None):
            derive(con, in_transaction=False)
            built_now()
        if publish and built is not None and last_publish < last_build:
            publish_snapshot(con, settings.serving_path)
    return SinkRun(result, built, path)


def replay(
    settings: Settings,
    *,
    on_progress: Callable[[SinkProgress], None] = lambda _: None,
    on_build: Callable[[BuildResult], None] = lambda _: None,
) -> SinkRun:
    """Rebuild the warehouse from the start of the log in a new file, then swap it in.

    The current warehouse stays open (and so locked against a running sink) until
    the new one is complete; readers of the old file keep their snapshot.
    """
    path = settings.warehouse_path
    fresh = path.with_name(f".{path.name}.replay-{os.getpid()}")
    for leftover in (fresh, Path(f"{fresh}.wal")):
        leftover.unlink(missing_ok=True)
    with _warehouse(path):  # holds the lock: no sink writes while we rebuild
        try:
            run = sink(
                settings,
                until_caught_up=True,
                on_progress=on_progress,
                on_build=on_build,
                path=fresh,
                full=True,
            )
            os.replace(fresh, path)
        except BaseException:
            fresh.unlink(missing_ok=True)
            raise
    Path(f"{path}.wal").unlink(missing_ok=True)  # the old file's log, if it left one
    return SinkRun(run.sink, run.build, path)


def reconcile_with_stream(
    settings: Settings, note: Callable[[str], None] = lambda _: None
) -> ReconcileResult:
    """Final day windows of the KPI topic against ``metrics.kpi_daily`` (of the snapshot
    while a running sink holds the warehouse; ``note`` gets the line that says so)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(settings.metrics.timezone)
    with connect(settings) as target:
        records = read_kpis(target, settings.topics.kpis)
    windows = {
        record.window_key: StreamWindow(
            record.window_start.astimezone(zone).date(),
            record.channel_id,
            record.channel_kind,
            record.scope,
            record.kpi,
            (record.value, record.numerator, record.denominator),
        )
        for record in records
        if record.final and record.granularity == "day"
    }
    not_final = {
        record.window_key
        for record in records
        if record.granularity == "day" and record.window_key not in windows
    }
    con = open_for_reading(settings, note)
    try:
        return replace(reconcile(con, windows.values()), not_final=len(not_final))
    finally:
        con.close()
