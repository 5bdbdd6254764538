"""The KPI catalog rendered as SQL over the warehouse's core tables.

The stream evaluates each :class:`metrics.catalog.Kpi` in Python
(:func:`metrics.catalog.evaluate`); the warehouse runs the SQL made here from
the same definitions, so there is one formula per KPI. Rows are ``(period,
channel_id, channel_kind, scope, kpi, value, numerator, denominator)``, per
channel (``channel_id`` set) and per kind and scope (``channel_id`` NULL).

* **Days** (a DATE in the reporting time zone): the KPIs of one fact table and
  attribution time are computed together, in one pass over the facts; active
  users from each person's activity as day spans (an activity on day d counts
  on days d … d + n − 1; overlapping spans of one person on one channel merge
  first, so the work is the size of the answer, not n times the activity).
* **Quarters** (text like ``2026Q3``): counts, sums, ratios and means are the
  sums of their daily numerators and denominators (the same value as over the
  quarter's facts at once, since they add up); quantiles are computed over the
  quarter's facts; active users are the mean of the quarter's daily values.

Every statement takes an optional ``restrict``: a relation of ``(channel_kind,
scope, day)`` (or ``quarter``) whose rows alone are computed — what an
incremental build touched. Without it, everything is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Final

from metrics.catalog import (
    CATALOG,
    Count,
    Distinct,
    Kpi,
    Mean,
    Measure,
    Quantile,
    Ratio,
    Sum,
    Where,
)

__all__ = [
    "FACT_TABLES",
    "FactTable",
    "daily_kpi_sql",
    "quarter_of",
    "quarterly_kpi_sql",
]


@dataclass(frozen=True)
class FactTable:
    """A core table facts of a catalog fact table are read from. A pre-aggregated table has
    a ``weight`` column (how many facts a row stands for) and a ``day`` column (the
    reporting day all of them are attributed to)."""

    table: str
    weight: str | None = None
    day: str | None = None


#: The core table behind each fact table name of the catalog.
FACT_TABLES: Final[Mapping[str, FactTable]] = {
    "events": FactTable("core.channel_days", weight="events", day="day"),
    "messages": FactTable("core.messages"),
    "requests": FactTable("core.requests"),
    "meetings": FactTable("core.meetings"),
    "surveys": FactTable("core.surveys"),
    "activity": FactTable("core.activity"),
}
_NULL: Final = "CAST(NULL AS DOUBLE)"


def quarter_of(day_sql: str) -> str:
    """SQL for the quarter label ('2026Q3') of a DATE expression."""
    return f"(CAST(year({day_sql}) AS VARCHAR) || 'Q' || CAST(quarter({day_sql}) AS VARCHAR))"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _predicate(where: Where) -> str:
    parts = [f"f.{column} = {_literal(value)}" for column, value in where.equals.items()]
    parts += [
        f"f.{column} IN ({', '.join(_literal(v) for v in values)})"
        for column, values in where.isin.items()
    ]
    parts += [f"f.{column} IS NOT NULL" for column in where.not_null]
    parts += [f"f.{column} IS TRUE" for column in where.true]
    return " AND ".join(parts) or "TRUE"


def _amount(part: Count | Sum, facts: FactTable) -> str:
    where = _predicate(part.where)
    if isinstance(part, Count):
        if facts.weight is not None:
            return f"CAST(coalesce(sum(f.{facts.weight}) FILTER (WHERE {where}), 0) AS DOUBLE)"
        return f"CAST(count(*) FILTER (WHERE {where}) AS DOUBLE)"
    return f"CAST(coalesce(sum(f.{part.column}) FILTER (WHERE {where}), 0) AS DOUBLE)"


def _measure(measure: Measure, facts: FactTable) -> tuple[str, str, str]:
    """SQL aggregates for (value, numerator, denominator)."""
    if isinstance(measure, Count | Sum):
        amount = _amount(measure, facts)
        return amount, amount, _NULL
    if isinstance(measure, Ratio):
        numerator = _amount(measure.numerator, facts)
        denominator = _amount(measure.denominator, facts)
        value = f"CASE WHEN {denominator} = 0 THEN NULL ELSE {numerator} / {denominator} END"
        return value, numerator, denominator
    if isinstance(measure, Mean):
        where = _predicate(measure.where)
        total = f"CAST(coalesce(sum(f.{measure.column}) FILTER (WHERE {where}), 0) AS DOUBLE)"
        count = f"CAST(count(f.{measure.column}) FILTER (WHERE {where}) AS DOUBLE)"
        return f"CASE WHEN {count} = 0 THEN NULL ELSE {total} / {count} END", total, count
    if isinstance(measure, Quantile):
        where = f"{_predicate(measure.where)} AND f.{measure.column} IS NOT NULL"
        value = f"quantile_cont(f.{measure.column}, {measure.q}) FILTER (WHERE {where})"
        count = f"CAST(count(*) FILTER (WHERE {where}) AS DOUBLE)"
        return value, _NULL, count
    raise TypeError(f"no plain aggregate for {measure!r}")


def _day(kpi: Kpi, timezone: str) -> str:
    """The reporting day of a fact of ``kpi``: its attribution time's local date."""
    day = FACT_TABLES[kpi.facts].day
    if day is not None or kpi.attributed_to == "day":
        return f"f.{day or 'day'}"
    return f"CAST(timezone({_literal(timezone)}, f.{kpi.attributed_to}) AS DATE)"


