"""The KPI catalog: every KPI defined once, as data.

A KPI names the facts it is computed from (:mod:`metrics.facts`), the fact
time that places a fact in a window (its attribution), and a measure built
from a few primitives: ``Count``, ``Sum``, ``Ratio``, ``Mean``, ``Quantile``
(linear interpolation between ranks, like DuckDB's ``quantile_cont``) and
``Distinct`` over trailing days. The stream evaluates measures with
:func:`evaluate`; the warehouse renders the same measures as SQL. ``settle``
says how long after a window ends its facts can still change, which is when
the window becomes final.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final, Literal, NamedTuple

__all__ = [
    "CATALOG",
    "EVERY",
    "KPIS",
    "Count",
    "Distinct",
    "Kpi",
    "Mean",
    "Quantile",
    "Ratio",
    "Result",
    "Sum",
    "Where",
    "evaluate",
    "evaluate_distinct",
    "quantile_cont",
]

FactTable = Literal["events", "messages", "requests", "meetings", "surveys", "activity"]
Settle = Literal["none", "read_window", "response", "reopen_window"]
Granularity = Literal["hour", "day"]


@dataclass(frozen=True, slots=True)
class Where:
    """A conjunction of simple conditions on fact columns (empty: every fact)."""

    equals: Mapping[str, Any] = field(default_factory=dict)
    isin: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    not_null: tuple[str, ...] = ()
    true: tuple[str, ...] = ()
    _filters: tuple[Filter, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        filters = [_equals(column, value) for column, value in self.equals.items()]
        filters += [_within(column, frozenset(values)) for column, values in self.isin.items()]
        filters += [_not_null(column) for column in self.not_null]
        filters += [_true(column) for column in self.true]
        object.__setattr__(self, "_filters", tuple(filters))

    def __call__(self, row: Any) -> bool:
        return bool(self.select((row,)))

    def select(self, rows: Sequence[Any]) -> Sequence[Any]:
        """The rows that meet every condition, in their order (``rows`` itself if no condition).

        One condition at a time over the rows still in: each pass is a list
        comprehension with the column read by ``attrgetter``, with no Python call
        per row and condition, which is most of the cost of evaluating a KPI.
        """
        for keep in self._filters:
            rows = keep(rows)
        return rows


#: keeps the rows that meet one condition, in order
Filter = Callable[[Iterable[Any]], list[Any]]


def _equals(column: str, value: Any) -> Filter:
    get = attrgetter(column)
    return lambda rows: [row for row in rows if get(row) == value]


def _within(column: str, allowed: frozenset[Any]) -> Filter:
    get = attrgetter(column)
    return lambda rows: [row for row in rows if get(row) in allowed]


def _not_null(column: str) -> Filter:
    get = attrgetter(column)
    return lambda rows: [row for row in rows if get(row) is not None]


def _true(column: str) -> Filter:
    get = attrgetter(column)
    return lambda rows: [row for row in rows if get(row) is True]


EVERY: Final = Where()


@dataclass(frozen=True, slots=True)
class Count:
    where: Where = EVERY


@dataclass(frozen=True, slots=True)
class Sum:
    column: str
    where: Where = EVERY


@dataclass(frozen=True, slots=True)
class Ratio:
    numerator: Count | Sum
    denominator: Count | Sum


@dataclass(frozen=True, slots=True)
class Mean:
    column: str
    where: Where = EVERY


@dataclass(frozen=True, slots=True)
class Quantile:
    column: str
    q: float
    where: Where = EVERY


@dataclass(frozen=True, slots=True)
class Distinct:
    column: str
    trailing_days: int = 1
    where: Where = EVERY


Measure = Count | Sum | Ratio | Mean | Quantile | Distinct


class Result(NamedTuple):
    """A KPI's value in one window, with what it was computed from."""

    value: float | None
    numerator: float | None
    denominator: float | None


@dataclass(frozen=True, slots=True)
class Kpi:
    name: str
    description: str
    facts: FactTable
    #: the fact column whose time places a fact in a window
    attributed_to: str
    measure: Measure
    unit: Literal["ratio", "seconds", "events", "users", "score"]
    direction: Literal["higher_is_better", "lower_is_better", "neutral"]
    target: float | None = None
    settle: Settle = "none"
    granularities: tuple[Granularity, ...] = ("hour", "day")


