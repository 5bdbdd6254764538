"""``commpulse demo``: the whole pipeline on the embedded broker, in a work directory.

At this stage it starts the embedded broker, creates the topics, simulates a
quarter of activity, ingests it and reports what landed where. Later stages
(stream worker, warehouse, quality gate, report) plug in here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from commpulse.ingesting import IngestSummary, Source, ingest_sources
from commpulse.kafka import connect
from commpulse.settings import KafkaSettings, Settings
from commpulse.simulation import SimulatedEvents
from infra import record_counts
from ingest.errors import ConfigurationError
from ingest.simulator import SimulationConfig

__all__ = ["DemoResult", "prepare_workdir", "run_demo"]

MARKER: Final = ".commpulse-demo"


@dataclass
class DemoResult:
    workdir: Path
    ingest: IngestSummary
    topic_records: dict[str, int] = field(default_factory=dict)


def prepare_workdir(workdir: Path) -> Path:
    """A fresh demo directory: created, or emptied if an earlier demo made it."""
    workdir = workdir.absolute()
    if workdir.exists():
        if not workdir.is_dir():
            raise ConfigurationError(f"{workdir} exists and is not a directory")
        entries = list(workdir.iterdir())
        if entries and not (workdir / MARKER).exists():
            raise ConfigurationError(
                f"{workdir} is not empty and was not made by `commpulse demo`; choose another --workdir"
            )
        for entry in entries:
            _remove(entry)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text(
        "made by `commpulse demo`; it may delete and recreate this directory\n"
    )
    return workdir


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        path.unlink()


def demo_settings(settings: Settings, workdir: Path) -> Settings:
    """The demo always runs on its own embedded broker, with data under the work dir."""
    return settings.model_copy(update={"data_dir": workdir / "data", "kafka": KafkaSettings()})


def run_demo(
    settings: Settings,
    *,
    events: int,
    seed: int = 0,
    on_progress: Callable[[Source], None] | None = None,
) -> DemoResult:
    """Run the demo in ``settings.data_dir``, holding one broker for the whole run."""
    source = SimulatedEvents(SimulationConfig(events=events, seed=seed))
    topics = settings.topics
    with connect(settings) as target:
        summary = ingest_sources(settings, [source], on_progress=on_progress)
        counts = record_counts(
            target.bootstrap_servers,
            [topics.events, topics.dlq, topics.kpis, topics.alerts],
            client_options=target.client_options,
        )
    return DemoResult(workdir=settings.data_dir.parent, ingest=summary, topic_records=counts)
