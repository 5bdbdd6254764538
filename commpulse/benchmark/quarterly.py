"""The quarterly evaluation at 1M and 10M events, on a warehouse filled straight by SQL.

Loading ten million events through Kafka is not what this measures: the
core tables are generated in DuckDB with the shapes and proportions the
simulator gives (a request per ~6 events, a message per ~4, 300 channels,
5,000 people, one quarter), and the timed part is
:func:`warehouse.kpis.refresh_kpis` — every daily and quarterly KPI, the
evaluation with the previous quarter and grades — the SQL the sink runs after
each load.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from warehouse.kpis import refresh_kpis
from warehouse.schema import migrate

__all__ = ["fill", "time_quarterly"]

_KINDS = (
    "email", "im", "meeting", "announcement", "forum", "knowledge_base",
    "hotline", "live_chat", "ticket", "social", "crm", "partner_portal",
)  # fmt: skip
_START = "TIMESTAMPTZ '2026-04-01 00:00:00+00'"
_SPAN_S = 182 * 86400  # two quarters, so the evaluation has a previous quarter


def _at(seed: str) -> str:
    return f"{_START} + to_seconds(CAST(hash({seed}) % {_SPAN_S} AS BIGINT))"


def fill(con: duckdb.DuckDBPyConnection, events: int) -> None:
    """Generate a warehouse of about ``events`` events (raw and core tables)."""
    migrate(con)
    kinds = ", ".join(f"'{k}'" for k in _KINDS)
    con.execute(f"""
INSERT INTO core.channels
SELECT 'ch-' || i, list_extract([{kinds}], 1 + i % 12),
       CASE WHEN i % 12 < 6 THEN 'internal' ELSE 'external' END, NULL, 'default', 7200,
       {_START}, {_START}, NULL, 0
FROM range(300) t(i)""")
    con.execute(f"""
INSERT INTO raw.events
SELECT uuid(), 1, 'message_sent', {_at("i")}, 'ch-' || (hash(i * 7) % 300),
       'email', 'internal', 'p-' || (hash(i * 11) % 5000), 'employee',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'bench', 0, i, now()
FROM range({events}) t(i)""")
    con.execute(f"""
INSERT INTO core.requests
SELECT 'ch-' || (hash(i * 13) % 300), 'r-' || i,
       list_extract(['ticket', 'call', 'message', 'post'], 1 + i % 4), NULL,
       {_at("i * 17")} AS opened, opened, opened + INTERVAL 2 HOUR, 7200,
       opened + to_seconds(CAST(hash(i * 19) % 20000 AS BIGINT)),
       CAST(hash(i * 19) % 20000 AS DOUBLE), CAST(hash(i * 19) % 20000 AS DOUBLE) / 2,
       CASE WHEN hash(i * 19) % 20000 <= 7200 THEN 'met' ELSE 'breached' END,
       CASE WHEN i % 3 = 0 THEN NULL ELSE opened + INTERVAL 1 DAY END, i % 5 = 0, 1,
       CASE WHEN i % 3 = 0 THEN NULL ELSE i % 5 <> 0 END
FROM range({events // 6}) t(i)""")
    con.execute(f"""
INSERT INTO core.messages
SELECT 'ch-' || (hash(i * 23) % 300), 'm-' || i, {_at("i * 29")}, 'p-' || (i % 5000),
       5, CAST(hash(i * 31) % 6 AS INTEGER), NULL, FALSE, FALSE, TRUE
FROM range({events // 4}) t(i)""")
    con.execute(f"""
INSERT INTO core.meetings
SELECT 'ch-' || (hash(i * 37) % 300), {_at("i * 41")}, 1800 + hash(i) % 1200, 2400, NULL
FROM range({events // 50}) t(i)""")
    con.execute("UPDATE core.meetings SET overrun = duration_s > planned_duration_s")
    con.execute(f"""
INSERT INTO core.surveys
SELECT 'ch-' || (hash(i * 43) % 300), {_at("i * 47")}, 1 + hash(i) % 5
FROM range({events // 50}) t(i)""")
    con.execute("""
INSERT INTO core.activity
SELECT DISTINCT channel_id, CAST(occurred_at AS DATE), actor_id FROM raw.events""")
    con.execute("""
INSERT INTO core.channel_days
SELECT channel_id, CAST(occurred_at AS DATE), count(*) FROM raw.events GROUP BY ALL""")


def time_quarterly(events: int, directory: Path) -> tuple[float, float]:
    """(seconds to fill, seconds for the quarterly evaluation) at ``events`` events."""
    path = directory / f"quarterly-{events}.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")
        started = time.perf_counter()
        fill(con, events)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        refresh_kpis(con, "UTC", full=True)
        return filled, time.perf_counter() - started
    finally:
        con.close()
        path.unlink(missing_ok=True)
