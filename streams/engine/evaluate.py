"""A window's KPIs from the facts in the state, through the one KPI catalog.

Facts are gathered lazily, one fact table at a time, because request facts
(deadlines in business time) cost far more than counting events; evaluating
only the KPIs of one settle class touches only what they need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from metrics.catalog import CATALOG, EVERY, Distinct, Kpi, Result, evaluate, evaluate_distinct
from metrics.facts import MeetingFact, MessageFact, RequestFact, SurveyFact
from metrics.requests import RequestState
from metrics.windows import Window
from streams.engine.state import DayBucket

if TYPE_CHECKING:
    from streams.engine.partition import PartitionEngine

__all__ = ["TRAILING_DAYS", "ChannelWindow", "KindWindow", "KpiPlan"]


class _Counted(Sequence[None]):
    """``n`` facts that only need counting (volume)."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:  # pragma: no cover - never indexed
        raise IndexError(index)


@dataclass(frozen=True, slots=True)
class _Actor:
    actor_id: str


class ChannelWindow:
    """One channel's facts in one window, each table built on first use.

    Made for one round of updates (see :mod:`streams.engine.outputs`), during
    which the engine's state does not change.
    """

    __slots__ = ("_cache", "_engine", "channel_id", "day", "window")

    def __init__(self, engine: PartitionEngine, channel_id: str, window: Window, day: int) -> None:
        self._engine = engine
        self.channel_id = channel_id
        self.window = window
        self.day = day
        self._cache: dict[str, Any] = {}

    def table(self, name: str) -> Any:
        cached = self._cache.get(name)
        if cached is None:
            cached = self._cache[name] = _BUILDERS[name](self)
        return cached

    def _bucket(self, day: int) -> DayBucket | None:
        return self._engine.buckets.get((self.channel_id, day))

    def _request_facts(self, requests: list[tuple[str, RequestState]]) -> list[RequestFact]:
        """The requests' facts, SLA statuses as of the watermark of the channel's group."""
        if not requests:
            return []
        engine, channel_id = self._engine, self.channel_id
        meta = engine.metas[channel_id]
        mark = engine.channel_mark(meta)
        as_of = self.window.end if mark is None else mark
        policy, rules = engine.policy(channel_id), engine.config.rules
        return [state.fact(channel_id, key, policy, rules, as_of) for key, state in requests]

    def _events(self) -> int:
        bucket = self._bucket(self.day)
        start, end = self.window.start, self.window.end
        return (
            sum(count for hour, count in bucket.volume.items() if start <= hour < end)
            if bucket
            else 0
        )

    def _messages(self) -> list[MessageFact]:
        bucket = self._bucket(self.day)
        if bucket is None:
            return []
        start, end, rules = self.window.start, self.window.end, self._engine.config.rules
        return [
            state.fact(self.channel_id, key, rules)
            for key, state in bucket.messages.items()
            if state.sent_at is not None and start <= state.sent_at < end
        ]

    def _opened(self) -> list[RequestFact]:
        bucket = self._bucket(self.day)
        if bucket is None:
            return []
        start, end = self.window.start, self.window.end
        return self._request_facts(
            [
                (key, state)
                for key, state in bucket.requests.items()
                if state.opened_at is not None and start <= state.opened_at < end
            ]
        )

    def _resolved_facts(self) -> list[RequestFact]:
        start, end = self.window.start, self.window.end
        resolved = [
            (key, state)
            for key, state in self._engine.resolved_on(self.channel_id, self.day)
            if state.opened_at is not None
            and state.resolved_at is not None
            and start <= state.resolved_at < end
        ]
        return [fact for fact in self._request_facts(resolved) if fact.resolved_at is not None]

    def _meetings(self) -> list[MeetingFact]:
        bucket = self._bucket(self.day)
        start, end = self.window.start, self.window.end
        return (
            [
                MeetingFact(self.channel_id, t, d, p)
                for t, d, p in bucket.meetings
                if start <= t < end
            ]
            if bucket
            else []
        )

    def _surveys(self) -> list[SurveyFact]:
        bucket = self._bucket(self.day)
        start, end = self.window.start, self.window.end
        return (
            [SurveyFact(self.channel_id, t, s) for t, s in bucket.surveys if start <= t < end]
            if bucket
            else []
        )

    def _actors(self) -> list[tuple[int, set[str]]]:
        """The actors of the window's day and the days before it that a trailing KPI counts,
        as (days back, actors)."""
        return [
            (offset, bucket.actors)
            for offset in range(TRAILING_DAYS)
            if (bucket := self._bucket(self.day - offset)) is not None and bucket.actors
        ]


