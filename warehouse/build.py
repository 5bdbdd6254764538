"""Rebuild the core and metrics tables from ``raw.events``, in one transaction.

Everything here is derived: ``raw.events`` is the warehouse's own copy of the
log, and the core facts and metrics are recomputed from it as a whole, so
late events and corrections land where they belong (the warehouse is the
corrected history, see docs/warehouse.md). Readers see either the previous
build or the new one, never a mix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from metrics.catalog import CATALOG
from metrics.channels import ChannelCatalog
from metrics.sql import kpi_daily_sql, kpi_quarterly_sql
from metrics.windows import WindowClock
from warehouse.facts import FactBuilder, Facts
from warehouse.schema import scalar

__all__ = ["BuildResult", "build", "write_metrics"]

log = logging.getLogger(__name__)

_EVENT_COLUMNS = (
    "event_type, epoch(occurred_at) AS _t, channel_id, channel_kind, scope, actor_id, actor_role, "
    "conversation_id, message_id, in_reply_to, recipient_count, duration_s, planned_duration_s, "
    "score, category, visibility"
)
_GRADES = "CASE WHEN s >= 0.9 THEN 'A' WHEN s >= 0.75 THEN 'B' WHEN s >= 0.5 THEN 'C' ELSE 'D' END"


@dataclass(frozen=True)
class BuildResult:
    events: int
    requests: int
    messages: int
    kpi_rows: int
    as_of: datetime
    seconds: float


def build(
    con: duckdb.DuckDBPyConnection,
    catalog: ChannelCatalog,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> BuildResult:
    """Recompute every core and metrics table from ``raw.events``."""
    started = time.monotonic()
    clock = WindowClock(timezone)
    builder = FactBuilder(catalog, clock)
    frame = con.sql(
        f'SELECT {_EVENT_COLUMNS} FROM raw.events ORDER BY occurred_at, partition, "offset"'
    ).pl()
    builder.add_all(frame.iter_rows(named=True))
    facts = builder.facts(None if now is None else now.timestamp())
    as_of = datetime.fromtimestamp(facts.as_of, UTC) if frame.height else (now or datetime.now(UTC))
    con.execute("BEGIN TRANSACTION")
    try:
        _write_core(con, facts, catalog)
        write_metrics(con, timezone)
        _channel_health(con, catalog, as_of)
        kpi_rows = int(scalar(con, "SELECT count(*) FROM metrics.kpi_daily"))
        seconds = time.monotonic() - started
        con.execute(
            "INSERT INTO ops.builds VALUES (now(), ?, ?, ?)", [frame.height, as_of, seconds]
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    log.info("warehouse built events=%s seconds=%.1f", frame.height, seconds)
    return BuildResult(
        frame.height, len(facts.requests), len(facts.messages), kpi_rows, as_of, seconds
    )


def _replace(con: duckdb.DuckDBPyConnection, table: str, select: str, frame: pl.DataFrame) -> None:
    """Replace ``table``'s rows by ``select`` over ``frame`` (named ``f``)."""
    con.execute(f"DELETE FROM {table}")
    if frame.height:
        con.register("f", frame)
        try:
            con.execute(f"INSERT INTO {table} {select}")
        finally:
            con.unregister("f")


def _ts(column: str) -> str:
    return f"to_timestamp({column})"


