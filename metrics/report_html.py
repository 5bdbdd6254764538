"""The quarterly report as one self-contained HTML page (inline CSS and SVG, no script).

Layout, top to bottom: title and summary cards, charts, channels that need
attention (idle, low efficiency), the worst SLA breaches, then one section
per channel kind (:func:`metrics.report_tables.kind_section`). Every text
that comes from the warehouse goes through :func:`html.escape`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final
from zoneinfo import ZoneInfo

from metrics.report_charts import Bar, bar_chart, stacked_chart
from metrics.report_data import (
    ChannelSummary,
    EvalRow,
    ReportData,
    channel_summaries,
    low_efficiency,
)
from metrics.report_format import format_duration, format_time, kind_label, kpi_label
from metrics.report_style import CSS
from metrics.report_tables import (
    Cell,
    Group,
    anchor,
    channel_cell,
    grade_badge,
    group_label,
    group_rows,
    kind_section,
    plural,
    table,
)

__all__ = ["TOP_BREACHES", "render_page"]

TOP_BREACHES: Final = 20
_TICKS: Final = (0.0, 0.25, 0.5, 0.75, 1.0)

Groups = dict[Group, list[EvalRow]]


def render_page(data: ReportData) -> str:
    """The whole page for ``data``."""
    zone = ZoneInfo(data.timezone)
    summaries = channel_summaries(data.rows)
    groups = group_rows(data.rows)
    quarter = escape(str(data.quarter))
    first, last = data.quarter.first_day, data.quarter.last_day
    meta = f"{first:%-d %b %Y} – {last:%-d %b %Y} ({data.timezone})"
    meta += f" · generated {format_time(data.generated_at, zone)}"
    if data.as_of is not None:
        meta += f" · warehouse as of {format_time(data.as_of, zone)}"
    body = [
        f"<header><h1>Communication channels — quarterly evaluation {quarter}</h1>",
        f'<p class="meta">{escape(meta)}</p></header>',
        _summary(data, summaries, groups),
        _nav(groups),
        _charts(groups, summaries),
        '<section id="attention"><h2>Needs attention</h2>',
        _idle(data, zone),
        _weak(summaries),
        "</section>",
        _breaches(data, zone),
        '<section id="kinds"><h2>By channel kind</h2>',
        *(kind_section(g, rows, group_label(g, groups)) for g, rows in groups.items()),
        "</section>",
        _footer(data),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Quarterly evaluation {quarter} — commpulse</title>"
        f"<style>{CSS}</style></head><body><main>" + "\n".join(body) + "</main></body></html>\n"
    )


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "—"


def _summary(data: ReportData, summaries: Sequence[ChannelSummary], groups: Groups) -> str:
    met = sum(s.met for s in summaries)
    judged = sum(s.evaluated for s in summaries)
    weak = low_efficiency(summaries)
    grades = {g: sum(1 for s in summaries if s.grade == g) for g in "ABCD"}
    kinds = len({kind for _, kind in groups})
    cards = [
        ("Channels evaluated", f"{len(summaries):,}", f"in {plural(kinds, 'channel kind')}"),
        ("Targets met", _pct(met, judged), f"{met:,} of {judged:,} channel targets"),
        ("Idle channels", f"{len(data.idle):,}", "silent longer than their threshold"),
        ("Low efficiency", f"{len(weak):,}", "grade D or most targets missed"),
        ("SLA breaches", f"{data.breach_count:,}", "of requests opened this quarter"),
    ]
    html = ['<section class="summary"><div class="cards">']
    for title, number, note in cards:
        html.append(
            f'<div class="card"><div class="label">{escape(title)}</div>'
            f'<div class="n">{escape(number)}</div><div class="note">{escape(note)}</div></div>'
        )
    html.append(
        '<div class="card"><div class="label">Channels per grade</div><div class="grades">'
        + "".join(f"{grade_badge(g)}<b>{count}</b>" for g, count in grades.items())
        + "</div></div></div>"
    )
    sentence = (
        f"{plural(len(summaries), 'channel')} evaluated for {data.quarter} met "
        f"{_pct(met, judged)} of their targets ({met:,} of {judged:,})."
    )
    if worst := _worst_group(groups):
        sentence += f" Most targets missed: {worst}."
    if data.idle:
        verb = "is" if len(data.idle) == 1 else "are"
        sentence += f" {plural(len(data.idle), 'channel')} {verb} idle."
    html.append(f'<p class="lead">{escape(sentence)}</p></section>')
    return "".join(html)


def _worst_group(groups: Groups) -> str:
    scores = []
    for group, rows in groups.items():
        judged = [r for r in rows if r.channel_id is not None and r.met is not None]
        missed = sum(1 for r in judged if not r.met)
        if missed:
            scores.append((missed / len(judged), len(judged), group, missed))
    if not scores:
        return ""
    _, total, worst, missed = max(scores, key=lambda s: (s[0], s[1]))
    return f"{group_label(worst, groups)} ({missed} of {total} channel targets missed)"


def _nav(groups: Groups) -> str:
    links = [
        '<a href="#charts">Charts</a>',
        '<a href="#attention">Needs attention</a>',
        '<a href="#breaches">SLA breaches</a>',
    ] + [f'<a href="#{anchor(g)}">{escape(group_label(g, groups))}</a>' for g in groups]
    return '<nav class="toc">' + " ".join(links) + "</nav>"


def _ratio(value: float) -> str:
    return f"{value * 100:.1f} %"


def _tick(value: float) -> str:
    return f"{value * 100:.0f} %"


def _ratio_chart(title: str, bars: Sequence[Bar]) -> str:
    return bar_chart(title, bars, fmt=_ratio, tick_fmt=_tick, maximum=1.0, ticks=_TICKS)


def _rollups(groups: Groups, kpi: str) -> list[Bar]:
    """One bar per kind: the kind's roll-up value of ``kpi`` against its target."""
    bars = []
    for group, rows in groups.items():
        row = next((r for r in rows if r.channel_id is None and r.kpi == kpi), None)
        if row is not None and row.value is not None:
            label = group_label(group, groups)
            bars.append(Bar(label, row.value, row.target, row.previous_value, row.met))
    return bars


