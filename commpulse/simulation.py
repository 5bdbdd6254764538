"""The simulator as a source for ingest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from ingest import Record
from ingest.simulator import SimulationConfig, simulate

__all__ = ["SimulatedEvents"]

SOURCE: Final = "simulator"


class SimulatedEvents:
    """``config.events`` simulated events as ingest records."""

    label = SOURCE

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.total = config.events
        self.done = 0

    def records(self) -> Iterator[Record]:
        for event in simulate(self.config):
            self.done += 1
            yield Record(event, SOURCE)