def _write_core(con: duckdb.DuckDBPyConnection, facts: Facts, catalog: ChannelCatalog) -> None:
    channels = []
    for row in facts.channels.values():
        info = catalog.info(row.channel_id)
        policy = catalog.policy(row.channel_id, row.kind)
        channels.append(
            {
                "channel_id": row.channel_id,
                "channel_kind": info.kind.value if info and info.kind else row.kind,
                "scope": info.scope.value if info and info.scope else row.scope,
                "name": info.name if info else None,
                "calendar": info.calendar if info else "default",
                "idle_threshold_s": policy.idle_business_seconds(),
                "first_event_at": row.first_event_at,
                "last_activity_at": row.last_activity_at,
                "archived_at": row.archived_at,
                "events": row.events,
            }
        )
    _replace(
        con,
        "core.channels",
        "SELECT channel_id, channel_kind, scope, name, calendar, idle_threshold_s, "
        f"{_ts('first_event_at')}, {_ts('last_activity_at')}, {_ts('archived_at')}, events FROM f",
        _frame(channels),
    )
    _replace(con, "core.calendar", "SELECT * FROM f", _calendar(facts, catalog))
    requests = [
        {
            "channel_id": r.channel_id,
            "conversation_id": r.conversation_id,
            "request_type": r.request_type,
            "category": r.category,
            "opened_at": r.opened_at,
            "clock_start_at": r.clock_start,
            "deadline_at": r.deadline,
            "sla_target_s": r.sla_target_s,
            "first_response_at": r.first_response_at,
            "first_response_s": r.first_response_s,
            "first_response_business_s": r.first_response_business_s,
            "sla_status": r.sla_status,
            "resolved_at": r.resolved_at,
            "reopen_count": r.reopen_count,
            "agent_reply_count": r.agent_reply_count,
            "fcr": r.fcr,
        }
        for r in facts.requests
    ]
    _replace(
        con,
        "core.requests",
        "SELECT channel_id, conversation_id, request_type, category, "
        f"{_ts('opened_at')}, {_ts('clock_start_at')}, {_ts('deadline_at')}, sla_target_s, "
        f"{_ts('first_response_at')}, first_response_s, first_response_business_s, sla_status, "
        f"{_ts('resolved_at')}, reopen_count, agent_reply_count, fcr FROM f",
        _frame(requests),
    )
    messages = [
        {
            "channel_id": m.channel_id,
            "message_id": m.message_id,
            "sent_at": m.sent_at,
            "sender": m.sender,
            "recipients": m.recipients,
            "readers": m.readers,
            "first_read_at": m.first_read_at,
            "bounced": m.bounced,
            "misdelivered": m.misdelivered,
            "counts_for_read_rate": m.counts_for_read_rate,
        }
        for m in facts.messages
    ]
    _replace(
        con,
        "core.messages",
        f"SELECT channel_id, message_id, {_ts('sent_at')}, sender, recipients, readers, "
        f"{_ts('first_read_at')}, bounced, misdelivered, counts_for_read_rate FROM f",
        _frame(messages),
    )
    meetings = [
        {
            "channel_id": m.channel_id,
            "held_at": m.held_at,
            "duration_s": m.duration_s,
            "planned_duration_s": m.planned_duration_s,
            "overrun": m.overrun,
        }
        for m in facts.meetings
    ]
    _replace(
        con,
        "core.meetings",
        f"SELECT channel_id, {_ts('held_at')}, duration_s, planned_duration_s, overrun FROM f",
        _frame(meetings),
    )
    surveys = [
        {"channel_id": s.channel_id, "answered_at": s.answered_at, "score": s.score}
        for s in facts.surveys
    ]
    _replace(
        con,
        "core.surveys",
        f"SELECT channel_id, {_ts('answered_at')}, score FROM f",
        _frame(surveys),
    )
    activity = [
        {"channel_id": channel_id, "day": date.fromordinal(day), "actor_id": actor}
        for channel_id, day, actor in facts.activity
    ]
    _replace(con, "core.activity", "SELECT channel_id, day, actor_id FROM f", _frame(activity))


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, infer_schema_length=None)


def _calendar(facts: Facts, catalog: ChannelCatalog) -> pl.DataFrame:
    """Every day of every calendar from the first event to the build time."""
    if not facts.channels:
        return pl.DataFrame()
    first = min(row.first_event_at for row in facts.channels.values())
    rows = []
    for name, calendar in catalog.calendars.items():
        day = datetime.fromtimestamp(first, UTC).date() - timedelta(days=1)
        last = datetime.fromtimestamp(facts.as_of, UTC).date() + timedelta(days=1)
        while day <= last:
            seconds = sum(end - start for start, end in calendar.working_intervals(day))
            rows.append(
                {
                    "day": day,
                    "calendar": name,
                    "timezone": calendar.timezone,
                    "workday": calendar.is_working_day(day),
                    "holiday": day in calendar.holidays,
                    "makeup_day": day in calendar.makeup_days,
                    "business_s": float(seconds),
                    "quarter": _quarter(day),
                }
            )
            day += timedelta(days=1)
    return pl.DataFrame(rows)


