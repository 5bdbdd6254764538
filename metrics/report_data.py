"""What the quarterly report shows, read from the warehouse.

:func:`load_report_data` reads one quarter's evaluation (with channel names
and the KPI numerators and denominators), the breached requests opened in the
quarter and the idle channels. A breach is ranked by how late its first
response came: first response minus deadline, in calendar time, or the
warehouse's as-of time minus deadline while it is unanswered. (The SLA target
may count business seconds, so ``first_response_s - sla_target_s`` would mix
clocks; it is only the fallback when a deadline is missing.)
:func:`channel_summaries` and :func:`low_efficiency` derive the per-channel
view that the page and the CLI share.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.errors import CommpulseError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "EVALUATION_COLUMNS",
    "Breach",
    "ChannelSummary",
    "EvalRow",
    "IdleChannel",
    "Quarter",
    "ReportData",
    "ReportError",
    "channel_summaries",
    "load_report_data",
    "low_efficiency",
    "parse_quarter",
]

#: a year and a quarter: 2026Q3, and as people also write it, 2026q3, 2026-Q3, 2026 Q3
_QUARTER: Final = re.compile(r"(\d{4})[- ]?[Qq]([1-4])")

#: The columns of metrics.quarterly_evaluation, in table order (the evaluation CSV's header).
EVALUATION_COLUMNS: Final = (
    "quarter",
    "channel_id",
    "channel_kind",
    "scope",
    "kpi",
    "value",
    "target",
    "met",
    "previous_value",
    "change",
    "grade",
)


class ReportError(CommpulseError):
    """The report cannot be made: a malformed quarter, or nothing evaluated for it."""


@dataclass(frozen=True, slots=True)
class Quarter:
    """A calendar quarter, ``2026Q3``."""

    year: int
    number: int

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def first_day(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def next(self) -> Quarter:
        return Quarter(self.year + self.number // 4, self.number % 4 + 1)

    @property
    def last_day(self) -> date:
        return date.fromordinal(self.next.first_day.toordinal() - 1)

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The quarter as ``[start, end)`` instants, midnight to midnight in ``zone``."""
        start = datetime.combine(self.first_day, time(), zone)
        return start, datetime.combine(self.next.first_day, time(), zone)


def parse_quarter(text: str) -> Quarter:
    """``"2026Q3"`` (or ``2026q3``, ``2026-Q3``, ``2026 Q3``) → ``Quarter(2026, 3)``;
    :class:`ReportError` otherwise."""
    found = _QUARTER.fullmatch(text.strip())
    if found is None:
        raise ReportError(f"invalid quarter {text!r}: expected a year and Q1 to Q4, e.g. 2026Q3")
    return Quarter(int(found[1]), int(found[2]))


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One row of metrics.quarterly_evaluation, with the channel's name and the KPI's basis."""

    quarter: str
    channel_id: str | None  # None: the roll-up of every channel of the kind and scope
    channel_kind: str
    scope: str
    kpi: str
    value: float | None
    target: float | None
    met: bool | None
    previous_value: float | None
    change: float | None
    grade: str | None
    name: str | None
    numerator: float | None
    denominator: float | None

    @property
    def delta(self) -> float | None:
        """The change against the previous quarter (computed when the table left it out)."""
        if self.change is not None:
            return self.change
        if self.value is None or self.previous_value is None:
            return None
        return self.value - self.previous_value

    def csv_values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, column) for column in EVALUATION_COLUMNS)


@dataclass(frozen=True, slots=True)
class Breach:
    """A request opened in the quarter whose first response came after its deadline, or never."""

    channel_id: str
    name: str | None
    channel_kind: str | None
    conversation_id: str
    request_type: str
    category: str | None
    opened_at: datetime
    deadline_at: datetime | None
    sla_target_s: float | None
    first_response_at: datetime | None
    first_response_s: float | None
    late_by_s: float | None  # calendar seconds past the deadline (to the as-of time if unanswered)


@dataclass(frozen=True, slots=True)
class IdleChannel:
    channel_id: str
    name: str | None
    channel_kind: str
    scope: str
    last_activity_at: datetime | None
    idle_threshold_s: float
    idle_for_business_s: float | None
    as_of: datetime


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    """One channel's quarter: its grade and which of its targets it met."""

    channel_id: str
    name: str | None
    channel_kind: str
    scope: str
    grade: str | None
    met: int
    evaluated: int
    missed: tuple[str, ...]  # KPI names

    @property
    def mostly_missed(self) -> bool:
        return self.evaluated > 0 and len(self.missed) > self.evaluated / 2


@dataclass(frozen=True, slots=True)
class ReportData:
    quarter: Quarter
    timezone: str
    generated_at: datetime
    as_of: datetime | None  # the warehouse's channel-health time
    rows: tuple[EvalRow, ...]
    breaches: tuple[Breach, ...]  # the worst breaches of the quarter, worst first
    breach_count: int  # every breach of the quarter
    idle: tuple[IdleChannel, ...]  # idle, not archived, longest silence first
    #: the window of requests the breaches are of: opened in [start, end), judged at as_of
    breach_window: tuple[datetime, datetime, datetime]