def _charts(groups: Groups, summaries: Sequence[ChannelSummary]) -> str:
    met_bars, grade_rows = [], []
    for group, rows in groups.items():
        judged = [r for r in rows if r.channel_id is not None and r.met is not None]
        if judged:
            share = sum(1 for r in judged if r.met) / len(judged)
            met_bars.append(Bar(group_label(group, groups), share))
        own = [s for s in summaries if (s.scope, s.channel_kind) == group and s.grade]
        if own:
            counts = {g: sum(1 for s in own if s.grade == g) for g in "ABCD"}
            grade_rows.append((group_label(group, groups), counts))
    sla, read, grades, met = (
        "First-response SLA rate by channel kind",
        "Read rate by channel kind",
        "Grades by channel kind",
        "Targets met by channel kind",
    )
    figures = [
        (
            sla,
            "Requests answered by their deadline, all channels of the kind.",
            _ratio_chart(sla, _rollups(groups, "first_response_sla_rate")),
        ),
        (
            read,
            "Distinct readers ÷ recipients, all channels of the kind.",
            _ratio_chart(read, _rollups(groups, "read_rate")),
        ),
        (grades, "Channels per grade, A (best) to D.", stacked_chart(grades, grade_rows)),
        (
            met,
            "Share of the channels' KPI targets that were met.",
            _ratio_chart(met, met_bars),
        ),
    ]
    html = ['<section id="charts"><h2>At a glance</h2><div class="charts">']
    for title, note, svg in figures:
        html.append(
            f"<figure><figcaption><b>{escape(title)}</b><span>{escape(note)}</span>"
            f"</figcaption>{svg}</figure>"
        )
    html.append("</div></section>")
    return "".join(html)