def _quarter(day: date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def write_metrics(con: duckdb.DuckDBPyConnection, timezone: str) -> None:
    """The KPI tables and the quarterly evaluation, from the core tables (no transaction)."""
    con.execute("DELETE FROM metrics.kpi_daily")
    con.execute(f"INSERT INTO metrics.kpi_daily {kpi_daily_sql(timezone)}")
    targets = pl.DataFrame(
        {
            "kpi": [k.name for k in CATALOG],
            "target": [k.target for k in CATALOG],
            "direction": [k.direction for k in CATALOG],
        },
        schema={"kpi": pl.String, "target": pl.Float64, "direction": pl.String},
    )
    con.register("targets", targets)
    try:
        con.execute("DELETE FROM metrics.kpi_quarterly")
        con.execute(f"""
INSERT INTO metrics.kpi_quarterly
SELECT q.period, q.channel_id, q.channel_kind, q.scope, q.kpi, q.value, q.numerator,
       q.denominator, t.target,
       CASE WHEN q.value IS NULL OR t.target IS NULL THEN NULL
            WHEN t.direction = 'lower_is_better' THEN q.value <= t.target
            ELSE q.value >= t.target END
FROM ({kpi_quarterly_sql(timezone)}) q JOIN targets t USING (kpi)""")
    finally:
        con.unregister("targets")
    con.execute("DELETE FROM metrics.quarterly_evaluation")
    previous = (
        "CASE WHEN right(quarter, 1) = '1' "
        "THEN CAST(CAST(left(quarter, 4) AS INTEGER) - 1 AS VARCHAR) || 'Q4' "
        "ELSE left(quarter, 5) || CAST(CAST(right(quarter, 1) AS INTEGER) - 1 AS VARCHAR) END"
    )
    con.execute(f"""
INSERT INTO metrics.quarterly_evaluation
WITH graded AS (
    SELECT quarter, channel_id, channel_kind, scope,
           avg(CASE WHEN met THEN 1.0 ELSE 0.0 END) FILTER (WHERE met IS NOT NULL) AS s
    FROM metrics.kpi_quarterly GROUP BY ALL
)
SELECT k.quarter, k.channel_id, k.channel_kind, k.scope, k.kpi, k.value, k.target, k.met,
       p.value, k.value - p.value,
       CASE WHEN g.s IS NULL THEN NULL ELSE {_GRADES} END
FROM metrics.kpi_quarterly k
LEFT JOIN metrics.kpi_quarterly p
       ON p.quarter = ({previous.replace("quarter", "k.quarter")}) AND p.kpi = k.kpi
      AND p.channel_id IS NOT DISTINCT FROM k.channel_id
      AND p.channel_kind = k.channel_kind AND p.scope = k.scope
LEFT JOIN graded g
       ON g.quarter = k.quarter AND g.channel_id IS NOT DISTINCT FROM k.channel_id
      AND g.channel_kind = k.channel_kind AND g.scope = k.scope""")


def _channel_health(
    con: duckdb.DuckDBPyConnection, catalog: ChannelCatalog, as_of: datetime
) -> None:
    rows = []
    now = max(as_of, datetime.now(UTC))
    channels = con.sql(
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
    _replace(
        con,
        "metrics.channel_health",
        f"SELECT channel_id, channel_kind, scope, {_ts('last_activity_at')}, idle_threshold_s, "
        f"idle_for_business_s, idle, archived, {_ts('as_of')}, name FROM f",
        _frame(rows),
    )
