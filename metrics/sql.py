"""The KPI catalog rendered as SQL over the warehouse's core tables.

The stream evaluates each :class:`metrics.catalog.Kpi` in Python
(:func:`metrics.catalog.evaluate`); the warehouse runs the SQL made here from
the same definitions, so there is one formula per KPI. Each query yields
``(period, channel_id, channel_kind, scope, kpi, value, numerator,
denominator)`` rows, per channel (``channel_id`` set) and per kind and scope
(``channel_id`` NULL), for the periods that have facts.

Periods: ``day`` (a DATE in the reporting time zone) or ``quarter`` (text
like ``2026Q3``). Trailing-day KPIs (active users) exist per day only; their
quarterly value is the mean of the quarter's daily values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

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

__all__ = ["FACT_TABLES", "kpi_daily_sql", "kpi_quarterly_sql", "quarter_of"]

Period = Literal["day", "quarter"]

#: The core table behind each fact table name of the catalog.
FACT_TABLES: Final[Mapping[str, str]] = {
    "events": "raw.events",
    "messages": "core.messages",
    "requests": "core.requests",
    "meetings": "core.meetings",
    "surveys": "core.surveys",
    "activity": "core.activity",
}


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


def _amount(part: Count | Sum) -> str:
    if isinstance(part, Count):
        return f"CAST(count(*) FILTER (WHERE {_predicate(part.where)}) AS DOUBLE)"
    return (
        f"CAST(coalesce(sum(f.{part.column}) FILTER (WHERE {_predicate(part.where)}), 0) AS DOUBLE)"
    )


def _measure(measure: Measure) -> tuple[str, str, str]:
    """SQL aggregates for (value, numerator, denominator)."""
    if isinstance(measure, Count | Sum):
        amount = _amount(measure)
        return amount, amount, "CAST(NULL AS DOUBLE)"
    if isinstance(measure, Ratio):
        numerator, denominator = _amount(measure.numerator), _amount(measure.denominator)
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
        return value, "CAST(NULL AS DOUBLE)", count
    raise TypeError(f"no plain aggregate for {measure!r}")


def _day(column: str, timezone: str) -> str:
    if column == "day":
        return "f.day"
    return f"CAST(timezone({_literal(timezone)}, f.{column}) AS DATE)"


def _grouped(kpi: Kpi, period_sql: str) -> str:
    """One KPI per channel and per kind/scope, grouped by ``period_sql`` (over ``f``)."""
    value, numerator, denominator = _measure(kpi.measure)
    return f"""
SELECT {period_sql} AS period, f.channel_id, c.channel_kind, c.scope, {_literal(kpi.name)} AS kpi,
       {value} AS value, {numerator} AS numerator, {denominator} AS denominator
FROM {FACT_TABLES[kpi.facts]} f JOIN core.channels c USING (channel_id)
WHERE f.{kpi.attributed_to} IS NOT NULL
GROUP BY GROUPING SETS ((period, f.channel_id, c.channel_kind, c.scope),
                        (period, c.channel_kind, c.scope))"""


def _trailing(kpi: Kpi, timezone: str) -> str:
    """Distinct actors over the trailing days up to each day that has events.

    Each activity row is spread over the report days it counts for (its day and
    the ``trailing_days - 1`` after), so the count is an equi-join and a distinct
    count rather than a range join. A kind's value counts the people of those of
    its channels that had an event that day, as the stream's kind window does.
    """
    measure = kpi.measure
    assert isinstance(measure, Distinct)
    return f"""
SELECT d.day AS period, d.channel_id, c.channel_kind, c.scope, {_literal(kpi.name)} AS kpi,
       CAST(count(DISTINCT x.{measure.column}) AS DOUBLE) AS value,
       CAST(count(DISTINCT x.{measure.column}) AS DOUBLE) AS numerator,
       CAST(NULL AS DOUBLE) AS denominator
FROM (SELECT DISTINCT {_day("occurred_at", timezone)} AS day, f.channel_id FROM raw.events f) d
JOIN core.channels c USING (channel_id)
LEFT JOIN (SELECT f.channel_id, f.day + CAST(r.k AS INTEGER) AS report_day, f.{measure.column}
           FROM core.activity f, range({measure.trailing_days}) r(k)
           WHERE {_predicate(measure.where)}) x
       ON x.channel_id = d.channel_id AND x.report_day = d.day
GROUP BY GROUPING SETS ((d.day, d.channel_id, c.channel_kind, c.scope),
                        (d.day, c.channel_kind, c.scope))"""


def kpi_daily_sql(timezone: str, kpis: tuple[Kpi, ...] = CATALOG) -> str:
    """Every KPI per day (and channel, and kind/scope): the rows of ``metrics.kpi_daily``."""
    parts = [
        _trailing(kpi, timezone)
        if isinstance(kpi.measure, Distinct)
        else _grouped(kpi, _day(kpi.attributed_to, timezone))
        for kpi in kpis
        if "day" in kpi.granularities
    ]
    return "\nUNION ALL\n".join(parts)


def kpi_quarterly_sql(timezone: str, kpis: tuple[Kpi, ...] = CATALOG) -> str:
    """Every KPI per quarter: ``metrics.kpi_quarterly`` without targets.

    Trailing-day KPIs take the mean of their daily values in ``metrics.kpi_daily``
    (so that table must be filled first); the others are computed over the
    quarter's facts, like a window one quarter long.
    """
    parts = []
    for kpi in kpis:
        if isinstance(kpi.measure, Distinct):
            parts.append(f"""
SELECT {quarter_of("day")} AS period, channel_id, channel_kind, scope, kpi,
       avg(value) AS value, CAST(NULL AS DOUBLE) AS numerator,
       CAST(count(*) AS DOUBLE) AS denominator
FROM metrics.kpi_daily WHERE kpi = {_literal(kpi.name)}
GROUP BY ALL""")
        else:
            parts.append(_grouped(kpi, quarter_of(_day(kpi.attributed_to, timezone))))
    return "\nUNION ALL\n".join(parts)
