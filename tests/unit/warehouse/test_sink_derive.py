"""A batch's rows, its offsets and the derived tables built from it commit in one
transaction, or none of them does; ``loaded_at`` only moves forward."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from metrics.channels import ChannelCatalog
from tests.scenarios import ticket_scenario
from warehouse.build import build
from warehouse.decode import decode_record
from warehouse.schema import open_warehouse
from warehouse.sink import LoadClock, store_batch

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def rows() -> list[dict[str, Any]]:
    decoded = [
        decode_record(orjson.dumps(event), "events", 0, offset)
        for offset, event in enumerate(ticket_scenario())
    ]
    assert all(isinstance(row, dict) for row in decoded)
    return decoded  # type: ignore[return-value]


def derive(con: duckdb.DuckDBPyConnection) -> None:
    build(con, ChannelCatalog(), now=NOW, in_transaction=True)


def counts(con: duckdb.DuckDBPyConnection) -> tuple[int, ...]:
    found = con.execute(
        "SELECT (SELECT count(*) FROM raw.events), (SELECT count(*) FROM ops.offsets), "
        "(SELECT count(*) FROM ops.loads), (SELECT count(*) FROM core.requests), "
        "(SELECT count(*) FROM ops.builds)"
    ).fetchone()
    assert found is not None
    return tuple(found)


def test_rows_offsets_and_facts_commit_together(con: duckdb.DuckDBPyConnection) -> None:
    batch = rows()
    outcome = store_batch(con, "events", batch, 0, {0: len(batch)}, derive=derive)
    assert outcome.stored == len(batch)
    assert counts(con) == (len(batch), 1, 1, 7, 1)
    loaded, built = con.execute(
        "SELECT (SELECT max(loaded_at) FROM ops.loads), (SELECT loaded_through FROM ops.build_state)"
    ).fetchone() or (None, None)
    assert loaded is not None and built == loaded  # the build covers this very batch


def test_a_build_that_fails_takes_the_batch_with_it(con: duckdb.DuckDBPyConnection) -> None:
    def broken(con: duckdb.DuckDBPyConnection) -> None:
        derive(con)
        raise RuntimeError("the build failed")

    batch = rows()
    with pytest.raises(RuntimeError, match="the build failed"):
        store_batch(con, "events", batch, 0, {0: len(batch)}, derive=broken)
    assert counts(con) == (0, 0, 0, 0, 0)  # nothing: the next run reads the batch again
    store_batch(con, "events", batch, 0, {0: len(batch)}, derive=derive)
    assert counts(con) == (len(batch), 1, 1, 7, 1)


def test_a_batch_of_events_stored_before_still_builds(con: duckdb.DuckDBPyConnection) -> None:
    batch = rows()
    store_batch(con, "events", batch, 0, {0: len(batch)}, derive=derive)
    again = store_batch(con, "events", batch, 0, {0: len(batch)}, derive=derive)
    assert (again.stored, again.duplicates) == (0, len(batch))
    assert counts(con) == (len(batch), 1, 2, 7, 2)


def test_loaded_at_moves_forward_even_when_the_clock_steps_back(
    con: duckdb.DuckDBPyConnection,
) -> None:
    ahead = datetime.now(UTC) + timedelta(hours=1)  # a batch loaded before the clock stepped back
    con.execute("INSERT INTO ops.loads VALUES (?, 0, 0, 0, 0, 0)", [ahead])
    clock = LoadClock(con)
    first, second = clock(), clock()
    assert ahead < first < second
    assert second - first == timedelta(microseconds=1)
