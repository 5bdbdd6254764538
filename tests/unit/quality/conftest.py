"""A clean simulated warehouse, built once (no Kafka) and copied for each test that corrupts it."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from ingest.simulator import SimulationConfig, simulate
from metrics.channels import ChannelCatalog
from warehouse.build import build
from warehouse.schema import open_warehouse
from warehouse.sink import decode_record, store_batch

#: The end of the simulated history, and the build's "now".
END = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def decoded(events: Iterable[Mapping[str, Any]], *, first_offset: int = 0) -> list[dict[str, Any]]:
    """``events`` as the sink decodes them from partition 0."""
    rows = []
    for offset, event in enumerate(events, start=first_offset):
        row = decode_record(orjson.dumps(event, default=str), "events", 0, offset)
        assert isinstance(row, dict), row
        rows.append(row)
    return rows


@pytest.fixture(scope="session")
def clean_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quality") / "clean.duckdb"
    con = open_warehouse(path)
    try:
        rows = decoded(simulate(SimulationConfig(events=5000, days=10, seed=1, end=END)))
        store_batch(con, "events", rows, 0, {0: len(rows)})
        build(con, ChannelCatalog(), now=END)
    finally:
        con.close()
    return path


@pytest.fixture
def warehouse(clean_warehouse: Path, tmp_path: Path) -> Path:
    """A copy of the clean warehouse, this test's to corrupt."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(clean_warehouse, path)
    return path


@pytest.fixture
def con(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(warehouse)
    yield connection
    connection.close()
