"""HTML building blocks of the quarterly report, and its per-channel-kind sections.

A kind's section has two tables: the kind's roll-up (every KPI with its
value, target, met or missed, last quarter and change) and its channels
(one row each: grade, targets met, and a cell per KPI with the value, a
met/missed mark and the change). KPIs with targets come first, then the rest
in catalog order. Every text from the warehouse passes through
:func:`html.escape`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Final

from ingest.events import ChannelKind
from metrics.catalog import KPIS
from metrics.report_data import ChannelSummary, EvalRow, channel_summaries
from metrics.report_format import (
    format_change,
    format_count,
    format_target,
    format_value,
    kind_label,
    kpi_label,
    kpi_short_label,
    tone,
)

__all__ = [
    "Cell",
    "Group",
    "anchor",
    "channel_cell",
    "grade_badge",
    "group_label",
    "group_rows",
    "kind_section",
    "plural",
    "table",
]

Cell = str | tuple[str, str]  # HTML, or (HTML, CSS class)
Group = tuple[str, str]  # (scope, channel kind)

_KPI_ORDER: Final = {name: index for index, name in enumerate(KPIS)}
_KIND_ORDER: Final = {kind.value: index for index, kind in enumerate(ChannelKind)}
_GRADES: Final = frozenset("ABCD")


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def group_rows(rows: Sequence[EvalRow]) -> dict[Group, list[EvalRow]]:
    """Rows by (scope, kind), kinds in the order of ChannelKind (internal ones first)."""
    groups: dict[Group, list[EvalRow]] = {}
    for row in rows:
        groups.setdefault((row.scope, row.channel_kind), []).append(row)
    ordered = sorted(groups, key=lambda g: (_KIND_ORDER.get(g[1], len(_KIND_ORDER)), g[1], g[0]))
    return {group: groups[group] for group in ordered}


def anchor(group: Group) -> str:
    return escape(f"kind-{group[1]}-{group[0]}")


def group_label(group: Group, groups: Iterable[Group]) -> str:
    """The kind's name, with its scope when the kind appears in both scopes."""
    scopes = {scope for scope, kind in groups if kind == group[1]}
    return kind_label(group[1]) + (f" ({group[0]})" if len(scopes) > 1 else "")


def table(headers: Sequence[Cell], rows: Iterable[Sequence[Cell]], cls: str = "") -> str:
    def cell(tag: str, value: Cell) -> str:
        html, klass = value if isinstance(value, tuple) else (value, "")
        return f'<{tag} class="{klass}">{html}</{tag}>' if klass else f"<{tag}>{html}</{tag}>"

    head = "".join(cell("th", h) for h in headers)
    body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def channel_cell(name: str | None, channel_id: str) -> str:
    """The channel's name, and its id below it when the two differ."""
    if not name or name == channel_id:
        return f'<span class="name">{escape(channel_id)}</span>'
    return f'<span class="name">{escape(name)}</span><span class="id">{escape(channel_id)}</span>'


def grade_badge(grade: str | None) -> str:
    if not grade:
        return '<span class="muted">—</span>'
    klass = grade if grade in _GRADES else "X"
    return f'<span class="grade g-{klass}" title="grade {escape(grade)}">{escape(grade)}</span>'


def _mark(row: EvalRow, *, short: bool = False) -> str:
    if row.met is None:
        return '<span class="muted">no data</span>' if row.target is not None and not short else ""
    klass, sign, word = ("met", "✓", "met") if row.met else ("missed", "✗", "missed")
    text = sign if short else f"{sign} {word}"
    return f'<span class="mark {klass}" title="target {word}">{text}</span>'


def _change(row: EvalRow) -> str:
    delta = row.delta
    if delta is None:
        label = "new" if row.previous_value is None and row.value is not None else "—"
        return f'<span class="chg flat" title="no value last quarter">{label}</span>'
    arrow = "▲" if delta > 0 else "▼" if delta < 0 else "●"
    last = f"last quarter {format_value(row.kpi, row.previous_value)}"
    return (
        f'<span class="chg {tone(row.kpi, delta)}" title="{escape(last)}">{arrow} '
        f"{escape(format_change(row.kpi, delta))}</span>"
    )


def _basis(row: EvalRow) -> str:
    """What a value was computed from: ``"920 of 1,000"`` for a ratio, ``"n = 1,000"`` else."""
    kpi = KPIS.get(row.kpi)
    if kpi is None or row.denominator is None:
        return ""
    if kpi.unit == "ratio" and row.numerator is not None:
        return f"{format_count(row.numerator)} of {format_count(row.denominator)}"
    if kpi.unit in ("seconds", "score"):
        return f"n = {format_count(row.denominator)}"
    return ""


