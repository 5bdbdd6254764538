"""The suites against a real warehouse file: a clean build passes, each corruption is named."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from quality import SUITE_NAMES, QualityError, check_warehouse, run_suites
from warehouse.schema import open_warehouse, scalar


def failed(report_results: list[tuple[str, bool]]) -> set[str]:
    return {name for name, success in report_results if not success}


def test_a_clean_warehouse_passes_every_suite_and_the_run_is_recorded(
    con: duckdb.DuckDBPyConnection,
) -> None:
    report = run_suites(con)
    problems = [r for r in report.results if not r.success]
    assert problems == []
    assert report.success and report.critical_failures == report.warnings == 0
    assert [suite.suite for suite in report.suites] == list(SUITE_NAMES)
    assert con.execute(
        "SELECT suite, success, critical_failures, warnings FROM ops.quality_runs "
        "WHERE run_id = ? ORDER BY started_at",
        [report.run_id],
    ).fetchall() == [(name, True, 0, 0) for name in SUITE_NAMES]
    assert scalar(con, "SELECT count(*) FROM ops.quality_results") == len(report.results)
    assert scalar(con, "SELECT count(*) FROM ops.quality_results WHERE NOT success") == 0


# One corruption per row: the SQL, the suite to run, the one expectation that must fail,
# whether it is critical, and a column that names the offending row in the sample.
CORRUPTIONS = [
    pytest.param(
        "UPDATE core.messages SET readers = recipients + 1 WHERE message_id = "
        "(SELECT min(message_id) FROM core.messages WHERE recipients > 0)",
        "core.messages",
        "readers_at_most_recipients",
        True,
        "message_id",
        id="more-readers-than-recipients",
    ),
    pytest.param(
        "UPDATE core.requests SET first_response_at = opened_at - INTERVAL 1 HOUR "
        "WHERE conversation_id = (SELECT min(conversation_id) FROM core.requests "
        "WHERE first_response_at IS NOT NULL)",
        "core.requests",
        "first_response_after_opening",
        True,
        "conversation_id",
        id="response-before-opening",
    ),
    pytest.param(
        "UPDATE metrics.kpi_daily SET value = 1.5 WHERE kpi = 'read_rate' AND day = "
        "(SELECT min(day) FROM metrics.kpi_daily WHERE kpi = 'read_rate')",
        "metrics",
        "rates_within_0_1",
        True,
        "kpi",
        id="rate-of-1.5",
    ),
    pytest.param(
        "DELETE FROM metrics.kpi_daily WHERE kpi = 'volume' AND channel_id = "
        "(SELECT min(channel_id) FROM metrics.kpi_daily WHERE kpi = 'volume')",
        "metrics",
        "volume_row_per_active_day",
        True,
        "channel_id",
        id="missing-volume-row",
    ),
    pytest.param(
        "UPDATE core.calendar SET quarter = '1999Q1' WHERE day = (SELECT max(day) FROM core.calendar)",
        "core.calendar",
        "quarter_matches_day",
        True,
        "day",
        id="quarter-of-another-day",
    ),
    pytest.param(
        "UPDATE raw.events SET occurred_at = loaded_at + INTERVAL 3 DAY WHERE event_id = "
        "(SELECT min(event_id) FROM raw.events)",
        "events",
        "occurred_at_not_in_future",
        True,
        "event_id",
        id="event-from-the-future",
    ),
    pytest.param(
        "UPDATE raw.events SET message_id = NULL WHERE event_id = "
        "(SELECT min(event_id) FROM raw.events WHERE event_type = 'message_read')",
        "events",
        "message_id_present_where_required",
        True,
        "event_id",
        id="read-without-message",
    ),
    pytest.param(
        "INSERT INTO raw.events SELECT * REPLACE (uuid() AS event_id) FROM raw.events "
        "WHERE event_id = (SELECT min(event_id) FROM raw.events WHERE event_type = 'message_sent')",
        "events",
        "message_sent_once",
        False,
        "event_id",
        id="a-message-sent-twice-under-two-ids",
    ),
]


@pytest.mark.parametrize(("corrupt", "suite", "expectation", "critical", "names"), CORRUPTIONS)
def test_a_corrupted_table_fails_the_right_expectation(
    con: duckdb.DuckDBPyConnection,
    corrupt: str,
    suite: str,
    expectation: str,
    critical: bool,
    names: str,
) -> None:
    con.execute(corrupt)
    report = run_suites(con, [suite])
    assert failed([(r.check, r.success) for r in report.results]) == {expectation}
    [result] = [r for r in report.results if not r.success]
    assert result.critical is critical and result.unexpected_count
    assert result.sample and names in result.sample[0], result.sample
    assert report.success is not critical
    run = con.execute(
        "SELECT success, critical_failures, warnings FROM ops.quality_runs WHERE run_id = ?",
        [report.run_id],
    ).fetchall()
    assert run == [(not critical, int(critical), int(not critical))]
    [(recorded, sample)] = con.execute(
        "SELECT success, sample FROM ops.quality_results WHERE run_id = ? AND expectation = ?",
        [report.run_id, expectation],
    ).fetchall()
    assert recorded is False and names in json.loads(sample)[0]


def test_each_run_is_a_row_per_suite_with_its_own_flag(con: duckdb.DuckDBPyConnection) -> None:
    first = run_suites(con, ["core.messages"])
    con.execute(
        "UPDATE core.messages SET readers = -1 "
        "WHERE message_id = (SELECT min(message_id) FROM core.messages)"
    )
    second = run_suites(con, ["core.messages", "core.surveys"])
    rows = con.execute(
        "SELECT run_id, suite, success FROM ops.quality_runs ORDER BY started_at"
    ).fetchall()
    assert rows == [
        (first.run_id, "core.messages", True),
        (second.run_id, "core.messages", False),
        (second.run_id, "core.surveys", True),
    ]
    assert not second.success and second.critical_failures == 1


def test_a_run_that_is_not_recorded_opens_the_file_read_only(warehouse: Path) -> None:
    report = check_warehouse(warehouse, ["core.surveys"], record=False)
    assert report.success and not report.recorded and report.path == warehouse
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM ops.quality_runs").fetchall() == [(0,)]
    finally:
        con.close()
    recorded = check_warehouse(warehouse, ["core.surveys"])
    assert recorded.recorded
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM ops.quality_runs").fetchall() == [(1,)]
    finally:
        con.close()


def test_an_empty_warehouse_passes_and_a_missing_one_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with pytest.raises(QualityError, match="no warehouse at .*run `commpulse sink` first"):
        check_warehouse(path)
    assert not path.exists()
    open_warehouse(path).close()
    report = check_warehouse(path)
    assert report.success and report.warnings == 0
