"""Durations, the channel catalog and its precedence, and the quantile the catalog uses."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import ConfigurationError
from metrics.calendar import BusinessCalendar
from metrics.catalog import (
    CATALOG,
    KPIS,
    Count,
    Distinct,
    Quantile,
    Ratio,
    Where,
    evaluate,
    evaluate_distinct,
    quantile_cont,
)
from metrics.channels import ChannelCatalog
from metrics.durations import Duration, parse_duration
from metrics.facts import ActivityFact

REPO = Path(__file__).resolve().parents[3]


def test_durations_parse_and_end_on_their_clock() -> None:
    assert parse_duration("60s") == Duration(60, 1, "calendar")
    assert parse_duration("3min").calendar_seconds == 180
    assert parse_duration("2h business") == Duration(2, 3600, "business")
    assert str(parse_duration("3d business")) == "3d business"
    monday_17 = datetime(2026, 11, 16, 17, tzinfo=UTC).timestamp()
    calendar = BusinessCalendar()  # 09-12, 13-18: 8 h a day
    # 2 business hours from Monday 17:00: 17-18, then Tuesday 09-10.
    assert (
        parse_duration("2h business").end(monday_17, calendar)
        == datetime(2026, 11, 17, 10, tzinfo=UTC).timestamp()
    )
    assert parse_duration("1d business").business_seconds(calendar) == 8 * 3600
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("two hours")


def test_the_example_catalog_loads_and_overrides_in_order() -> None:
    catalog = ChannelCatalog.load(REPO / "docs" / "channels.example.toml")
    hotline = catalog.policy("hotline-main", "hotline")
    assert str(hotline.first_response) == "45s"  # the channel's own
    assert hotline.calendar.name == "support-24x7"
    assert hotline.idle_business_seconds() == 1800
    other_hotline = catalog.policy("hotline-2", "hotline")
    assert (
        str(other_hotline.first_response) == "60s"
        and str(other_hotline.idle_threshold) == "1h business"
    )
    complaints = catalog.policy("ticket-complaints", "ticket")
    assert str(complaints.target("complaint")) == "12h"  # channel category > global category
    assert str(complaints.target("suggestion")) == "3d business"
    assert str(complaints.target(None)) == "4h business"  # kind override > built-in
    assert catalog.calendars["default"].timezone == "Asia/Shanghai"
    assert catalog.rules.reopen_window == parse_duration("3d business")
    info = catalog.info("ticket-complaints")
    assert info is not None and info.department == "Customer care"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[channels.x]\nkind = 'pigeon'\n", "channels.x.kind"),
        ("[channels.x]\nidle_threshold = 'soon'\n", "not a duration"),
        ("[channels.x]\ncalendar = 'nope'\n", "calendar 'nope'"),
        ("[calendars.default]\nperiods = ['18:00-09:00']\n", "channel catalog"),
        ("[rules]\nread_window = '7d business'\n", "calendar time"),
        ("not toml", "not valid TOML"),
    ],
)
def test_a_bad_catalog_is_one_clear_error(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigurationError, match=message):
        ChannelCatalog.load(path)


@given(st.lists(st.floats(min_value=-1e9, max_value=1e9), min_size=2, max_size=60))
def test_quantile_is_linear_interpolation_like_duckdb(values: list[float]) -> None:
    # statistics' "inclusive" method is the same linear interpolation between ranks.
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    assert quantile_cont(values, 0.5) == pytest.approx(
        statistics.median(values), rel=1e-9, abs=1e-6
    )
    assert quantile_cont(values, 0.9) == pytest.approx(deciles[8], rel=1e-9, abs=1e-6)
    assert quantile_cont([7.0], 0.9) == 7.0 and quantile_cont([], 0.5) is None


def test_measures_report_value_numerator_and_denominator() -> None:
    class Row:
        def __init__(self, status: str, seconds: float | None) -> None:
            self.sla_status, self.request_type, self.first_response_s = status, "ticket", seconds

    rows = [Row("met", 10), Row("breached", 50), Row("pending", None), Row("met", 30)]
    decided = Ratio(
        Count(Where(equals={"sla_status": "met"})),
        Count(Where(isin={"sla_status": ("met", "breached")})),
    )
    assert evaluate(decided, rows) == (2 / 3, 2.0, 3.0)
    assert evaluate(Quantile("first_response_s", 0.5), rows) == (30.0, None, 3.0)
    assert evaluate(Ratio(Count(), Count(Where(equals={"sla_status": "nope"}))), rows).value is None


@given(st.lists(st.sets(st.sampled_from("abcdefgh")), max_size=5))
def test_a_distinct_count_from_sets_of_values_equals_the_count_over_the_facts(
    days: list[set[str]],
) -> None:
    rows = [ActivityFact("c", day, actor) for day, people in enumerate(days) for actor in people]
    measure = Distinct("actor_id", trailing_days=7)
    assert evaluate_distinct(measure, days) == evaluate(measure, rows)


def test_the_catalog_names_the_kpis_of_the_issue() -> None:
    assert set(KPIS) == {
        "read_rate", "first_response_sla_rate", "first_response_median_s", "first_response_p90_s",
        "first_response_median_business_s", "first_response_p90_business_s", "fcr_rate",
        "active_users_1d", "active_users_7d", "active_users_28d", "review_sla_rate",
        "meeting_overrun_rate", "hotline_answer_sla_rate", "csat_mean", "volume",
    }  # fmt: skip
    assert all(kpi.description and kpi.unit for kpi in CATALOG)
