"""The metrics tables of a build: daily and quarterly KPIs, the evaluation, channel health.

The SQL is :mod:`metrics.sql`'s, made from the KPI catalog. A full build
computes every row; an incremental one only the (kind, scope, day) cells the
fact step touched (``_cp_touched``, and the days a new active person reaches,
``_cp_trailing``), the quarters those days are in, and the evaluation of
those quarters and the quarters after them (their previous value changed).
A cell is recomputed whole, every channel of the kind that day with it, so
kind roll-ups (which no sum of channels gives: quantiles, distinct people)
stay exact.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import polars as pl

from metrics.catalog import CATALOG, Distinct, Kpi
from metrics.channels import ChannelCatalog
from metrics.sql import daily_kpi_sql, quarter_of, quarterly_kpi_sql

__all__ = ["refresh_health", "refresh_kpis"]

_GRADES = "CASE WHEN s >= 0.9 THEN 'A' WHEN s >= 0.75 THEN 'B' WHEN s >= 0.5 THEN 'C' ELSE 'D' END"
_PREVIOUS = (
    "CASE WHEN right({q}, 1) = '1' "
    "THEN CAST(CAST(left({q}, 4) AS INTEGER) - 1 AS VARCHAR) || 'Q4' "
    "ELSE left({q}, 5) || CAST(CAST(right({q}, 1) AS INTEGER) - 1 AS VARCHAR) END"
)
_NEXT = (
    "CASE WHEN right({q}, 1) = '4' "
    "THEN CAST(CAST(left({q}, 4) AS INTEGER) + 1 AS VARCHAR) || 'Q1' "
    "ELSE left({q}, 5) || CAST(CAST(right({q}, 1) AS INTEGER) + 1 AS VARCHAR) END"
)
#: the catalog's active-user KPIs (distinct people over trailing days), and the others
_ACTIVE = tuple(kpi for kpi in CATALOG if isinstance(kpi.measure, Distinct))
_PLAIN = tuple(kpi for kpi in CATALOG if not isinstance(kpi.measure, Distinct))
#: the longest trailing window of the active-user KPIs, in days
_TRAILING_DAYS = max((kpi.measure.trailing_days for kpi in _ACTIVE), default=1)  # type: ignore[union-attr]


def _names(kpis: tuple[Kpi, ...]) -> str:
    return ", ".join("'" + kpi.name + "'" for kpi in kpis)


def refresh_kpis(con: duckdb.DuckDBPyConnection, timezone: str, *, full: bool) -> None:
    """Recompute ``metrics.kpi_daily``, ``kpi_quarterly`` and ``quarterly_evaluation``."""
    if full:
        con.execute("DELETE FROM metrics.kpi_daily")
        _run(con, daily_kpi_sql(timezone))
        _quarterly(con, timezone, None)
        con.execute("DELETE FROM metrics.quarterly_evaluation")
        _evaluation(con, None)
        return
    # The cells: the touched (channel, day)s for every KPI but active users, and for active
    # users the report days a new active person or a new channel day reaches; each as its
    # channel's (kind, scope, day), recomputed for every channel of it.
    con.execute("""
CREATE OR REPLACE TEMP TABLE _cp_kdays AS
SELECT DISTINCT c.channel_kind, c.scope, t.day AS period
FROM _cp_touched t JOIN core.channels c USING (channel_id)""")
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_kdays_active AS
SELECT DISTINCT c.channel_kind, c.scope, d.day AS period
FROM _cp_trailing t
JOIN core.channel_days d ON d.channel_id = t.channel_id
 AND d.day >= t.day AND d.day < t.day + {_TRAILING_DAYS}
JOIN core.channels c ON c.channel_id = t.channel_id""")
    for cells, kpis in (("_cp_kdays", _PLAIN), ("_cp_kdays_active", _ACTIVE)):
        con.execute(
            f"DELETE FROM metrics.kpi_daily WHERE kpi IN ({_names(kpis)}) AND "
            f"(channel_kind, scope, day) IN (SELECT channel_kind, scope, period FROM {cells})"
        )
        _run(con, daily_kpi_sql(timezone, cells, kpis))
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_kquarters AS
SELECT DISTINCT channel_kind, scope, {quarter_of("period")} AS period
FROM (SELECT * FROM _cp_kdays UNION ALL SELECT * FROM _cp_kdays_active)""")
    _quarterly(con, timezone, "_cp_kquarters")
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_quarters AS
SELECT DISTINCT period AS quarter FROM _cp_kquarters
UNION SELECT DISTINCT {_NEXT.format(q="period")} FROM _cp_kquarters""")
    con.execute(
        "DELETE FROM metrics.quarterly_evaluation WHERE quarter IN (SELECT quarter FROM _cp_quarters)"
    )
    _evaluation(con, "_cp_quarters")


def _run(con: duckdb.DuckDBPyConnection, statements: list[str]) -> None:
    for statement in statements:
        con.execute(statement)


