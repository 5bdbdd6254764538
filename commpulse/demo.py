"""``commpulse demo``: the whole pipeline on the embedded broker, in a work directory.

One run: start the embedded broker, simulate a quarter of a mid-size
organisation and ingest it, run a stream worker (a child process) and the
sink until both have caught up, show live KPIs meanwhile, watch an idle
channel alert fire and then resolve when activity returns, run the quality
gate, write the quarterly report and the BI snapshot. Everything it starts
stops at the end, on an error, or on Ctrl-C.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
from kafka import KafkaConsumer, TopicPartition

from commpulse.children import Child
from commpulse.ingesting import IngestSummary, Source, ingest_sources
from commpulse.kafka import connect, make_producer
from commpulse.ownership import OWNER_FILE, sole_owner
from commpulse.settings import KafkaSettings, Settings, child_environment
from commpulse.simulation import SimulatedEvents
from commpulse.warehousing import SinkRun, sink
from infra import free_port, record_counts
from ingest import Record
from ingest.errors import CommpulseError, ConfigurationError
from ingest.simulator import SimulationConfig
from metrics.report import ReportResult, write_report
from metrics.snapshot import SnapshotResult, publish_snapshot
from quality import QualityOptions, QualityReport, check_warehouse
from streams.alerting import IdleAlert
from warehouse.schema import open_warehouse
from warehouse.sink import SinkProgress

__all__ = ["DemoResult", "DemoUI", "own_workdir", "run_demo"]

MARKER: Final = ".commpulse-demo"
#: the KPIs the live table shows, per channel kind
LIVE_KPIS: Final = ("volume", "first_response_sla_rate", "read_rate", "fcr_rate")


class DemoError(CommpulseError):
    """A demo step did not finish (its child's log is named)."""


class DemoUI(Protocol):
    """What the demo reports as it goes (the CLI draws it; tests may record it)."""

    def step(self, text: str) -> None: ...
    def ingest(self, source: Source) -> None: ...
    def sink(self, progress: SinkProgress) -> None: ...
    def kpis(self, rows: Sequence[Mapping[str, Any]], health: Mapping[str, Any]) -> None: ...


@dataclass
class AlertSeen:
    channel_id: str
    fired_at: datetime
    resolved_at: datetime


@dataclass
class DemoResult:
    workdir: Path
    ingest: IngestSummary
    topic_records: dict[str, int] = field(default_factory=dict)
    stream: Mapping[str, Any] = field(default_factory=dict)
    warehouse: SinkRun | None = None
    alert: AlertSeen | None = None
    quality: QualityReport | None = None
    report: ReportResult | None = None
    snapshot: SnapshotResult | None = None
    logs: Path | None = None


@contextmanager
def own_workdir(workdir: Path) -> Iterator[Path]:
    """The demo's directory, fresh (created, or emptied if an earlier demo made it), and
    owned by this process with its data directory while the ``with`` runs: a second demo on
    it, or an ``up`` on its data directory, is refused (:mod:`commpulse.ownership`)."""
    workdir = workdir.absolute()
    if workdir.exists():
        if not workdir.is_dir():
            raise ConfigurationError(f"{workdir} exists and is not a directory")
        entries = [entry for entry in workdir.iterdir() if entry.name != OWNER_FILE]
        if entries and not (workdir / MARKER).exists():
            raise ConfigurationError(
                f"{workdir} is not empty and was not made by `commpulse demo`; choose another --workdir"
            )
    with (
        sole_owner(workdir, "demo", option="--workdir"),
        sole_owner(workdir / "data", "demo", option="--workdir"),
    ):
        for entry in workdir.iterdir():
            _remove(entry)
        (workdir / MARKER).write_text(
            "made by `commpulse demo`; it may delete and recreate this directory\n"
        )
        yield workdir


def _remove(path: Path) -> None:
    """Remove ``path`` and what it holds, except the owner files (locks held right now)."""
    if path.name == OWNER_FILE:
        return
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove(child)
        if not any(path.iterdir()):
            path.rmdir()
    else:
        path.unlink()


#: The simulated organisation works 09:00-12:00 and 13:30-18:00 in Shanghai (ingest.simulator).
DEMO_CATALOG: Final = """\
# Written by `commpulse demo`: the simulated organisation's working hours.
[calendars.default]
timezone = "{timezone}"
periods = ["09:00-12:00", "13:30-18:00"]
"""


def demo_settings(settings: Settings, workdir: Path) -> Settings:
    """The demo always runs on its own embedded broker, with data under the work dir.

    Business time, day windows and quarters follow the simulated organisation's
    time zone and working hours, through a channel catalog in the work dir
    (unless a catalog is configured).
    """
    timezone = SimulationConfig(events=0).timezone
    metrics = settings.metrics
    if metrics.catalog is None:
        catalog = workdir / "channels.toml"
        catalog.write_text(DEMO_CATALOG.format(timezone=timezone))
        metrics = metrics.model_copy(update={"catalog": catalog, "timezone": timezone})
    return settings.model_copy(
        update={"data_dir": workdir / "data", "kafka": KafkaSettings(), "metrics": metrics}
    )


def run_demo(
    settings: Settings,
    *,
    events: int,
    seed: int = 0,
    ui: DemoUI,
) -> DemoResult:
    """Run the demo in ``settings.data_dir``, holding one broker for the whole run."""
    workdir = settings.data_dir.parent
    logs = workdir / "logs"
    topics = settings.topics
    with connect(settings) as target:
        # Every later step talks to this broker directly, as to a configured cluster.
        here = settings.model_copy(
            update={"kafka": KafkaSettings(bootstrap_servers=target.bootstrap_servers)}
        )
        ui.step(f"simulate and ingest {events:,} events (a quarter of a mid-size organisation)")
        source = SimulatedEvents(SimulationConfig(events=events, seed=seed))
        summary = ingest_sources(here, [source], on_progress=ui.ingest)
        result = DemoResult(workdir=workdir, ingest=summary, logs=logs)

        port = free_port()
        env = child_environment(
            here,
            stream__web_port=str(port),
            stream__tick_interval_s="2",  # idle checks every 2 s, so the alert shows quickly
        )
        ui.step("start a stream worker (rolling KPIs, idle alerts)")
        with Child("stream", ["stream"], env=env, log_path=logs / "stream.log") as worker:
            url = f"http://127.0.0.1:{port}"
            _wait(
                lambda: _health(url, worker) is not None, 90, "the stream worker to start", worker
            )
            ui.step("load the warehouse (exactly once), then build its tables")
            result.warehouse = sink(
                here,
                until_caught_up=True,
                on_progress=ui.sink,
                on_build=lambda built: ui.step(
                    f"built core and metrics tables in {built.seconds:.1f} s"
                ),
            )
            ui.step("wait for the stream worker to catch up")
            result.stream = _catch_up(url, worker, summary.counts.sent, ui)
            ui.step("watch an idle channel alert fire, then send activity to resolve it")
            result.alert = _alert_round_trip(here, worker)
        ui.step("run the data-quality gate (Great Expectations)")
        result.quality = check_warehouse(
            here.warehouse_path,
            options=QualityOptions(
                future_tolerance_s=here.ingest.future_tolerance_s, timezone=here.metrics.timezone
            ),
        )
        ui.step("write the quarterly report and the BI snapshot")
        con = open_warehouse(here.warehouse_path)
        try:
            quarter = _busiest_quarter(con)
            result.report = write_report(
                con, quarter, workdir / "reports", timezone=settings.metrics.timezone
            )
            result.snapshot = publish_snapshot(con, here.serving_path)
        finally:
            con.close()
        result.topic_records = record_counts(
            target.bootstrap_servers,
            [topics.events, topics.dlq, topics.kpis, topics.alerts],
            client_options=target.client_options,
        )
    return result


def _wait(check: Callable[[], bool], timeout: float, what: str, child: Child) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise DemoError(
                f"the {child.name} process exited with {child.poll()} (log: {child.log_path})"
            )
        if check():
            return
        time.sleep(0.5)
    raise DemoError(f"gave up waiting for {what} after {timeout:.0f} s (log: {child.log_path})")


def _health(url: str, worker: Child) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"{url}/healthz", timeout=5)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _catch_up(url: str, worker: Child, sent: int, ui: DemoUI) -> dict[str, Any]:
    """Until the worker applied every event; the live KPI table meanwhile."""
    health: dict[str, Any] = {}

    def done() -> bool:
        nonlocal health
        health = _health(url, worker) or health
        try:
            rows = httpx.get(f"{url}/kpis", timeout=5).json()
        except httpx.HTTPError:
            rows = []
        ui.kpis([r for r in rows if r["channel_id"] is None and r["kpi"] in LIVE_KPIS], health)
        lag = health.get("packer_lag", {"?": 1})
        return bool(health) and health["events"] >= sent and not any(lag.values())

    _wait(done, 600, "the stream worker to catch up", worker)
    return health


