"""A build records its configuration; a build under another one refuses, naming what changed,
unless told to rebuild under the new one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest

from metrics.channels import ChannelCatalog
from tests.scenarios import CALENDAR, calendar_scenario, ticket_scenario
from tests.unit.streams.harness import catalog_from
from warehouse.build import RULES_VERSION, ConfigurationChanged, build, check_configuration
from warehouse.schema import open_warehouse
from warehouse.sink import commit_batch, decode_record

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(tmp_path / "warehouse.duckdb")
    events = ticket_scenario() + calendar_scenario()
    rows = []
    for offset, event in enumerate(events):
        decoded = decode_record(orjson.dumps(event, default=str), "events", 0, offset)
        assert isinstance(decoded, dict)
        rows.append(decoded)
    commit_batch(connection, "events", rows, 0, {0: len(rows)})
    yield connection
    connection.close()


def holiday(con: duckdb.DuckDBPyConnection) -> tuple[bool, int]:
    """Whether 2025-11-20 is a holiday in the built calendar, and its working periods."""
    found = con.execute(
        "SELECT (SELECT holiday FROM core.calendar WHERE day = DATE '2025-11-20'), "
        "(SELECT count(*) FROM core.working_periods "
        " WHERE CAST(starts_at AS DATE) = DATE '2025-11-20')"
    ).fetchone()
    assert found is not None
    return found[0], found[1]


def test_a_build_records_its_configuration(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    catalog = catalog_from(tmp_path, CALENDAR)
    build(con, catalog, "Europe/Berlin", now=NOW)
    mode, digest, config = con.execute(
        "SELECT mode, config_hash, config FROM ops.builds ORDER BY built_at DESC LIMIT 1"
    ).fetchone() or (None, None, None)
    recorded = json.loads(config)
    assert mode == "full" and len(digest) == 16
    assert recorded["timezone"] == "Europe/Berlin"
    assert recorded["rules_version"] == RULES_VERSION
    assert recorded["catalog_source"].endswith("channels.toml")
    assert recorded["catalog"]["calendars"]["default"]["holidays"] == ["2025-11-20"]
    assert con.execute("SELECT config_hash, config FROM ops.build_state").fetchall() == [
        (digest, config)
    ]
    # The log has a row per build; the configuration goes into it only when it changed.
    build(con, catalog, "Europe/Berlin", now=NOW)
    assert con.execute(
        "SELECT mode, config_hash, config IS NULL FROM ops.builds ORDER BY built_at"
    ).fetchall() == [("full", digest, False), ("incremental", digest, True)]


def test_another_catalog_is_refused_in_one_line_and_reconfigure_rebuilds_under_it(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    holidays = catalog_from(tmp_path, CALENDAR)
    build(con, holidays, now=NOW)
    assert holiday(con) == (True, 0)

    with pytest.raises(ConfigurationChanged) as refused:
        build(con, ChannelCatalog(), now=NOW)
    message = str(refused.value)
    assert "\n" not in message
    assert "the channel catalog (" in message and "-> defaults, content differs)" in message
    assert "--reconfigure" in message
    with pytest.raises(ConfigurationChanged):
        check_configuration(con, ChannelCatalog(), "UTC")
    assert holiday(con) == (True, 0)  # the refused build changed nothing

    rebuilt = build(con, ChannelCatalog(), now=NOW, reconfigure=True)
    assert rebuilt.mode == "full"
    assert holiday(con) == (False, 2)  # a working day with two periods now
    assert build(con, ChannelCatalog(), now=NOW).mode == "incremental"
    with pytest.raises(ConfigurationChanged):
        build(con, holidays, now=NOW)


def test_a_reformatted_catalog_is_the_same_configuration(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    build(con, catalog_from(tmp_path, CALENDAR), now=NOW)
    reformatted = tmp_path / "channels.toml"
    reformatted.write_text(
        "# the same calendar, laid out differently\n" + CALENDAR.replace(" = ", "=")
    )
    assert build(con, ChannelCatalog.load(reformatted), now=NOW).mode == "incremental"


def test_another_reporting_time_zone_is_refused(con: duckdb.DuckDBPyConnection) -> None:
    build(con, ChannelCatalog(), "UTC", now=NOW)
    with pytest.raises(
        ConfigurationChanged, match=r"the reporting time zone \(UTC -> Asia/Shanghai\)"
    ):
        build(con, ChannelCatalog(), "Asia/Shanghai", now=NOW)
    assert build(con, ChannelCatalog(), "Asia/Shanghai", now=NOW, reconfigure=True).mode == "full"


def test_a_warehouse_built_by_older_rules_is_refused_until_rebuilt(
    con: duckdb.DuckDBPyConnection,
) -> None:
    build(con, ChannelCatalog(), now=NOW)
    old = json.loads(con.execute("SELECT config FROM ops.build_state").fetchone()[0])  # type: ignore[index]
    old["rules_version"] = RULES_VERSION - 1
    con.execute("UPDATE ops.build_state SET config = ?", [json.dumps(old)])
    with pytest.raises(
        ConfigurationChanged,
        match=rf"the KPI rules \(version {RULES_VERSION - 1} -> {RULES_VERSION}\)",
    ):
        build(con, ChannelCatalog(), now=NOW)