def _idle(data: ReportData, zone: ZoneInfo) -> str:
    html = [f"<h3>Idle channels <small>{len(data.idle)}</small></h3>"]
    if not data.idle:
        return html[0] + '<p class="ok">No channel is idle.</p>'
    as_of = format_time(data.idle[0].as_of, zone)
    html.append(
        '<p class="note">No activity for longer than the channel\'s threshold (in business '
        f"time), as of {escape(as_of)}; archived channels are left out.</p>"
    )
    rows: list[list[Cell]] = []
    for c in data.idle:
        idle_for = c.idle_for_business_s
        rows.append(
            [
                channel_cell(c.name, c.channel_id),
                escape(kind_label(c.channel_kind)),
                escape(c.scope),
                # a channel of the catalog that never had an event
                "never"
                if c.last_activity_at is None
                else escape(format_time(c.last_activity_at, zone)),
                (escape(format_duration(idle_for)) if idle_for is not None else "—", "num"),
                (escape(format_duration(c.idle_threshold_s)), "num"),
            ]
        )
    headers: list[Cell] = ["Channel", "Kind", "Scope", "Last activity"]
    headers += [("Idle for (business)", "num"), ("Threshold", "num")]
    html.append(table(headers, rows, "data"))
    return "".join(html)


def _weak(summaries: Sequence[ChannelSummary]) -> str:
    weak = low_efficiency(summaries)
    html = [f"<h3>Low-efficiency channels <small>{len(weak)}</small></h3>"]
    if not weak:
        return html[0] + '<p class="ok">No channel is graded D or misses most of its targets.</p>'
    html.append('<p class="note">Graded D, or more than half of their KPI targets missed.</p>')
    rows: list[list[Cell]] = [
        [
            channel_cell(s.name, s.channel_id),
            escape(kind_label(s.channel_kind)),
            grade_badge(s.grade),
            (f"{s.met} of {s.evaluated}", "num"),
            escape(", ".join(kpi_label(k) for k in s.missed)) or "—",
        ]
        for s in weak
    ]
    headers: list[Cell] = ["Channel", "Kind", "Grade", ("Targets met", "num"), "Targets missed"]
    html.append(table(headers, rows, "data"))
    return "".join(html)


def _breaches(data: ReportData, zone: ZoneInfo) -> str:
    shown = data.breaches[:TOP_BREACHES]
    html = [f'<section id="breaches"><h2>Worst SLA breaches <small>top {len(shown)}</small></h2>']
    if not shown:
        html.append('<p class="ok">No request opened this quarter breached its SLA.</p></section>')
        return "".join(html)
    html.append(
        f'<p class="note">{plural(data.breach_count, "request")} opened in {data.quarter} '
        "breached the first-response target. Ranked by how long after the deadline the first "
        "response came (unanswered: until the warehouse's as-of time). All of them are in "
        f"breaches-{data.quarter}.csv.</p>"
    )
    rows: list[list[Cell]] = []
    for rank, b in enumerate(shown, 1):
        request = escape(b.request_type) + (f" · {escape(b.category)}" if b.category else "")
        answered = escape(format_time(b.first_response_at, zone))
        late = format_duration(b.late_by_s) if b.late_by_s is not None else "—"
        if b.first_response_at is None:
            answered = '<span class="missed">unanswered</span>'
            late += " so far" if b.late_by_s is not None else ""
        target = format_duration(b.sla_target_s) if b.sla_target_s is not None else "—"
        rows.append(
            [
                (str(rank), "num"),
                channel_cell(b.name, b.channel_id),
                escape(kind_label(b.channel_kind)),
                f'{request}<span class="id">{escape(b.conversation_id)}</span>',
                escape(format_time(b.opened_at, zone)),
                (escape(target), "num"),
                answered,
                (f'<b class="missed">{escape(late)}</b>', "num"),
            ]
        )
    headers: list[Cell] = [("#", "num"), "Channel", "Kind", "Request", "Opened"]
    headers += [("Target", "num"), "First response", ("Late by", "num")]
    html.append(table(headers, rows, "data breaches") + "</section>")
    return "".join(html)


def _footer(data: ReportData) -> str:
    q = data.quarter
    return (
        '<footer><p><span class="mark met">✓</span> target met · '
        '<span class="mark missed">✗</span> target missed · '
        '<span class="chg good">▲ ▼ green</span>: better than last quarter, '
        '<span class="chg bad">red</span>: worse (for response times and meeting overruns, '
        'lower is better), <span class="chg flat">grey</span>: neither. Ratios are shown in '
        "percent, their changes in percentage points (pp); response times in calendar time "
        "unless marked business time.</p>"
        f"<p>Data files next to this page: evaluation-{q}.csv, breaches-{q}.csv, "
        f"idle-{q}.csv. Made by <code>commpulse report</code>.</p></footer>"
    )
