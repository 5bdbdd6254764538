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

    With ``until_caught_up`` it stops once no lag is left and builds once at the
    end; otherwise it runs until ``stop`` (or Ctrl-C) and builds whenever new
    events were stored and ``build_interval_s`` has passed. Builds are incremental
    (warehouse/build.py); ``full`` makes the first one a full rebuild, ``reconfigure``
    lets it rebuild under a configuration other than the warehouse's. Before anything is
    loaded, a warehouse built under another configuration is refused
    (:class:`warehouse.build.ConfigurationChanged`) unless ``reconfigure``.
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
        pending = False
        last_build = time.monotonic()
        first = {"full": full, "reconfigure": reconfigure}

        def rebuild() -> None:
            nonlocal built, pending, last_build
            built = build(
                con, catalog, timezone, full=first["full"], reconfigure=first["reconfigure"]
            )
            first.update(full=False, reconfigure=False)
            pending, last_build = False, time.monotonic()
            on_build(built)
            if publish:
                # The sink holds the file's only write lock, so it is the one that can copy
                # it for BI tools while it keeps loading.
                publish_snapshot(con, settings.serving_path)

        def batch_done(progress: SinkProgress) -> None:
            nonlocal pending
            pending = pending or progress.stored > 0
            on_progress(progress)
            if not until_caught_up and pending and time.monotonic() - last_build >= interval:
                rebuild()

        def idle(progress: SinkProgress) -> None:
            on_progress(progress)
            if pending and time.monotonic() - last_build >= interval:
                rebuild()

        result = run_sink(
            con,
            _sink_config(settings, target),
            until_caught_up=until_caught_up,
            stop=stop,
            on_batch=batch_done,
            on_idle=idle,
        )
        if pending or until_caught_up:
            rebuild()
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


def reconcile_with_stream(settings: Settings) -> ReconcileResult:
    """Final day windows of the KPI topic against ``metrics.kpi_daily``."""
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
    con = open_warehouse(settings.warehouse_path, read_only=True)
    try:
        return replace(reconcile(con, windows.values()), not_final=len(not_final))
    finally:
        con.close()