def _grouped(
    kpis: list[Kpi], period_sql: str, restrict: str | None, into: str, first_day: str = "period"
) -> str:
    """KPIs of one fact table and attribution time, in one pass over the facts.

    ``first_day`` is SQL for the first day of a ``period`` of ``restrict`` (a facts'
    time before the earliest one's is not read at all).
    """
    facts = FACT_TABLES[kpis[0].facts]
    attribution = facts.day or kpis[0].attributed_to
    columns = []
    for i, kpi in enumerate(kpis):
        value, numerator, denominator = _measure(kpi.measure, facts)
        columns.append(f"{value} AS v{i}, {numerator} AS n{i}, {denominator} AS d{i}")
    where = f"f.{attribution} IS NOT NULL"
    if restrict is not None:
        where += (
            f" AND (c.channel_kind, c.scope, {period_sql}) IN "
            f"(SELECT channel_kind, scope, period FROM {restrict})"
        )
        if facts.day is None and attribution != "day":  # skips row groups of older facts
            where += (
                f" AND f.{attribution} >= (SELECT CAST(min({first_day}) - 1 AS TIMESTAMPTZ) "
                f"FROM {restrict})"
            )
    unpivot = "\nUNION ALL\n".join(
        f"SELECT period, channel_id, channel_kind, scope, {_literal(kpi.name)}, v{i}, n{i}, d{i} "
        "FROM agg"
        for i, kpi in enumerate(kpis)
    )
    return f"""
INSERT INTO {into}
WITH agg AS MATERIALIZED (
    SELECT {period_sql} AS period, f.channel_id, c.channel_kind, c.scope,
           {", ".join(columns)}
    FROM {facts.table} f JOIN core.channels c USING (channel_id)
    WHERE {where}
    GROUP BY GROUPING SETS ((period, f.channel_id, c.channel_kind, c.scope),
                            (period, c.channel_kind, c.scope))
)
{unpivot}"""


def _families(kpis: tuple[Kpi, ...]) -> list[list[Kpi]]:
    """The catalog's plain KPIs grouped by fact table and attribution time."""
    plain = [kpi for kpi in kpis if not isinstance(kpi.measure, Distinct)]
    plain.sort(key=lambda kpi: (kpi.facts, kpi.attributed_to))
    return [list(group) for _, group in groupby(plain, key=lambda k: (k.facts, k.attributed_to))]


def _trailing(kpi: Kpi, restrict: str | None) -> str:
    """Distinct people over the trailing days up to each day a channel has events.

    A kind's value counts the people of those of its channels that had an event that
    day, as the stream's kind window does. Over everything, a person active on a channel
    on day d counts on days d … d + n − 1: a person's overlapping spans merge first
    (gaps and islands), then each span is spread over its days, so the rows are those of
    the answer. For a few report days (``restrict``), each activity in reach is joined to
    the report days it counts for instead.
    """
    measure = kpi.measure
    assert isinstance(measure, Distinct)
    n = measure.trailing_days
    if restrict is None:
        report_filter = ""
        covered = f"""
marked AS (
    SELECT f.channel_id, f.{measure.column} AS who, f.day,
           coalesce(f.day - lag(f.day) OVER w >= {n}, TRUE) AS starts
    FROM core.activity f WHERE {_predicate(measure.where)}
    WINDOW w AS (PARTITION BY f.channel_id, f.{measure.column} ORDER BY f.day)
), islands AS (
    SELECT channel_id, who, day,
           sum(CAST(starts AS INTEGER)) OVER (PARTITION BY channel_id, who ORDER BY day) AS island
    FROM marked
), spans AS (
    SELECT channel_id, who, min(day) AS first, max(day) + {n - 1} AS last
    FROM islands GROUP BY channel_id, who, island
), covered AS (
    SELECT channel_id, who, CAST(unnest(generate_series(first, last, INTERVAL 1 DAY)) AS DATE) AS day
    FROM spans
)"""
        join = "LEFT JOIN covered x ON x.channel_id = r.channel_id AND x.day = r.day"
    else:
        report_filter = (
            f"WHERE (c.channel_kind, c.scope, d.day) IN "
            f"(SELECT channel_kind, scope, period FROM {restrict})"
        )
        covered = f"""
covered AS (
    SELECT f.channel_id, f.{measure.column} AS who, f.day
    FROM core.activity f
    WHERE {_predicate(measure.where)}
      AND f.day >= (SELECT min(period) - {n - 1} FROM {restrict})
      AND f.day <= (SELECT max(period) FROM {restrict})
      AND f.channel_id IN (SELECT channel_id FROM report)
)"""
        join = (
            "LEFT JOIN covered x ON x.channel_id = r.channel_id "
            f"AND x.day BETWEEN r.day - {n - 1} AND r.day"
        )
    return f"""
INSERT INTO metrics.kpi_daily
WITH report AS (
    SELECT d.channel_id, d.day, c.channel_kind, c.scope
    FROM core.channel_days d JOIN core.channels c USING (channel_id) {report_filter}
), {covered.strip()}
SELECT r.day, r.channel_id, r.channel_kind, r.scope, {_literal(kpi.name)},
       CAST(count(DISTINCT x.who) AS DOUBLE), CAST(count(DISTINCT x.who) AS DOUBLE),
       {_NULL}
FROM report r {join}
GROUP BY GROUPING SETS ((r.day, r.channel_id, r.channel_kind, r.scope),
                        (r.day, r.channel_kind, r.scope))"""


