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
    # The quantiles of one column over the same facts are computed together, in one list.
    shared: dict[tuple[str, str], list[float]] = {}
    for kpi in kpis:
        if isinstance(kpi.measure, Quantile):
            key = (kpi.measure.column, _predicate(kpi.measure.where))
            shared.setdefault(key, []).append(kpi.measure.q)
    names = {key: f"q{j}" for j, key in enumerate(shared)}
    for key, qs in shared.items():
        column, where = key
        columns.append(
            f"quantile_cont(f.{column}, {qs!r}) FILTER (WHERE {where} AND f.{column} IS NOT NULL) "
            f"AS {names[key]}"
        )
    for i, kpi in enumerate(kpis):
        value, numerator, denominator = _measure(kpi.measure, facts)
        if isinstance(kpi.measure, Quantile):
            key = (kpi.measure.column, _predicate(kpi.measure.where))
            value = f"{names[key]}[{shared[key].index(kpi.measure.q) + 1}]"
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


def _trailing(kpi: Kpi, restrict: str) -> str:
    """Distinct people over the trailing ``n`` days up to each report day of ``restrict``.

    A kind's value counts the people of those of its channels that had an event that
    day, as the stream's kind window does. For a few report days each activity in reach
    is joined to the report days it counts for; over everything, :func:`_trailing_all`.
    """
    measure = kpi.measure
    assert isinstance(measure, Distinct)
    n = measure.trailing_days
    return f"""
INSERT INTO metrics.kpi_daily
WITH report AS (
    SELECT d.channel_id, d.day, c.channel_kind, c.scope
    FROM core.channel_days d JOIN core.channels c USING (channel_id)
    WHERE (c.channel_kind, c.scope, d.day) IN (SELECT channel_kind, scope, period FROM {restrict})
), covered AS (
    SELECT f.channel_id, f.{measure.column} AS who, f.day
    FROM core.activity f
    WHERE {_predicate(measure.where)}
      AND f.day >= (SELECT min(period) - {n - 1} FROM {restrict})
      AND f.day <= (SELECT max(period) FROM {restrict})
      AND f.channel_id IN (SELECT channel_id FROM report)
)
SELECT r.day, r.channel_id, r.channel_kind, r.scope, {_literal(kpi.name)},
       CAST(count(DISTINCT x.who) AS DOUBLE), CAST(count(DISTINCT x.who) AS DOUBLE), {_NULL}
FROM report r
LEFT JOIN covered x ON x.channel_id = r.channel_id AND x.day BETWEEN r.day - {n - 1} AND r.day
GROUP BY GROUPING SETS ((r.day, r.channel_id, r.channel_kind, r.scope),
                        (r.day, r.channel_kind, r.scope))"""