def _alert_round_trip(settings: Settings, worker: Child, timeout: float = 120.0) -> AlertSeen:
    """The first idle alert the worker fires, and its resolution after fresh activity."""
    alerts = _AlertReader(settings.kafka.bootstrap_servers, settings.topics.alerts)
    try:
        fired: IdleAlert | None = None
        deadline = time.monotonic() + timeout
        while fired is None:
            fired = next((a for a in alerts.read() if a.status == "firing"), None)
            if time.monotonic() > deadline or worker.poll() is not None:
                raise DemoError(f"no idle alert fired within {timeout:.0f} s ({worker.log_path})")
        activity = {
            "event_id": str(uuid.uuid4()),
            "event_type": "message_sent",
            "occurred_at": datetime.now(UTC).isoformat(),
            "channel_id": fired.channel_id,
            "channel_kind": fired.channel_kind.value,
            "scope": fired.scope.value,
            "actor_id": "demo-operator",
            "actor_role": "employee",
            "message_id": f"demo-{uuid.uuid4().hex[:8]}",
        }
        with connect(settings) as target, make_producer(settings, target) as producer:
            producer.send_many([Record(activity)])
        while True:
            resolved = next(
                (
                    a
                    for a in alerts.read()
                    if a.status == "resolved" and a.channel_id == fired.channel_id
                ),
                None,
            )
            if resolved is not None:
                return AlertSeen(
                    fired.channel_id, fired.starts_at, resolved.ends_at or fired.starts_at
                )
            if time.monotonic() > deadline or worker.poll() is not None:
                raise DemoError(
                    f"the alert on {fired.channel_id} did not resolve ({worker.log_path})"
                )
    finally:
        alerts.close()


class _AlertReader:
    """The alerts topic from the beginning, a poll at a time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = [
            TopicPartition(topic, p)
            for p in sorted(self._consumer.partitions_for_topic(topic) or {0})
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning()

    def read(self) -> list[IdleAlert]:
        batches = self._consumer.poll(timeout_ms=1000)
        return [IdleAlert.from_json(r.value) for records in batches.values() for r in records]

    def close(self) -> None:
        self._consumer.close()


def _busiest_quarter(con: Any) -> str:
    rows = con.execute(
        "SELECT quarter FROM metrics.kpi_quarterly WHERE kpi = 'volume' AND channel_id IS NULL "
        "GROUP BY quarter ORDER BY sum(value) DESC, quarter DESC LIMIT 1"
    ).fetchall()
    if not rows:
        raise DemoError("the warehouse has no quarter to report")
    return str(rows[0][0])
