"""The quarterly report: the page's content, its CSV files, and ``commpulse report``."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from metrics.report import ReportError, ReportResult, parse_quarter, write_report
from metrics.report_format import format_change, format_duration, format_value, tone
from tests.cli import run_main
from tests.helpers import NOW
from warehouse.schema import migrate, open_warehouse

EVIL = "<script>alert(1)</script> line"
AS_OF = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)

CHANNELS = [
    ("hotline-1", "hotline", "external", "Support hotline"),
    ("hotline-2", "hotline", "external", EVIL),
    ("email-1", "email", "internal", "Sales inbox"),
    ("im-8", "im", "internal", "#archived-project"),
    ("im-9", "im", "internal", "#quiet-project"),
]

# quarter, channel_id, kind, scope, kpi, value, target, met, previous_value, change, grade
EVALUATION: list[tuple[Any, ...]] = [
    ("2026Q2", "hotline-1", "hotline", "external", "first_response_sla_rate", 0.97, 0.9, True, None, None, "A"),
    ("2026Q3", None, "hotline", "external", "first_response_sla_rate", 0.92, 0.9, True, 0.85, 0.07, "B"),
    ("2026Q3", None, "hotline", "external", "first_response_median_s", 7500.0, None, None, 6000.0, 1500.0, "B"),
    ("2026Q3", None, "hotline", "external", "volume", 1200.0, None, None, 1000.0, 200.0, "B"),
    ("2026Q3", "hotline-1", "hotline", "external", "first_response_sla_rate", 0.95, 0.9, True, 0.97, -0.02, "A"),
    ("2026Q3", "hotline-1", "hotline", "external", "first_response_median_s", 150.0, None, None, 300.0, -150.0, "A"),
    ("2026Q3", "hotline-1", "hotline", "external", "fcr_rate", 0.75, 0.7, True, 0.7, 0.05, "A"),
    ("2026Q3", "hotline-1", "hotline", "external", "csat_mean", 4.2, 4.0, True, 4.1, 0.1, "A"),
    ("2026Q3", "hotline-2", "hotline", "external", "first_response_sla_rate", 0.6, 0.9, False, None, None, "D"),
    ("2026Q3", "hotline-2", "hotline", "external", "fcr_rate", 0.5, 0.7, False, None, None, "D"),
    ("2026Q3", "hotline-2", "hotline", "external", "csat_mean", 3.1, 4.0, False, None, None, "D"),
    ("2026Q3", None, "email", "internal", "read_rate", 0.81, 0.8, True, 0.78, 0.03, "C"),
    ("2026Q3", "email-1", "email", "internal", "read_rate", 0.55, 0.8, False, 0.7, -0.15, "C"),
    ("2026Q3", "email-1", "email", "internal", "first_response_sla_rate", 0.95, 0.9, True, 0.95, 0.0, "C"),
]  # fmt: skip
Q3_ROWS = [row for row in EVALUATION if row[0] == "2026Q3"]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def build_warehouse(path: Path) -> Path:
    """A small warehouse: 2 quarters, 2 kinds, 3 evaluated channels, breaches, idle channels."""
    con = duckdb.connect(str(path))
    try:
        migrate(con)
        for channel_id, kind, scope, name in CHANNELS:
            con.execute(
                "INSERT INTO core.channels (channel_id, channel_kind, scope, name, calendar, "
                "idle_threshold_s, events) VALUES (?, ?, ?, ?, 'default', 86400, 10)",
                [channel_id, kind, scope, name],
            )
        con.executemany(
            "INSERT INTO metrics.quarterly_evaluation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            EVALUATION,
        )
        con.execute(
            "INSERT INTO metrics.kpi_quarterly VALUES ('2026Q3', NULL, 'hotline', 'external', "
            "'first_response_sla_rate', 0.92, 1104, 1200, 0.9, true)"
        )
        names = {channel_id: name for channel_id, _, _, name in CHANNELS}
        health = [
            ("hotline-1", "hotline", "external", AS_OF, 86400.0, 0.0, False, False),
            ("email-1", "email", "internal", AS_OF, 86400.0, 60.0, False, False),
            ("im-8", "im", "internal", _at("2026-05-01"), 86400.0, 9e6, True, True),
            ("im-9", "im", "internal", _at("2026-09-01"), 86400.0, 4 * 86400.0, True, False),
        ]
        con.executemany(
            "INSERT INTO metrics.channel_health VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, AS_OF, names[row[0]]) for row in health],
        )
        # listed in the channel catalog, never had an event: not in core.channels
        con.execute(
            "INSERT INTO metrics.channel_health VALUES "
            "('hotline-9', 'hotline', 'external', NULL, 7200, NULL, true, false, ?, 'Night line')",
            [AS_OF],
        )
        minute = timedelta(minutes=1)
        # channel, conversation, opened, target_s, first response (None: unanswered), status
        requests = [
            ("hotline-2", "c-late", _at("2026-07-10 10:00"), 60.0, timedelta(hours=2), "breached"),
            ("hotline-1", "c-open", _at("2026-09-30 20:00"), 60.0, None, "breached"),
            ("email-1", "c-small", _at("2026-08-03 09:00"), 3600.0, 70 * minute, "breached"),
            ("email-1", "c-q2", _at("2026-06-30 09:00"), 3600.0, timedelta(days=2), "breached"),
            ("hotline-1", "c-met", _at("2026-07-01 00:00"), 60.0, 30 * minute / 60, "met"),
        ]
        for channel_id, conversation, opened, target, response, status in requests:
            answered = opened + response if response is not None else None
            con.execute(
                "INSERT INTO core.requests (channel_id, conversation_id, request_type, category, "
                "opened_at, deadline_at, sla_target_s, first_response_at, first_response_s, "
                "sla_status, reopen_count, agent_reply_count) "
                "VALUES (?, ?, 'call', 'complaint', ?, ?, ?, ?, ?, ?, 0, 1)",
                [
                    channel_id,
                    conversation,
                    opened,
                    opened + timedelta(seconds=target),
                    target,
                    answered,
                    response.total_seconds() if response is not None else None,
                    status,
                ],
            )
    finally:
        con.close()
    return path


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_warehouse(build_warehouse(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def report(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> ReportResult:
    return write_report(con, "2026Q3", tmp_path / "out", now=NOW)


@pytest.fixture
def page(report: ReportResult) -> str:
    return report.html.read_text(encoding="utf-8")


def rows_with(html: str, text: str) -> list[str]:
    """The table rows (``<tr>…</tr>``) of ``html`` that contain ``text``."""
    return [row for row in re.findall(r"<tr>.*?</tr>", html, re.DOTALL) if text in row]


def section(html: str, anchor: str) -> str:
    start = html.index(f'id="{anchor}"')
    return html[start : html.index("</section>", start)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_result_names_the_files_and_counts(report: ReportResult, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert report.paths == (
        out / "report-2026Q3.html",
        out / "evaluation-2026Q3.csv",
        out / "breaches-2026Q3.csv",
        out / "idle-2026Q3.csv",
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in report.paths)
    assert (report.channels, report.kpi_rows) == (3, len(Q3_ROWS))
    assert (report.targets_met, report.targets_evaluated) == (4, 8)
    assert (report.breaches, report.idle, report.low_efficiency) == (3, 2, 1)


def test_the_page_has_a_title_a_summary_and_every_channel(page: str) -> None:
    assert "<title>Quarterly evaluation 2026Q3 — commpulse</title>" in page
    assert "1 Jul 2026 – 30 Sep 2026 (UTC) · generated 2026-11-21 12:00" in page
    summary = page[: page.index('id="charts"')]
    assert re.search(r'Channels evaluated</div><div class="n">3</div>', summary)
    assert re.search(r'Targets met</div><div class="n">50\.0 %</div>', summary)
    assert re.search(r'Idle channels</div><div class="n">2</div>', summary)
    for name in ("Support hotline", "Sales inbox", "&lt;script&gt;alert(1)&lt;/script&gt; line"):
        assert name in page
    assert "<script" not in page  # and nothing to fetch: the page works offline
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_values_are_formatted_by_unit_with_targets_and_basis(page: str) -> None:
    hotline = section(page, "kind-hotline-external")
    [sla] = rows_with(hotline, "First-response SLA</span></td>")
    assert "<b>92.0 %</b>" in sla and "≥ 90.0 %" in sla and "1,104 of 1,200" in sla
    [median] = rows_with(hotline, "Median first response</span></td>")
    assert "<b>2 h 05 min</b>" in median and "1 h 40 min" in median  # value, last quarter


def test_met_and_missed_are_marked(page: str) -> None:
    hotline = section(page, "kind-hotline-external")
    [sla] = rows_with(hotline, "First-response SLA</span></td>")
    assert '<span class="mark met" title="target met">✓ met</span>' in sla
    [evil] = rows_with(hotline, "hotline-2")
    assert re.search(
        r'class="num cell miss"><span class="v">60\.0 %<span class="mark missed"', evil
    )
    [good] = rows_with(hotline, "hotline-1")
    assert re.search(r'class="num cell"><span class="v">95\.0 %<span class="mark met"', good)
    [email] = rows_with(section(page, "kind-email-internal"), "email-1")
    assert re.search(r'55\.0 %<span class="mark missed"', email) and "1 of 2" in email


def test_changes_are_coloured_by_the_kpis_direction(page: str) -> None:
    hotline = section(page, "kind-hotline-external")
    [sla] = rows_with(hotline, "First-response SLA</span></td>")
    assert re.search(r'class="chg good"[^>]*>▲ \+7\.0 pp<', sla)
    [median] = rows_with(hotline, "Median first response</span></td>")
    assert re.search(r'class="chg bad"[^>]*>▲ \+25 min 00 s<', median)  # slower is worse
    [volume] = rows_with(hotline, "Volume (events)</span></td>")
    assert re.search(r'class="chg flat"[^>]*>▲ \+200<', volume)
    [channel] = rows_with(hotline, "hotline-1")
    assert re.search(r'class="chg bad"[^>]*>▼ −2\.0 pp<', channel)
    assert re.search(r'class="chg good"[^>]*>▼ −2 min 30 s<', channel)  # faster is better
    [new] = rows_with(hotline, "hotline-2")
    assert ">new</span>" in new


def test_grades_idle_and_low_efficiency_channels(page: str) -> None:
    attention = section(page, "attention")
    idle = attention[: attention.index("Low-efficiency")]
    assert "#quiet-project" in idle and "4 d 00 h" in idle
    [never] = rows_with(idle, "hotline-9")
    assert "Night line" in never and "<td>never</td>" in never
    assert "#archived-project" not in page  # archived channels are not idle
    weak = attention[attention.index("Low-efficiency") :]
    [row] = rows_with(weak, "hotline-2")
    assert '<span class="grade g-D" title="grade D">D</span>' in row and "0 of 3" in row
    assert "Sales inbox" not in weak  # grade C, one of two targets missed
    assert '<span class="grade g-B" title="grade B">B</span>' in section(
        page, "kind-hotline-external"
    )


def test_breaches_are_listed_worst_first(page: str) -> None:
    breaches = section(page, "breaches")
    order = [breaches.index(c) for c in ("c-open", "c-late", "c-small")]
    assert order == sorted(order)
    assert "c-q2" not in breaches and "c-met" not in breaches
    [late] = rows_with(breaches, "c-late")
    assert "1 h 59 min" in late and "2026-07-10 12:00" in late
    [unanswered] = rows_with(breaches, "c-open")
    assert "unanswered" in unanswered and "15 h 59 min so far" in unanswered


def test_charts_are_inline_svg(page: str) -> None:
    charts = section(page, "charts")
    assert charts.count("<svg") == 4
    assert "First-response SLA rate by channel kind" in charts
    assert re.search(
        r"<title>Hotline: 92\.0 % \(target 90\.0 %\), last quarter 85\.0 %</title>", charts
    )


def test_the_csv_files_hold_the_rows(report: ReportResult) -> None:
    evaluation = read_csv(report.evaluation_csv)
    assert len(evaluation) == len(Q3_ROWS)
    assert list(evaluation[0]) == [
        "quarter", "channel_id", "channel_kind", "scope", "kpi", "value", "target", "met",
        "previous_value", "change", "grade",
    ]  # fmt: skip
    sla = next(
        r for r in evaluation if r["channel_id"] == "" and r["kpi"] == "first_response_sla_rate"
    )
    assert (sla["value"], sla["target"], sla["met"], sla["grade"]) == ("0.92", "0.9", "true", "B")
    breaches = read_csv(report.breaches_csv)
    assert [b["conversation_id"] for b in breaches] == ["c-open", "c-late", "c-small"]
    assert float(breaches[1]["late_by_s"]) == 7140.0
    assert breaches[1]["channel_name"] == EVIL  # CSV keeps the text as it is
    assert breaches[0]["first_response_at"] == ""
    idle = read_csv(report.idle_csv)
    assert [
        (r["channel_id"], r["channel_name"], r["last_activity_at"], r["idle_for_business_s"])
        for r in idle
    ] == [
        ("hotline-9", "Night line", "", ""),  # never had an event: first
        ("im-9", "#quiet-project", "2026-09-01T00:00:00+00:00", "345600.0"),
    ]
    assert idle[0]["as_of"] == "2026-10-01T12:00:00+00:00"


def test_a_quarter_without_evaluation_is_an_error(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    with pytest.raises(ReportError) as raised:
        write_report(con, "2026Q1", tmp_path / "out")
    assert str(raised.value) == (
        "no evaluation for 2026Q1: metrics.quarterly_evaluation has no rows for it "
        "(quarters evaluated: 2026Q2, 2026Q3)"
    )
    assert not (tmp_path / "out").exists()


def test_the_quarter_runs_midnight_to_midnight_in_the_report_time_zone(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    result = write_report(con, "2026Q3", tmp_path / "cn", timezone="Asia/Shanghai", now=NOW)
    # c-open was opened on 30 September at 20:00 UTC: 1 October, 04:00 in Shanghai
    assert [b["conversation_id"] for b in read_csv(result.breaches_csv)] == ["c-late", "c-small"]
    [late] = rows_with(section(result.html.read_text(encoding="utf-8"), "breaches"), "c-late")
    assert "2026-07-10 18:00" in late
    with pytest.raises(ReportError, match="unknown time zone 'Mars/Olympus'"):
        write_report(con, "2026Q3", tmp_path / "mars", timezone="Mars/Olympus")


@pytest.mark.parametrize("text", ["2026Q5", "26Q3", "2026Q3Q4", "2026--Q3", "Q3 2026", ""])
def test_a_malformed_quarter_is_an_error(text: str) -> None:
    with pytest.raises(ReportError, match="invalid quarter"):
        parse_quarter(text)


@pytest.mark.parametrize("text", ["2026Q3", "2026q3", "2026-Q3", "2026-q3", "2026 Q3", " 2026Q3 "])
def test_a_quarter_is_read_as_people_write_it(text: str) -> None:
    assert str(parse_quarter(text)) == "2026Q3"


def test_quarter_bounds() -> None:
    q4 = parse_quarter("2026Q4")
    assert (q4.first_day.isoformat(), q4.last_day.isoformat()) == ("2026-10-01", "2026-12-31")
    assert str(q4.next) == "2027Q1"


@pytest.mark.parametrize(
    ("kpi", "value", "shown"),
    [
        ("read_rate", 0.92, "92.0 %"),
        ("first_response_median_s", 7500.0, "2 h 05 min"),
        ("first_response_median_s", 42.4, "42 s"),
        ("first_response_p90_s", 200_000.0, "2 d 07 h"),
        ("csat_mean", 4.213, "4.21"),
        ("active_users_28d", 12345.0, "12,345"),
        ("volume", None, "—"),
    ],
)
def test_format_value(kpi: str, value: float | None, shown: str) -> None:
    assert format_value(kpi, value) == shown


def test_format_change_and_tone() -> None:
    assert format_change("read_rate", -0.021) == "−2.1 pp"
    assert format_change("first_response_p90_s", 90.0) == "+1 min 30 s"
    assert format_duration(-3600.0) == "−1 h 00 min"
    assert tone("meeting_overrun_rate", 0.1) == "bad"
    assert tone("read_rate", 0.1) == "good"
    assert tone("volume", 10.0) == "flat"


# --- the command line -----------------------------------------------------------------


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    return run_main(capsys, monkeypatch, *args, columns=80)


def test_cli_writes_the_report_into_the_data_dir(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    build_warehouse(tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    code, out, err = run(capsys, monkeypatch, "report", "--quarter", "2026Q3")
    reports = tmp_path / "reports"
    assert (code, err) == (0, "")
    summary = "3 channels, 50.0 % of 8 targets met, 2 idle, 1 low-efficiency, 3 SLA breaches"
    assert out.splitlines() == [
        f"report 2026Q3: {summary}",
        f"  {reports / 'report-2026Q3.html'}",
        f"  {reports / 'evaluation-2026Q3.csv'}",
        f"  {reports / 'breaches-2026Q3.csv'}",
        f"  {reports / 'idle-2026Q3.csv'}",
    ]
    assert "Support hotline" in (reports / "report-2026Q3.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("report", "--quarter", "2026Q5"),
            2,
            "error: invalid quarter '2026Q5': expected a year and Q1 to Q4, e.g. 2026Q3",
        ),
        (
            ("report", "--quarter", "2026Q3"),
            1,
            "error: no warehouse at {tmp}/warehouse.duckdb: run `commpulse sink` first",
        ),
    ],
)
def test_cli_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    exit_code, out, err = run(capsys, monkeypatch, *args)
    assert (exit_code, out, err.strip()) == (code, "", message.format(tmp=tmp_path))


def test_cli_an_empty_quarter_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    build_warehouse(tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    code, out, err = run(
        capsys, monkeypatch, "report", "-q", "2025Q4", "--out", str(tmp_path / "r")
    )
    assert (code, out) == (1, "")
    assert err.strip().startswith("error: no evaluation for 2025Q4: ")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
