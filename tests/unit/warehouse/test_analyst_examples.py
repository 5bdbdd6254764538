"""Every SQL example of docs/analysts.md runs, and some give what the raw events say.

The warehouse is built without Kafka, as in test_build.py: simulated events
go through the sink's own decode and commit, then the build derives every
table. 120 days ending 2026-10-10 cover 2026Q2 (in part), 2026Q3 and the
start of 2026Q4, so the examples' quarters (2026Q3, 2026Q2 before it) exist.
The examples run the way ``commpulse sql`` runs them: in a
:class:`~warehouse.sql.ReadOnlySession`, which also proves they are queries;
and once more on the published BI snapshot (``commpulse sql --snapshot``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.simulator import SimulationConfig, simulate
from metrics.channels import ChannelCatalog
from metrics.snapshot import publish_snapshot
from warehouse.build import build
from warehouse.schema import open_warehouse
from warehouse.sink import commit_batch, decode_record
from warehouse.sql import QueryResult, ReadOnlySession

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "analysts.md"
END = datetime(2026, 10, 10, tzinfo=UTC)
# 2026Q3 in the reporting time zone (UTC), as the examples write it.
Q3 = (
    "occurred_at >= TIMESTAMPTZ '2026-07-01 00:00:00+00' "
    "AND occurred_at < TIMESTAMPTZ '2026-10-01 00:00:00+00'"
)

_HEADING = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
_SQL = re.compile(r"^```sql\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    number: int  # the "## N." section it is in; 0 before the first
    title: str
    sql: str


def examples() -> list[Example]:
    """Every ```sql block of the guide, with the numbered section it belongs to."""
    text = GUIDE.read_text(encoding="utf-8")
    headings = [(m.start(), int(m.group(1)), m.group(2)) for m in _HEADING.finditer(text)]
    found = []
    for block in _SQL.finditer(text):
        before = [h for h in headings if h[0] < block.start()]
        number, title = (before[-1][1], before[-1][2]) if before else (0, "")
        found.append(Example(number, title, block.group(1)))
    return found


@dataclass(frozen=True)
class Built:
    warehouse: Path
    snapshot: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The warehouse, built from 20,000 simulated events, and its published BI snapshot."""
    directory = tmp_path_factory.mktemp("analysts")
    paths = Built(directory / "warehouse.duckdb", directory / "serving.duckdb")
    events = simulate(SimulationConfig(events=20_000, days=120, seed=2, end=END))
    con = open_warehouse(paths.warehouse)
    try:
        rows = []
        for offset, event in enumerate(events):
            decoded = decode_record(orjson.dumps(event, default=str), "events", 0, offset)
            assert isinstance(decoded, dict), decoded
            rows.append(decoded)
        assert commit_batch(con, "events", rows, 0, {0: len(rows)}) == 20_000
        build(con, ChannelCatalog(), now=END)
        publish_snapshot(con, paths.snapshot, directory / "parquet")
    finally:
        con.close()
    return paths


@pytest.fixture(scope="module")
def session(built: Built) -> Iterator[ReadOnlySession]:
    with ReadOnlySession(built.warehouse) as opened:
        yield opened


def run(session: ReadOnlySession, sql: str) -> QueryResult:
    (result,) = session.run(sql)
    return result


def rows(result: QueryResult) -> list[dict[str, Any]]:
    names = [column.name for column in result.columns]
    return [dict(zip(names, row, strict=True)) for row in result.rows]


def example(number: int, index: int = 0) -> Example:
    """The ``index``-th SQL block of section ``number``."""
    return [e for e in examples() if e.number == number][index]


def test_the_guide_has_ten_or_more_worked_examples() -> None:
    numbered = {e.number for e in examples() if e.number > 0}
    assert len(numbered) >= 10
    assert numbered == set(range(1, max(numbered) + 1)), "examples are numbered 1, 2, 3, ..."


def failures(session: ReadOnlySession) -> list[str]:
    """What is wrong with each example on ``session``: an error, several statements, no rows."""
    found = []
    for e in examples():
        try:
            results = session.run(e.sql)
        except Exception as exc:  # noqa: BLE001 - report every failing block at once
            found.append(f"section {e.number} ({e.title}): {exc}")
            continue
        if len(results) != 1:
            found.append(f"section {e.number} ({e.title}): {len(results)} statements, not 1")
        elif not results[0].rows:
            found.append(f"section {e.number} ({e.title}): no rows")
    return found


def test_every_sql_block_runs_and_returns_rows(session: ReadOnlySession) -> None:
    problems = failures(session)
    assert not problems, "\n".join(problems)


def test_every_sql_block_runs_on_the_bi_snapshot_too(built: Built) -> None:
    """The guide says so: the examples read only core and metrics."""
    with ReadOnlySession(built.snapshot, snapshot=True) as snapshot:
        problems = failures(snapshot)
    assert not problems, "\n".join(problems)


def test_the_sla_rate_per_kind_is_met_over_decided_requests(session: ReadOnlySession) -> None:
    shown = {(r["channel_kind"], r["scope"]): r for r in rows(run(session, example(1).sql))}
    met, decided = run(
        session,
        "SELECT count(*) FILTER (WHERE sla_status = 'met'), "
        "count(*) FILTER (WHERE sla_status IN ('met', 'breached')) "
        "FROM core.requests r JOIN core.channels c USING (channel_id) "
        "WHERE c.channel_kind = 'hotline' AND r.request_type IN ('ticket', 'call', 'message') "
        f"AND {Q3.replace('occurred_at', 'r.opened_at')}",
    ).rows[0]
    assert decided > 100
    hotline = shown[("hotline", "external")]
    assert hotline["sla_rate"] == round(met / decided, 3)
    assert hotline["target"] == 0.9
    assert hotline["previous_quarter"] is not None  # 2026Q2 is in the data too


def test_the_grade_distribution_covers_every_channel_active_in_the_quarter(
    session: ReadOnlySession,
) -> None:
    grades = rows(run(session, example(7).sql))
    active = run(session, f"SELECT count(DISTINCT channel_id) FROM raw.events WHERE {Q3}")
    assert sum(r["channels"] for r in grades) == active.rows[0][0] > 100
    assert {r["grade"] for r in grades} <= {"A", "B", "C", "D", "none"}
    assert sum(r["pct"] for r in grades) == pytest.approx(100.0, abs=0.5)


def test_active_users_over_all_channels_are_the_distinct_senders_and_readers(
    session: ReadOnlySession,
) -> None:
    shown = {r["channel_kind"]: r["active_users_28d"] for r in rows(run(session, example(5).sql))}
    people = run(
        session,
        "SELECT count(DISTINCT actor_id) FROM raw.events "
        "WHERE event_type IN ('message_sent', 'message_read') "
        "AND actor_role IN ('employee', 'agent', 'customer', 'partner') "
        "AND occurred_at >= TIMESTAMPTZ '2026-09-03 00:00:00+00' "
        "AND occurred_at < TIMESTAMPTZ '2026-10-01 00:00:00+00'",
    ).rows[0][0]
    assert shown["all channels"] == people > 100
    assert all(count <= people for count in shown.values())


def test_csat_per_kind_is_the_mean_survey_score(session: ReadOnlySession) -> None:
    shown = {(r["channel_kind"], r["scope"]): r for r in rows(run(session, example(10).sql))}
    scores = run(
        session,
        "SELECT channel_kind, scope, avg(score), count(*) FROM raw.events "
        f"WHERE event_type = 'survey_answered' AND {Q3} GROUP BY ALL",
    ).rows
    assert len(scores) == len(shown) > 3
    for kind, scope, mean, answers in scores:
        assert shown[(kind, scope)]["csat_mean"] == round(mean, 2)
        assert shown[(kind, scope)]["answers"] == answers