def load_report_data(
    con: duckdb.DuckDBPyConnection,
    quarter: Quarter,
    *,
    timezone: str,
    now: datetime,
    worst: int = 20,
) -> ReportData:
    """Read everything the report shows for ``quarter`` (of its breaches, the ``worst``);
    :class:`ReportError` if it has no rows. Nothing is computed again: this reads the
    evaluation, the requests and the channel health the warehouse build made."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportError(f"unknown time zone {timezone!r} for the report") from exc
    rows = _evaluation(con, str(quarter))
    if not rows:
        raise ReportError(f"no evaluation for {quarter}: {_what_exists(con)}")
    as_of = _as_of(con)
    start, end = quarter.bounds(zone)
    window = (start, end, as_of or now)
    counted = _fetch(con, f"SELECT count(*) FROM ({BREACH_QUERY})", window)
    return ReportData(
        quarter=quarter,
        timezone=timezone,
        generated_at=now,
        as_of=as_of,
        rows=rows,
        breaches=tuple(
            Breach(*row) for row in _fetch(con, f"{BREACH_QUERY} LIMIT {int(worst)}", window)
        ),
        breach_count=int(counted[0][0]),
        idle=_idle(con),
        breach_window=window,
    )


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return con.execute(sql, list(params)).fetchall()


def _evaluation(con: duckdb.DuckDBPyConnection, quarter: str) -> tuple[EvalRow, ...]:
    rows = _fetch(
        con,
        """
        SELECT e.quarter, e.channel_id, e.channel_kind, e.scope, e.kpi, e.value, e.target, e.met,
               e.previous_value, e.change, e.grade, c.name, q.numerator, q.denominator
        FROM metrics.quarterly_evaluation e
        LEFT JOIN core.channels c ON c.channel_id = e.channel_id
        LEFT JOIN metrics.kpi_quarterly q
               ON q.quarter = e.quarter AND q.channel_id IS NOT DISTINCT FROM e.channel_id
              AND q.channel_kind = e.channel_kind AND q.scope = e.scope AND q.kpi = e.kpi
        WHERE e.quarter = ?
        ORDER BY e.scope, e.channel_kind, e.channel_id NULLS FIRST, e.kpi
        """,
        [quarter],
    )
    return tuple(EvalRow(*row) for row in rows)


def _what_exists(con: duckdb.DuckDBPyConnection) -> str:
    quarters = [
        row[0]
        for row in _fetch(
            con, "SELECT DISTINCT quarter FROM metrics.quarterly_evaluation ORDER BY quarter"
        )
    ]
    if not quarters:
        return "metrics.quarterly_evaluation is empty; build the warehouse first"
    shown = ", ".join(quarters[-8:])
    return f"metrics.quarterly_evaluation has no rows for it (quarters evaluated: {shown})"


def _as_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    found = _fetch(con, "SELECT max(as_of) FROM metrics.channel_health")
    value = found[0][0] if found else None
    return value.astimezone(UTC) if isinstance(value, datetime) else None


#: Every breached request opened in [start, end), worst first; its last parameter is the
#: time an unanswered request is judged at.
BREACH_QUERY: Final = """
SELECT r.channel_id, c.name, c.channel_kind, r.conversation_id, r.request_type,
       r.category, r.opened_at, r.deadline_at, r.sla_target_s, r.first_response_at,
       r.first_response_s,
       coalesce(epoch(coalesce(r.first_response_at, $3::TIMESTAMPTZ)) - epoch(r.deadline_at),
                r.first_response_s - r.sla_target_s) AS late_by_s
FROM core.requests r
LEFT JOIN core.channels c ON c.channel_id = r.channel_id
WHERE r.sla_status = 'breached' AND r.opened_at >= $1 AND r.opened_at < $2
ORDER BY late_by_s DESC NULLS LAST, r.opened_at, r.channel_id, r.conversation_id"""


def _idle(con: duckdb.DuckDBPyConnection) -> tuple[IdleChannel, ...]:
    rows = _fetch(
        con,
        """
        SELECT channel_id, name, channel_kind, scope, last_activity_at,
               idle_threshold_s, idle_for_business_s, as_of
        FROM metrics.channel_health
        WHERE idle AND NOT archived
        ORDER BY idle_for_business_s DESC NULLS FIRST, channel_id
        """,
    )
    return tuple(IdleChannel(*row) for row in rows)


def channel_summaries(rows: Sequence[EvalRow]) -> list[ChannelSummary]:
    """One summary per channel (roll-ups left out), in row order."""
    by_channel: dict[str, list[EvalRow]] = {}
    for row in rows:
        if row.channel_id is not None:
            by_channel.setdefault(row.channel_id, []).append(row)
    summaries = []
    for channel_id, own in by_channel.items():
        judged = [row for row in own if row.met is not None]
        first = own[0]
        summaries.append(
            ChannelSummary(
                channel_id=channel_id,
                name=first.name,
                channel_kind=first.channel_kind,
                scope=first.scope,
                grade=next((row.grade for row in own if row.grade), None),
                met=sum(1 for row in judged if row.met),
                evaluated=len(judged),
                missed=tuple(row.kpi for row in judged if not row.met),
            )
        )
    return summaries


def low_efficiency(summaries: Sequence[ChannelSummary]) -> list[ChannelSummary]:
    """Channels graded D or missing most of their targets, worst first."""
    weak = [s for s in summaries if s.grade == "D" or s.mostly_missed]
    return sorted(
        weak,
        key=lambda s: (
            s.grade != "D",
            -(len(s.missed) / s.evaluated if s.evaluated else 0.0),
            s.name or s.channel_id,
        ),
    )
