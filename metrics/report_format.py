"""How the report writes KPI values, changes, durations and names for people.

Values follow the KPI's unit in :data:`metrics.catalog.KPIS` (ratios as
percentages, seconds as ``2 h 05 min``); a change is *good* or *bad* by the
KPI's direction, so a rising response time is bad. Every function returns
plain text: escaping is the page's job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

from metrics.catalog import KPIS, Kpi

__all__ = [
    "Tone",
    "format_change",
    "format_count",
    "format_duration",
    "format_target",
    "format_time",
    "format_value",
    "kind_label",
    "kpi_label",
    "kpi_short_label",
    "tone",
]

Tone = Literal["good", "bad", "flat"]
MINUS: Final = "\u2212"

_LABELS: Final = {
    "read_rate": ("Read rate", "Read rate"),
    "first_response_sla_rate": ("First-response SLA", "1st-response SLA"),
    "first_response_median_s": ("Median first response", "Median response"),
    "first_response_p90_s": ("P90 first response", "P90 response"),
    "first_response_median_business_s": (
        "Median first response, business time",
        "Median response (bus.)",
    ),
    "first_response_p90_business_s": ("P90 first response, business time", "P90 response (bus.)"),
    "fcr_rate": ("First-contact resolution", "FCR"),
    "active_users_1d": ("Active users, 1 day", "Active 1 d"),
    "active_users_7d": ("Active users, 7 days", "Active 7 d"),
    "active_users_28d": ("Active users, 28 days", "Active 28 d"),
    "review_sla_rate": ("Review SLA", "Review SLA"),
    "meeting_overrun_rate": ("Meeting overrun", "Overrun"),
    "hotline_answer_sla_rate": ("Hotline answer SLA", "Answer SLA"),
    "csat_mean": ("Customer satisfaction (1–5)", "CSAT"),
    "volume": ("Volume (events)", "Volume"),
}

_KINDS: Final = {
    "email": "E-mail",
    "im": "Instant messaging",
    "meeting": "Meetings",
    "announcement": "Announcements",
    "forum": "Community forum",
    "knowledge_base": "Knowledge base",
    "hotline": "Hotline",
    "live_chat": "Live chat",
    "ticket": "Tickets & forms",
    "social": "Social media",
    "crm": "CRM",
    "partner_portal": "Partner portal",
}


def kpi_label(name: str) -> str:
    return _LABELS.get(name, (name, name))[0]


def kpi_short_label(name: str) -> str:
    return _LABELS.get(name, (name, name))[1]


def kind_label(kind: str | None) -> str:
    if not kind:
        return "—"
    return _KINDS.get(kind, kind.replace("_", " ").capitalize())


def _kpi(name: str) -> Kpi | None:
    return KPIS.get(name)


def format_duration(seconds: float) -> str:
    """``7500`` → ``"2 h 05 min"``; the two largest units, rounded to the second."""
    sign = MINUS if seconds < 0 else ""
    total = round(abs(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days} d {hours:02d} h"
    elif hours:
        text = f"{hours} h {minutes:02d} min"
    elif minutes:
        text = f"{minutes} min {secs:02d} s"
    else:
        text = f"{secs} s"
    return sign + text


def format_count(value: float) -> str:
    text = f"{abs(value):,.0f}" if value == round(value) else f"{abs(value):,.1f}"
    return (MINUS if value < 0 else "") + text


def format_value(kpi: str, value: float | None) -> str:
    """A KPI value in its unit: ``"92.0 %"``, ``"2 h 05 min"``, ``"4.21"``, ``"1,234"``."""
    if value is None:
        return "—"
    definition = _kpi(kpi)
    unit = definition.unit if definition else None
    if unit == "ratio":
        return f"{value * 100:.1f} %".replace("-", MINUS)
    if unit == "seconds":
        return format_duration(value)
    if unit == "score":
        return f"{value:.2f}".replace("-", MINUS)
    if unit in ("events", "users"):
        return format_count(value)
    return f"{value:,.4g}".replace("-", MINUS)


def format_change(kpi: str, change: float | None) -> str:
    """A change against the previous quarter, signed: ``"+2.1 pp"``, ``"−5 min 00 s"``."""
    if change is None:
        return "—"
    definition = _kpi(kpi)
    unit = definition.unit if definition else None
    sign = "+" if change > 0 else MINUS if change < 0 else "±"
    size = abs(change)
    if unit == "ratio":
        text = f"{size * 100:.1f} pp"
    elif unit == "seconds":
        text = format_duration(size)
    elif unit == "score":
        text = f"{size:.2f}"
    elif unit in ("events", "users"):
        text = format_count(size)
    else:
        text = f"{size:,.4g}"
    return sign + text


def format_target(kpi: str, target: float | None) -> str:
    """``"≥ 90.0 %"`` for a KPI that should be high, ``"≤ 20.0 %"`` for one that should be low."""
    if target is None:
        return ""
    definition = _kpi(kpi)
    direction = definition.direction if definition else "neutral"
    prefix = {"higher_is_better": "≥ ", "lower_is_better": "≤ "}.get(direction, "")
    return prefix + format_value(kpi, target)


def tone(kpi: str, change: float | None) -> Tone:
    """Whether ``change`` is good news for ``kpi`` (by its direction)."""
    definition = _kpi(kpi)
    if change is None or change == 0 or definition is None:
        return "flat"
    if definition.direction == "higher_is_better":
        return "good" if change > 0 else "bad"
    if definition.direction == "lower_is_better":
        return "good" if change < 0 else "bad"
    return "flat"


def format_time(when: datetime | None, zone: ZoneInfo, *, seconds: bool = False) -> str:
    if when is None:
        return "—"
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