def _quarterly(con: duckdb.DuckDBPyConnection, timezone: str, restrict: str | None) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cp_quarterly AS SELECT quarter AS period, channel_id, "
        "channel_kind, scope, kpi, value, numerator, denominator FROM metrics.kpi_quarterly LIMIT 0"
    )
    _run(con, quarterly_kpi_sql(timezone, restrict))
    if restrict is None:
        con.execute("DELETE FROM metrics.kpi_quarterly")
    else:
        con.execute(
            "DELETE FROM metrics.kpi_quarterly WHERE (channel_kind, scope, quarter) IN "
            f"(SELECT channel_kind, scope, period FROM {restrict})"
        )
    targets = pl.DataFrame(
        {
            "kpi": [k.name for k in CATALOG],
            "target": [k.target for k in CATALOG],
            "direction": [k.direction for k in CATALOG],
        },
        schema={"kpi": pl.String, "target": pl.Float64, "direction": pl.String},
    )
    con.register("_cp_targets_kpi", targets)
    try:
        con.execute("""
INSERT INTO metrics.kpi_quarterly
SELECT q.period, q.channel_id, q.channel_kind, q.scope, q.kpi, q.value, q.numerator,
       q.denominator, t.target,
       CASE WHEN q.value IS NULL OR t.target IS NULL THEN NULL
            WHEN t.direction = 'lower_is_better' THEN q.value <= t.target
            ELSE q.value >= t.target END
FROM _cp_quarterly q JOIN _cp_targets_kpi t USING (kpi)""")
    finally:
        con.unregister("_cp_targets_kpi")


def _evaluation(con: duckdb.DuckDBPyConnection, quarters: str | None) -> None:
    """``metrics.quarterly_evaluation`` for the quarters in ``quarters`` (all if None)."""
    only = "" if quarters is None else f"WHERE k.quarter IN (SELECT quarter FROM {quarters})"
    con.execute(f"""
INSERT INTO metrics.quarterly_evaluation
WITH graded AS (
    SELECT quarter, channel_id, channel_kind, scope,
           avg(CASE WHEN met THEN 1.0 ELSE 0.0 END) FILTER (WHERE met IS NOT NULL) AS s
    FROM metrics.kpi_quarterly k {only} GROUP BY ALL
)
SELECT k.quarter, k.channel_id, k.channel_kind, k.scope, k.kpi, k.value, k.target, k.met,
       p.value, k.value - p.value,
       CASE WHEN g.s IS NULL THEN NULL ELSE {_GRADES} END
FROM metrics.kpi_quarterly k
LEFT JOIN metrics.kpi_quarterly p
       ON p.quarter = ({_PREVIOUS.format(q="k.quarter")}) AND p.kpi = k.kpi
      AND p.channel_id IS NOT DISTINCT FROM k.channel_id
      AND p.channel_kind = k.channel_kind AND p.scope = k.scope
LEFT JOIN graded g
       ON g.quarter = k.quarter AND g.channel_id IS NOT DISTINCT FROM k.channel_id
      AND g.channel_kind = k.channel_kind AND g.scope = k.scope
{only}""")


def refresh_health(
    con: duckdb.DuckDBPyConnection, catalog: ChannelCatalog, as_of: datetime
) -> None:
    """``metrics.channel_health``: idle time per channel, to the later of ``as_of`` and now
    (one calendar lookup per channel)."""
    rows = []
    now = max(as_of, datetime.now(UTC))
    channels = con.execute(
        "SELECT channel_id, channel_kind, scope, epoch(last_activity_at), archived_at IS NOT NULL "
        "FROM core.channels"
    ).fetchall()
    # The catalog's channels that never had an event are idle, and have no last activity.
    known = {channel_id for channel_id, *_ in channels}
    for channel_id, kind, scope in catalog.listed():
        if channel_id not in known:
            channels.append((channel_id, kind.value, scope.value, None, False))
    for channel_id, kind, scope, last, archived in channels:
        policy = catalog.policy(channel_id, kind)
        info = catalog.info(channel_id)
        threshold = policy.idle_business_seconds()
        idle_for = (
            None
            if last is None
            else policy.calendar.business_seconds_between(last, now.timestamp())
        )
        rows.append(
            {
                "channel_id": channel_id,
                "channel_kind": kind,
                "scope": scope,
                "last_activity_at": last,
                "idle_threshold_s": threshold,
                "idle_for_business_s": idle_for,
                "idle": not archived and (idle_for is None or idle_for >= threshold),
                "archived": archived,
                "as_of": now.timestamp(),
                "name": info.name if info else None,
            }
        )
    con.execute("DELETE FROM metrics.channel_health")
    if not rows:
        return
    con.register("_cp_health", pl.DataFrame(rows, infer_schema_length=None))
    try:
        con.execute(
            "INSERT INTO metrics.channel_health SELECT channel_id, channel_kind, scope, "
            "to_timestamp(last_activity_at), idle_threshold_s, idle_for_business_s, idle, "
            "archived, to_timestamp(as_of), name FROM _cp_health"
        )
    finally:
        con.unregister("_cp_health")
