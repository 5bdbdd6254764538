"""The metrics suite: KPI values within their units, and a volume row for every active day.

Ratios are the KPIs whose unit is ``ratio`` in ``metrics/catalog.py``; no list
of them is kept here. "Active" means the channel has events that day in
``raw.events`` (days in the reporting time zone), counting only events loaded
before the latest build: a sink between two builds is not a failure.
"""

from __future__ import annotations

from typing import Final

from ingest.events import ChannelKind, Scope
from metrics.catalog import CATALOG
from quality.checks import Frame, Suite, When, at_least, between, equal, in_set, not_null

__all__ = ["NAME", "RATIO_KPIS", "metrics_suite"]

NAME: Final = "metrics"
RATIO_KPIS: Final = tuple(kpi.name for kpi in CATALOG if kpi.unit == "ratio")
_SCORES: Final = tuple(kpi.name for kpi in CATALOG if kpi.unit == "score")

_ACTIVE_DAYS: Final = """
WITH built AS (SELECT max(built_at) AS at FROM ops.builds),
active AS (
    SELECT channel_id, CAST(timezone($timezone, occurred_at) AS DATE) AS day, count(*) AS events
    FROM raw.events, built
    WHERE loaded_at <= built.at
    GROUP BY ALL
)
SELECT a.channel_id, a.day, a.events, v.value AS volume
FROM active a
LEFT JOIN metrics.kpi_daily v
  ON v.kpi = 'volume' AND v.channel_id = a.channel_id AND v.day = a.day
"""


def metrics_suite(timezone: str = "UTC") -> Suite:
    """``timezone``: the reporting time zone the build cut days in."""
    ratios = When("kpi", RATIO_KPIS)
    daily, quarterly, active = "kpi_daily", "kpi_quarterly", "active_days"
    checks = []
    for frame in (daily, quarterly):
        prefix = "" if frame == daily else "quarterly_"
        checks += [
            in_set(frame, "kpi", (kpi.name for kpi in CATALOG), name=f"{prefix}kpi_in_catalog"),
            in_set(
                frame,
                "channel_kind",
                (kind.value for kind in ChannelKind),
                name=f"{prefix}channel_kind_in_set",
            ),
            in_set(frame, "scope", (scope.value for scope in Scope), name=f"{prefix}scope_in_set"),
            between(frame, "value", 0, 1, name=f"{prefix}rates_within_0_1", when=ratios),
            at_least(
                frame,
                "denominator",
                "numerator",
                name=f"{prefix}numerator_at_most_denominator",
                when=ratios,
            ),
            between(frame, "value", 0, name=f"{prefix}values_non_negative", critical=False),
            between(
                frame,
                "value",
                1,
                5,
                name=f"{prefix}scores_1_to_5",
                when=When("kpi", _SCORES),
                critical=False,
            ),
        ]
    checks += [
        not_null(active, "volume", name="volume_row_per_active_day"),
        equal(active, "volume", "events", name="volume_equals_events", critical=False),
    ]
    return Suite(
        NAME,
        "KPI tables: rates within [0, 1], numerators within denominators, no missing day",
        (
            Frame(daily, "SELECT * FROM metrics.kpi_daily", ("day", "channel_id", "kpi")),
            Frame(
                quarterly,
                "SELECT * FROM metrics.kpi_quarterly",
                ("quarter", "channel_id", "kpi"),
            ),
            Frame(active, _ACTIVE_DAYS, ("channel_id", "day"), {"timezone": timezone}),
        ),
        tuple(checks),
    )