def daily_kpi_sql(
    timezone: str, restrict: str | None = None, kpis: tuple[Kpi, ...] = CATALOG
) -> list[str]:
    """Statements inserting every KPI's rows per day into ``metrics.kpi_daily``."""
    statements = [
        _grouped(family, _day(family[0], timezone), restrict, "metrics.kpi_daily")
        for family in _families(kpis)
    ]
    statements += [
        _trailing(kpi, restrict)
        for kpi in kpis
        if isinstance(kpi.measure, Distinct) and "day" in kpi.granularities
    ]
    return statements


def quarterly_kpi_sql(
    timezone: str, restrict: str | None = None, kpis: tuple[Kpi, ...] = CATALOG
) -> list[str]:
    """Statements inserting every KPI per quarter into ``_cp_quarterly`` (``metrics.kpi_quarterly``
    without targets), from ``metrics.kpi_daily`` (which must be current) and, for quantiles,
    the facts. ``restrict`` holds ``(channel_kind, scope, period)`` with quarter labels."""
    daily_filter = ""
    if restrict is not None:
        daily_filter = (
            f"AND (channel_kind, scope, {quarter_of('day')}) IN "
            f"(SELECT channel_kind, scope, period FROM {restrict})"
        )
    additive = [
        kpi for kpi in kpis if isinstance(kpi.measure, Count | Sum | Ratio | Mean)
    ]
    counts = [kpi.name for kpi in additive if isinstance(kpi.measure, Count | Sum)]
    statements = []
    if additive:
        names = ", ".join(_literal(kpi.name) for kpi in additive)
        is_count = f"kpi IN ({', '.join(map(_literal, counts))})" if counts else "FALSE"
        statements.append(f"""
INSERT INTO _cp_quarterly
SELECT {quarter_of("day")}, channel_id, channel_kind, scope, kpi,
       CASE WHEN {is_count} THEN sum(numerator)
            WHEN sum(denominator) = 0 THEN NULL ELSE sum(numerator) / sum(denominator) END,
       sum(numerator), sum(denominator)
FROM metrics.kpi_daily WHERE kpi IN ({names}) {daily_filter}
GROUP BY 1, 2, 3, 4, 5""")
    trailing = [kpi.name for kpi in kpis if isinstance(kpi.measure, Distinct)]
    if trailing:
        statements.append(f"""
INSERT INTO _cp_quarterly
SELECT {quarter_of("day")}, channel_id, channel_kind, scope, kpi,
       avg(value), {_NULL}, CAST(count(*) AS DOUBLE)
FROM metrics.kpi_daily WHERE kpi IN ({", ".join(map(_literal, trailing))}) {daily_filter}
GROUP BY 1, 2, 3, 4, 5""")
    quantiles = [kpi for kpi in kpis if isinstance(kpi.measure, Quantile)]
    quantiles.sort(key=lambda kpi: (kpi.facts, kpi.attributed_to))
    for _, family in groupby(quantiles, key=lambda k: (k.facts, k.attributed_to)):
        group = list(family)
        statements.append(
            _grouped(
                group,
                quarter_of(_day(group[0], timezone)),
                restrict,
                "_cp_quarterly",
                first_day=_QUARTER_START,
            )
        )
    return statements


#: The first day of a quarter label ``period`` ('2026Q3' -> 2026-07-01).
_QUARTER_START: Final = (
    "make_date(CAST(left(period, 4) AS INTEGER), CAST(right(period, 1) AS INTEGER) * 3 - 2, 1)"
)