#: how each table of :meth:`ChannelWindow.table` is built
_BUILDERS: dict[str, Callable[[ChannelWindow], Any]] = {
    "events": ChannelWindow._events,
    "messages": ChannelWindow._messages,
    "opened": ChannelWindow._opened,
    "resolved_facts": ChannelWindow._resolved_facts,
    "meetings": ChannelWindow._meetings,
    "surveys": ChannelWindow._surveys,
    "actors": ChannelWindow._actors,
}


#: the most days an active-users KPI looks back over, its window's day included
TRAILING_DAYS: Final = max(
    kpi.measure.trailing_days for kpi in CATALOG if isinstance(kpi.measure, Distinct)
)


class KindWindow:
    """Several channels' facts in the same window, merged."""

    def __init__(self, parts: Sequence[ChannelWindow]) -> None:
        self.parts = parts
        self.window = parts[0].window
        self._cache: dict[str, Any] = {}

    def table(self, name: str) -> Any:
        cached = self._cache.get(name)
        if cached is None:
            tables = [part.table(name) for part in self.parts]
            if name == "events":
                cached = sum(tables)
            else:  # rows, or (days back, actors): the sets are united when counted
                cached = [row for table in tables for row in table]
            self._cache[name] = cached
        return cached


def _table_of(kpi: Kpi) -> str:
    """The name of the window's table that ``kpi`` reads (see :meth:`ChannelWindow.table`)."""
    if kpi.facts == "requests":
        return "resolved_facts" if kpi.attributed_to == "resolved_at" else "opened"
    return "actors" if kpi.facts == "activity" else kpi.facts


def _kept(kpi: Kpi, result: Result) -> bool:
    """Whether ``result`` is sent: it has a value, and nobody active is no news."""
    return result.value is not None and (result.value != 0 or kpi.facts != "activity")


class KpiPlan:
    """KPIs evaluated together over windows, grouped by the table of the window they read.

    Each table is fetched once for all its KPIs. Over an empty table every KPI
    has the result it has over no facts: worked out here once, that skips most
    evaluations (a channel's hour has few kinds of facts).
    """

    def __init__(self, kpis: Iterable[Kpi]) -> None:
        self.kpis = tuple(kpis)
        self._groups = {granularity: self._group(granularity) for granularity in ("hour", "day")}

    def __bool__(self) -> bool:
        return bool(self.kpis)

    def _group(
        self, granularity: str
    ) -> tuple[tuple[str, tuple[tuple[Kpi, Result | None], ...]], ...]:
        tables: dict[str, list[tuple[Kpi, Result | None]]] = {}
        for kpi in self.kpis:
            if granularity in kpi.granularities:
                tables.setdefault(_table_of(kpi), []).append((kpi, _empty(kpi)))
        return tuple((name, tuple(kpis)) for name, kpis in tables.items())

    def evaluate(self, facts: ChannelWindow | KindWindow) -> dict[str, Result]:
        """The KPIs (of the window's granularity) that have a value in the window."""
        results: dict[str, Result] = {}
        for name, kpis in self._groups[facts.window.granularity]:
            table = facts.table(name)
            if not table:
                for kpi, empty in kpis:
                    if empty is not None:
                        results[kpi.name] = empty
                continue
            for kpi, _ in kpis:
                if name == "events":
                    result = evaluate(kpi.measure, _Counted(table))
                elif name == "actors":
                    assert isinstance(kpi.measure, Distinct)
                    result = _active(table, kpi.measure)
                else:
                    result = evaluate(kpi.measure, table)
                if _kept(kpi, result):
                    results[kpi.name] = result
        return results


def _empty(kpi: Kpi) -> Result | None:
    """``kpi``'s result over no facts, if it is sent."""
    result = evaluate(kpi.measure, [])
    return result if _kept(kpi, result) else None


def _active(actors: list[tuple[int, set[str]]], measure: Distinct) -> Result:
    """A distinct count over the actors of the trailing days, from the days' sets of actors.

    Without a filter that is the size of the sets' union; a fact per actor and
    day is built only for a filter to look at.
    """
    days = [people for offset, people in actors if offset < measure.trailing_days]
    if measure.where is EVERY and measure.column == "actor_id":
        return evaluate_distinct(measure, days)
    return evaluate(measure, [_Actor(actor) for people in days for actor in people])