def quantile_cont(values: Sequence[float], q: float) -> float | None:
    """The q-quantile with linear interpolation between ranks (DuckDB ``quantile_cont``)."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (position - lower) * (ordered[upper] - ordered[lower])


def _amount(part: Count | Sum, rows: Sequence[Any]) -> float:
    selected = part.where.select(rows)
    if isinstance(part, Count):
        return float(len(selected))
    return float(sum(map(attrgetter(part.column), selected)))


def evaluate(measure: Measure, rows: Sequence[Any]) -> Result:
    """Evaluate ``measure`` over the facts of one window (for ``Distinct``: of its trailing days)."""
    if isinstance(measure, Count | Sum):
        amount = _amount(measure, rows)
        return Result(amount, amount, None)
    if isinstance(measure, Ratio):
        numerator = _amount(measure.numerator, rows)
        denominator = _amount(measure.denominator, rows)
        return Result(numerator / denominator if denominator else None, numerator, denominator)
    values = list(map(attrgetter(measure.column), measure.where.select(rows)))
    if isinstance(measure, Mean):
        total = float(sum(values))
        return Result(total / len(values) if values else None, total, float(len(values)))
    if isinstance(measure, Quantile):
        values = [v for v in values if v is not None]
        return Result(quantile_cont(values, measure.q), None, float(len(values)))
    return evaluate_distinct(measure, [values])


def evaluate_distinct(measure: Distinct, values: Iterable[Iterable[Any]]) -> Result:
    """``measure`` over facts given only by their ``measure.column`` values, in groups.

    The values are those of the facts that pass ``measure.where``. A stream
    that keeps a set of actors per day can count the people of its trailing
    days from those sets, without a fact per actor and day.
    """
    distinct = float(len(set().union(*values)))
    return Result(distinct, distinct, None)


def _sla(request_types: tuple[str, ...]) -> Ratio:
    return Ratio(
        Count(Where(equals={"sla_status": "met"}, isin={"request_type": request_types})),
        Count(Where(isin={"sla_status": ("met", "breached"), "request_type": request_types})),
    )


_RESPONSES: Final = ("ticket", "call", "message")
_ANSWERED = Where(isin={"request_type": _RESPONSES})


def _response_time(name: str, column: str, q: float, label: str) -> Kpi:
    return Kpi(
        name=name,
        description=f"{label} first human response time, from the opening (or the hand-off after a bot), "
        "of requests opened in the window that were answered within the response horizon",
        facts="requests",
        attributed_to="opened_at",
        measure=Quantile(column, q, _ANSWERED),
        unit="seconds",
        direction="lower_is_better",
        settle="response",
    )


def _active(days: int) -> Kpi:
    return Kpi(
        name=f"active_users_{days}d",
        description=f"distinct people who sent or read a message in the {days} day(s) up to the window's end",
        facts="activity",
        attributed_to="day",
        measure=Distinct("actor_id", trailing_days=days),
        unit="users",
        direction="higher_is_better",
        granularities=("day",),
    )


CATALOG: Final[tuple[Kpi, ...]] = (
    Kpi(
        name="volume",
        description="events of any type in the window",
        facts="events",
        attributed_to="occurred_at",
        measure=Count(),
        unit="events",
        direction="neutral",
    ),
    Kpi(
        name="read_rate",
        description="distinct readers within the read window ÷ recipients, for messages sent in the window "
        "(bounced and misdelivered messages left out)",
        facts="messages",
        attributed_to="sent_at",
        measure=Ratio(
            Sum("readers", Where(true=("counts_for_read_rate",))),
            Sum("recipients", Where(true=("counts_for_read_rate",))),
        ),
        unit="ratio",
        direction="higher_is_better",
        target=0.8,
        settle="read_window",
    ),
    Kpi(
        name="first_response_sla_rate",
        description="requests answered by their deadline ÷ requests whose status is decided (met or breached), "
        "for tickets, calls and conversations opened in the window",
        facts="requests",
        attributed_to="opened_at",
        measure=_sla(_RESPONSES),
        unit="ratio",
        direction="higher_is_better",
        target=0.9,
        settle="response",
    ),
    _response_time("first_response_median_s", "first_response_s", 0.5, "median"),
    _response_time("first_response_p90_s", "first_response_s", 0.9, "90th percentile of the"),
    _response_time(
        "first_response_median_business_s", "first_response_business_s", 0.5, "median business-time"
    ),
    _response_time(
        "first_response_p90_business_s",
        "first_response_business_s",
        0.9,
        "90th percentile business-time",
    ),
    Kpi(
        name="fcr_rate",
        description="requests first resolved in the window with at most one response and no reopen within the "
        "reopen window ÷ requests first resolved in the window",
        facts="requests",
        attributed_to="resolved_at",
        measure=Ratio(Count(Where(true=("fcr",))), Count(Where(not_null=("fcr",)))),
        unit="ratio",
        direction="higher_is_better",
        target=0.7,
        settle="reopen_window",
    ),
    _active(1),
    _active(7),
    _active(28),
    Kpi(
        name="review_sla_rate",
        description="posts reviewed by their deadline ÷ posts whose review status is decided, for posts submitted "
        "in the window",
        facts="requests",
        attributed_to="opened_at",
        measure=_sla(("post",)),
        unit="ratio",
        direction="higher_is_better",
        target=0.9,
        settle="response",
    ),
    Kpi(
        name="meeting_overrun_rate",
        description="meetings that ran longer than planned ÷ meetings with a planned duration, held in the window",
        facts="meetings",
        attributed_to="held_at",
        measure=Ratio(Count(Where(true=("overrun",))), Count(Where(not_null=("overrun",)))),
        unit="ratio",
        direction="lower_is_better",
        target=0.2,
        settle="none",
    ),
    Kpi(
        name="hotline_answer_sla_rate",
        description="calls answered within their target ÷ calls whose status is decided, received in the window",
        facts="requests",
        attributed_to="opened_at",
        measure=_sla(("call",)),
        unit="ratio",
        direction="higher_is_better",
        target=0.8,
        settle="response",
    ),
    Kpi(
        name="csat_mean",
        description="mean survey score (1–5) of surveys answered in the window",
        facts="surveys",
        attributed_to="answered_at",
        measure=Mean("score"),
        unit="score",
        direction="higher_is_better",
        target=4.0,
    ),
)

KPIS: Final[Mapping[str, Kpi]] = {kpi.name: kpi for kpi in CATALOG}
