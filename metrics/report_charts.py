"""Charts for the quarterly report, as inline SVG strings (no script, no network).

Each chart scales to its container (``viewBox`` with ``width="100%"``) and
takes its font from the page. Text passes through :func:`html.escape`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

__all__ = ["GRADE_COLOURS", "Bar", "bar_chart", "stacked_chart"]

GOOD: Final = "#2da44e"
BAD: Final = "#e5534b"
PLAIN: Final = "#4a7bd0"
INK: Final = "#1f2328"
MUTED: Final = "#656d76"
GRID: Final = "#d8dee4"
GRADE_COLOURS: Final = {"A": "#2da44e", "B": "#8cc265", "C": "#e2b340", "D": "#e5534b"}

_WIDTH: Final = 640
_LABEL_W: Final = 170
_VALUE_W: Final = 78
_ROW: Final = 30
_BAR: Final = 18
_TOP: Final = 34
_LABEL_CHARS: Final = 25
_LIGHT: Final = frozenset({"B", "C"})  # grades whose colour needs dark text


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    target: float | None = None
    previous: float | None = None
    met: bool | None = None


def _text(x: float, y: float, text: str, *, anchor: str = "start", **style: str) -> str:
    attributes = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in style.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{attributes}>{escape(text)}</text>'


def _svg(height: float, title: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {height:.0f}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" font-size="12">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _empty(title: str, message: str) -> str:
    return _svg(60, title, [_text(_WIDTH / 2, 34, message, anchor="middle", fill=MUTED)])


def _legend(items: Sequence[tuple[str, str]], y: float) -> list[str]:
    """Swatches and labels in a row from the plot's left edge.

    A swatch is a colour (a square), ``"tick"`` (the target mark) or ``"dot"`` (last quarter).
    """
    parts, x = [], float(_LABEL_W)
    for swatch, label in items:
        if swatch == "tick":
            parts.append(
                f'<rect x="{x + 4:.1f}" y="{y - 10:.1f}" width="2" height="12" fill="{INK}"/>'
            )
        elif swatch == "dot":
            parts.append(
                f'<circle cx="{x + 5:.1f}" cy="{y - 4:.1f}" r="4" fill="#fff" '
                f'stroke="{MUTED}" stroke-width="1.5"/>'
            )
        else:
            parts.append(
                f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="10" height="10" rx="2" fill="{swatch}"/>'
            )
        parts.append(_text(x + 15, y, label, fill=MUTED))
        x += 26 + 6.6 * len(label)
    return parts


def _label(text: str, y: float) -> str:
    """A row label right-aligned against the plot, shortened to fit (in full as a tooltip)."""
    shown = text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"
    label = _text(_LABEL_W - 8, y, shown, anchor="end", fill=INK)
    return label if shown == text else f"<g><title>{escape(text)}</title>{label}</g>"


def bar_chart(
    title: str,
    bars: Sequence[Bar],
    *,
    fmt: Callable[[float], str],
    maximum: float | None = None,
    ticks: Sequence[float] = (),
    tick_fmt: Callable[[float], str] | None = None,
) -> str:
    """Horizontal bars, green when the target is met and red when missed, with target ticks."""
    if not bars:
        return _empty(title, "no data for this quarter")
    largest = max([maximum or 0.0] + [b.value for b in bars] + [b.target or 0.0 for b in bars])
    largest = largest or 1.0
    plot_w = _WIDTH - _LABEL_W - _VALUE_W

    def x_of(value: float) -> float:
        return _LABEL_W + plot_w * max(0.0, min(value, largest)) / largest

    legend = []
    if any(b.met for b in bars):
        legend.append((GOOD, "target met"))
    if any(b.met is False for b in bars):
        legend.append((BAD, "target missed"))
    if any(b.target is not None for b in bars):
        legend.append(("tick", "target"))
    if any(b.previous is not None for b in bars):
        legend.append(("dot", "last quarter"))
    top = _TOP if legend else 8
    body = _legend(legend, 16)
    bottom = top + _ROW * len(bars)
    for tick in ticks:
        x = x_of(tick)
        body.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" stroke="{GRID}"/>'
        )
        body.append(_text(x, bottom + 15, (tick_fmt or fmt)(tick), anchor="middle", fill=MUTED))
    for index, bar in enumerate(bars):
        y = top + _ROW * index + (_ROW - _BAR) / 2
        colour = GOOD if bar.met else BAD if bar.met is False else PLAIN
        tip = f"{bar.label}: {fmt(bar.value)}"
        if bar.target is not None:
            tip += f" (target {fmt(bar.target)})"
        if bar.previous is not None:
            tip += f", last quarter {fmt(bar.previous)}"
        body.append(_label(bar.label, y + _BAR - 5))
        body.append(
            f'<rect x="{_LABEL_W}" y="{y:.1f}" width="{max(x_of(bar.value) - _LABEL_W, 1.0):.1f}" '
            f'height="{_BAR}" rx="3" fill="{colour}"><title>{escape(tip)}</title></rect>'
        )
        if bar.target is not None:
            body.append(
                f'<rect x="{x_of(bar.target) - 1:.1f}" y="{y - 4:.1f}" width="2.5" '
                f'height="{_BAR + 8}" fill="{INK}"/>'
            )
        if bar.previous is not None:
            body.append(
                f'<circle cx="{x_of(bar.previous):.1f}" cy="{y + _BAR / 2:.1f}" r="4" '
                f'fill="#fff" stroke="{MUTED}" stroke-width="1.5"/>'
            )
        value = fmt(bar.value)
        body.append(_text(_WIDTH - _VALUE_W + 8, y + _BAR - 5, value, fill=INK, font_weight="600"))
    return _svg(bottom + (22 if ticks else 8), title, body)


def stacked_chart(
    title: str,
    rows: Sequence[tuple[str, Mapping[str, int]]],
    *,
    colours: Mapping[str, str] = GRADE_COLOURS,
) -> str:
    """One horizontal bar per row, split into counts by key (e.g. channels per grade)."""
    if not rows:
        return _empty(title, "no data for this quarter")
    keys = list(colours)
    totals = {key: sum(counts.get(key, 0) for _, counts in rows) for key in keys}
    largest = max(sum(counts.values()) for _, counts in rows) or 1
    plot_w = _WIDTH - _LABEL_W - _VALUE_W
    body = _legend([(colours[key], f"{key} ({totals[key]})") for key in keys], 16)
    for index, (label, counts) in enumerate(rows):
        y = _TOP + _ROW * index + (_ROW - _BAR) / 2
        body.append(_label(label, y + _BAR - 5))
        x = float(_LABEL_W)
        for key in keys:
            count = counts.get(key, 0)
            if not count:
                continue
            width = plot_w * count / largest
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{_BAR}" '
                f'fill="{colours[key]}" stroke="#fff" stroke-width="1">'
                f"<title>{escape(f'{label}: {count} × {key}')}</title></rect>"
            )
            if width >= 16:
                ink = INK if key in _LIGHT else "#fff"
                body.append(
                    _text(x + width / 2, y + _BAR - 5, str(count), anchor="middle", fill=ink)
                )
            x += width
        body.append(_text(x + 6, y + _BAR - 5, str(sum(counts.values())), fill=MUTED))
    return _svg(_TOP + _ROW * len(rows) + 8, title, body)
