"""The throughput ceiling script (scripts/stream_ceiling.py) measures real work.

It is a development measurement (docs/performance.md), run here small so that
it keeps working: the windows it computes and sends are exactly the reference's.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.simulator import SimulationConfig, simulate
from scripts.stream_ceiling import measure
from tests.integration.kpi_reference import reference_frame

pytestmark = pytest.mark.integration


def test_the_ceiling_sends_one_record_per_window_of_the_reference() -> None:
    events = list(
        simulate(
            SimulationConfig(events=3000, days=90, seed=1, end=datetime(2026, 11, 1, tzinfo=UTC))
        )
    )
    windows = reference_frame(events).height

    result = measure(3000, repartition=True)

    assert result["windows"] == windows > 1000
    assert result["records_in_topic"] == windows
    assert set(result["phases"]) == {
        "consume",
        "repartition by kind",
        "decode",
        "compute every window",
        "encode",
        "produce",
    }
    assert result["events_per_s"] > 0