def _trailing_all(kpis: list[Kpi]) -> str:
    """Every day's value of trailing distinct-people KPIs over the same column, at once.

    Joining each activity to the ``n`` report days it counts for would be ``n`` times the
    activity; intervals instead: a person's activity on a channel becomes the spans of days
    it counts for (overlapping ones merged, one sort of the activity for every KPI), a
    channel's value on a day is the number of spans covering it (a running sum of +1 at
    each start and −1 after each end), and a kind's is the same over each person's spans
    cut to the days their channel had events and merged across the kind's channels.
    """
    measure = kpis[0].measure
    assert isinstance(measure, Distinct)
    windows = sorted({kpi.measure.trailing_days for kpi in kpis})  # type: ignore[union-attr]
    island = "PARTITION BY channel_id, who ORDER BY day"
    parts = [
        f"""marked AS (
    SELECT f.channel_id, f.{measure.column} AS who, f.day,
           f.day - lag(f.day) OVER (PARTITION BY f.channel_id, f.{measure.column} ORDER BY f.day)
               AS gap
    FROM core.activity f WHERE {_predicate(measure.where)}
), islands AS (
    SELECT channel_id, who, day,
           {", ".join(f"sum(CAST(coalesce(gap >= {n}, TRUE) AS INTEGER)) OVER ({island}) AS i{n}" for n in windows)}
    FROM marked
), runs AS (  -- each channel's runs of consecutive days with events
    SELECT channel_id, min(day) AS first, max(day) AS last
    FROM (SELECT channel_id, day,
                 day - CAST(row_number() OVER (PARTITION BY channel_id ORDER BY day) AS INTEGER)
                     AS run
          FROM core.channel_days)
    GROUP BY channel_id, run
), report AS (
    SELECT d.channel_id, d.day, c.channel_kind, c.scope,
           c.channel_kind || '/' || c.scope AS kind
    FROM core.channel_days d JOIN core.channels c USING (channel_id)
), kinds AS (SELECT DISTINCT day, channel_kind, scope, kind FROM report)"""
    ]
    selects = []
    for kpi in kpis:
        n = kpi.measure.trailing_days  # type: ignore[union-attr]
        name = _literal(kpi.name)
        parts.append(f"""spans{n} AS (
    SELECT channel_id, who, min(day) AS first, max(day) + {n - 1} AS last
    FROM islands GROUP BY channel_id, who, i{n}
), pieces{n} AS (  -- a person's spans on the days their channel had events, per kind
    SELECT c.channel_kind || '/' || c.scope AS channel_id, s.who,
           greatest(s.first, r.first) AS first, least(s.last, r.last) AS last
    FROM spans{n} s JOIN runs r ON r.channel_id = s.channel_id AND r.first <= s.last
     AND r.last >= s.first
    JOIN core.channels c ON c.channel_id = s.channel_id
), {_merged(f"pieces{n}", "channel_id", f"kind_spans{n}")},
{_sweep(f"spans{n}", "channel_id", f"users{n}")},
{_sweep(f"kind_spans{n}", "channel_id", f"kind_users{n}")}""")
        selects.append(f"""
SELECT r.day, r.channel_id, r.channel_kind, r.scope, {name},
       CAST(coalesce(u.users, 0) AS DOUBLE), CAST(coalesce(u.users, 0) AS DOUBLE), {_NULL}
FROM report r ASOF LEFT JOIN users{n} u ON u.channel_id = r.channel_id AND r.day >= u.day
UNION ALL
SELECT k.day, NULL, k.channel_kind, k.scope, {name},
       CAST(coalesce(u.users, 0) AS DOUBLE), CAST(coalesce(u.users, 0) AS DOUBLE), {_NULL}
FROM kinds k ASOF LEFT JOIN kind_users{n} u ON u.channel_id = k.kind AND k.day >= u.day""")
    return "INSERT INTO metrics.kpi_daily\nWITH " + ",\n".join(parts) + "\nUNION ALL".join(selects)


def _merged(spans: str, group: str, name: str) -> str:
    """``name``: the spans of each (``group``, person) with the overlapping ones merged."""
    return f"""{name}_marked AS (
    SELECT {group}, who, first, last,
           coalesce(first > max(last) OVER (PARTITION BY {group}, who ORDER BY first, last
                                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                    TRUE) AS starts
    FROM {spans}
), {name}_islands AS (
    SELECT {group}, who, first, last,
           sum(CAST(starts AS INTEGER)) OVER (PARTITION BY {group}, who ORDER BY first, last
                                              ROWS UNBOUNDED PRECEDING) AS island
    FROM {name}_marked
), {name} AS (
    SELECT {group}, who, min(first) AS first, max(last) AS last
    FROM {name}_islands GROUP BY {group}, who, island
)"""


def _sweep(spans: str, group: str, name: str) -> str:
    """``name``: per ``group``, the number of (disjoint per person) spans covering each day
    from the day it changes (a running sum of +1 at each start, −1 after each end)."""
    return f"""{name} AS (
    SELECT {group}, day, sum(change) OVER (PARTITION BY {group} ORDER BY day) AS users
    FROM (SELECT {group}, day, sum(change) AS change
          FROM (SELECT {group}, first AS day, 1 AS change FROM {spans}
                UNION ALL SELECT {group}, last + 1, -1 FROM {spans})
          GROUP BY ALL)
)"""


def daily_kpi_sql(
    timezone: str, restrict: str | None = None, kpis: tuple[Kpi, ...] = CATALOG
) -> list[str]:
    """Statements inserting every KPI's rows per day into ``metrics.kpi_daily``."""
    statements = [
        _grouped(family, _day(family[0], timezone), restrict, "metrics.kpi_daily")
        for family in _families(kpis)
    ]
    trailing = [k for k in kpis if isinstance(k.measure, Distinct) and "day" in k.granularities]
    if restrict is not None:
        return statements + [_trailing(kpi, restrict) for kpi in trailing]
    trailing.sort(key=lambda k: (k.measure.column, repr(k.measure.where)))  # type: ignore[union-attr]
    for _, family in groupby(trailing, key=lambda k: (k.measure.column, repr(k.measure.where))):  # type: ignore[union-attr]
        statements.append(_trailing_all(list(family)))
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
    additive = [kpi for kpi in kpis if isinstance(kpi.measure, Count | Sum | Ratio | Mean)]
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
