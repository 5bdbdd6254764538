"""store_batch: rows as the feed decodes them (a frame) or as dicts, each event stored once.

A batch is inserted with a plain INSERT, and only when an event of it is stored already is
the transaction done again with INSERT OR IGNORE: both must give exactly what INSERT OR
IGNORE alone gave, in rows, counts, offsets and ops.loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pytest

from ingest import Event, encode
from ingest.simulator import SimulationConfig, simulate
from warehouse.decode import BatchDecoder
from warehouse.schema import open_warehouse
from warehouse.sink import commit_batch, decode_record, store_batch, stored_offsets


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(tmp_path / "warehouse.duckdb")
    try:
        yield connection
    finally:
        connection.close()


def _values(n: int, seed: int) -> list[bytes]:
    return [
        encode(Event.model_validate(e)) for e in simulate(SimulationConfig(events=n, seed=seed))
    ]


def _frame(values: list[bytes], first_offset: int = 0) -> pl.DataFrame:
    offsets = list(range(first_offset, first_offset + len(values)))
    decoded = BatchDecoder().decode("events", values, [0] * len(values), offsets)
    assert not decoded.invalid
    return decoded.rows


def _stored(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        'SELECT CAST(event_id AS VARCHAR), "offset" FROM raw.events ORDER BY event_id'
    ).fetchall()


def test_a_batch_with_events_stored_before_stores_only_the_new_ones(
    con: duckdb.DuckDBPyConnection,
) -> None:
    first, second = _values(300, seed=1), _values(200, seed=2)
    outcome = store_batch(con, "events", _frame(first), 2, {0: 302})
    assert (outcome.stored, outcome.duplicates) == (300, 0)
    # the same events again, the new ones among them, and one new event twice in the batch
    again = [*second[:100], *first, *second[100:], second[0]]
    outcome = store_batch(con, "events", _frame(again, 302), 0, {0: 302 + len(again)})
    assert (outcome.stored, outcome.duplicates) == (200, 301)
    ids: dict[str, int] = {}  # each event where it was first read
    for offset, value in [*enumerate(first), *enumerate(again, start=302)]:
        ids.setdefault(orjson.loads(value)["event_id"], offset)
    assert _stored(con) == sorted(ids.items())
    assert stored_offsets(con, "events") == {0: 302 + len(again)}
    assert con.execute(
        "SELECT received, stored, duplicates, invalid FROM ops.loads ORDER BY loaded_at"
    ).fetchall() == [(302, 300, 0, 2), (len(again), 200, 301, 0)]


def test_a_batch_of_events_all_stored_before_changes_only_offsets_and_loads(
    con: duckdb.DuckDBPyConnection,
) -> None:
    values = _values(50, seed=3)
    assert commit_batch(con, "events", _frame(values), 0, {0: 50}) == 50
    before = _stored(con)
    assert commit_batch(con, "events", _frame(values, 50), 0, {0: 100}) == 0
    assert _stored(con) == before
    assert stored_offsets(con, "events") == {0: 100}


def test_dicts_as_decode_record_makes_them_store_the_same_as_the_frame(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    values = _values(120, seed=4)
    rows = [decode_record(value, "events", 0, offset) for offset, value in enumerate(values)]
    assert all(isinstance(row, dict) for row in rows)
    assert commit_batch(con, "events", rows, 0, {0: 120}) == 120  # type: ignore[arg-type]
    other = open_warehouse(tmp_path / "other.duckdb")
    try:
        assert commit_batch(other, "events", _frame(values), 0, {0: 120}) == 120
        columns = "* EXCLUDE (loaded_at)"
        frame_rows = other.execute(f"SELECT {columns} FROM raw.events ORDER BY event_id").fetchall()
    finally:
        other.close()
    assert con.execute(f"SELECT {columns} FROM raw.events ORDER BY event_id").fetchall() == (
        frame_rows
    )


def test_a_frame_with_other_columns_is_refused(con: duckdb.DuckDBPyConnection) -> None:
    frame = _frame(_values(3, seed=5))
    with pytest.raises(ValueError, match="columns"):
        store_batch(con, "events", frame.drop("department"), 0, {0: 3})
    with pytest.raises(ValueError, match="columns"):
        store_batch(con, "events", frame.with_columns(pl.col("score").cast(pl.Int64)), 0, {0: 3})
    assert stored_offsets(con, "events") == {}