def _kpi_name(kpi: str, label: str) -> str:
    """The KPI's label, with its definition as a tooltip."""
    description = KPIS[kpi].description if kpi in KPIS else kpi
    return f'<span title="{escape(description)}">{escape(label)}</span>'


def _kpi_order(rows: Iterable[EvalRow]) -> list[str]:
    """The KPIs of ``rows``: those with a target first, each part in catalog order."""
    targeted = {r.kpi for r in rows if r.target is not None}
    names = {r.kpi for r in rows}
    return sorted(names, key=lambda k: (k not in targeted, _KPI_ORDER.get(k, len(_KPI_ORDER)), k))


def kind_section(group: Group, rows: Sequence[EvalRow], title: str) -> str:
    """A channel kind's section: its roll-up KPIs, then its channels."""
    scope, _ = group
    order = {kpi: index for index, kpi in enumerate(_kpi_order(rows))}
    rollup = sorted((r for r in rows if r.channel_id is None), key=lambda r: order[r.kpi])
    channels = [r for r in rows if r.channel_id is not None]
    summaries = channel_summaries(channels)
    met = sum(s.met for s in summaries)
    judged = sum(s.evaluated for s in summaries)
    grade = next((r.grade for r in rollup if r.grade), None)
    html = [
        f'<section class="kind" id="{anchor(group)}"><h3>{escape(title)} '
        f'<span class="scope">{escape(scope)}</span>'
        + (f" {grade_badge(grade)}" if grade else "")
        + f"<small>{plural(len(summaries), 'channel')} · {met} of {judged} targets met</small></h3>"
    ]
    if rollup:
        html.append(_rollup_table(rollup))
    if summaries:
        html.append(_channel_matrix(channels, summaries, list(order)))
    html.append("</section>")
    return "".join(html)


def _rollup_table(rollup: Sequence[EvalRow]) -> str:
    body: list[list[Cell]] = [
        [
            _kpi_name(r.kpi, kpi_label(r.kpi)),
            (f"<b>{escape(format_value(r.kpi, r.value))}</b>", "num"),
            (escape(format_target(r.kpi, r.target)), "num"),
            _mark(r),
            (escape(format_value(r.kpi, r.previous_value)), "num"),
            (_change(r), "num"),
            (escape(_basis(r)), "num muted"),
        ]
        for r in rollup
    ]
    headers: list[Cell] = ["All channels of the kind", ("Value", "num"), ("Target", "num")]
    headers += ["Status", ("Last quarter", "num"), ("Change", "num"), ("Based on", "num")]
    return table(headers, body, "data kpis")


def _channel_matrix(
    rows: Sequence[EvalRow], summaries: Sequence[ChannelSummary], kpis: Sequence[str]
) -> str:
    """Channels down, KPIs across; each cell: value, met/missed mark, change."""
    cells = {(r.channel_id, r.kpi): r for r in rows}
    kpis = [k for k in kpis if any(r.kpi == k for r in rows)]
    common: dict[str, float | None] = {}
    headers: list[Cell] = ["Channel", "Grade", ("Targets met", "num")]
    for kpi in kpis:
        targets = [r.target for r in rows if r.kpi == kpi and r.target is not None]
        common[kpi] = max(set(targets), key=targets.count) if targets else None
        target = format_target(kpi, common[kpi])
        small = f"<small>{escape(target)}</small>" if target else ""
        headers.append((_kpi_name(kpi, kpi_short_label(kpi)) + small, "num kpi"))
    body = []
    for s in sorted(summaries, key=lambda s: ((s.name or s.channel_id).lower(), s.channel_id)):
        line: list[Cell] = [
            channel_cell(s.name, s.channel_id),
            grade_badge(s.grade),
            (f"{s.met} of {s.evaluated}" if s.evaluated else "—", "num"),
        ]
        for kpi in kpis:
            row = cells.get((s.channel_id, kpi))
            if row is None:
                line.append(('<span class="muted">—</span>', "num"))
            else:
                miss = " miss" if row.met is False else ""
                line.append((_matrix_cell(row, common[kpi]), "num cell" + miss))
        body.append(line)
    return '<div class="scroll">' + table(headers, body, "data matrix") + "</div>"


def _matrix_cell(row: EvalRow, common_target: float | None) -> str:
    value = escape(format_value(row.kpi, row.value))
    html = f'<span class="v">{value}{_mark(row, short=True)}</span>{_change(row)}'
    if row.target is not None and row.target != common_target:
        html += f"<small>target {escape(format_target(row.kpi, row.target))}</small>"
    return html
