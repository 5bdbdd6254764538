"""A window's KPIs from the facts in the state, through the one KPI catalog.

Facts are gathered lazily, one fact table at a time, because request facts
(deadlines in business time) cost far more than counting events; evaluating
only the KPIs of one settle class touches only what they need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from metrics.catalog import EVERY, Distinct, Kpi, Result, evaluate, evaluate_distinct
from metrics.facts import MeetingFact, MessageFact, RequestFact, SurveyFact
from metrics.policy import ChannelPolicy, KpiRules
from metrics.windows import Window
from streams.engine.state import DayBucket

__all__ = ["ChannelWindow", "KindWindow", "evaluate_window"]


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
    """One channel's facts in one window, computed on first use."""

    def __init__(
        self,
        channel_id: str,
        window: Window,
        day: int,
        bucket_of: Callable[[int], DayBucket | None],
        resolved: Callable[[], Iterable[tuple[str, Any]]],
        policy: ChannelPolicy,
        rules: KpiRules,
        as_of: float,
    ) -> None:
        self.channel_id = channel_id
        self.window = window
        self.day = day
        self._bucket_of = bucket_of
        self._resolved = resolved
        self._policy = policy
        self._rules = rules
        self._as_of = as_of
        self._cache: dict[str, Any] = {}

    def table(self, name: str) -> Any:
        cached = self._cache.get(name)
        if cached is None:
            cached = self._cache[name] = getattr(self, f"_{name}")()
        return cached

    def _events(self) -> int:
        bucket = self._bucket_of(self.day)
        start, end = self.window.start, self.window.end
        return (
            sum(count for hour, count in bucket.volume.items() if start <= hour < end)
            if bucket
            else 0
        )

    def _messages(self) -> list[MessageFact]:
        bucket = self._bucket_of(self.day)
        if bucket is None:
            return []
        start, end, rules = self.window.start, self.window.end, self._rules
        return [
            state.fact(self.channel_id, key, rules)
            for key, state in bucket.messages.items()
            if state.sent_at is not None and start <= state.sent_at < end
        ]

    def _opened(self) -> list[RequestFact]:
        bucket = self._bucket_of(self.day)
        if bucket is None:
            return []
        start, end = self.window.start, self.window.end
        return [
            state.fact(self.channel_id, key, self._policy, self._rules, self._as_of)
            for key, state in bucket.requests.items()
            if state.opened_at is not None and start <= state.opened_at < end
        ]

    def _resolved_facts(self) -> list[RequestFact]:
        start, end = self.window.start, self.window.end
        facts = []
        for key, state in self._resolved():
            if (
                state.opened_at is None
                or state.resolved_at is None
                or not start <= state.resolved_at < end
            ):
                continue
            fact = state.fact(self.channel_id, key, self._policy, self._rules, self._as_of)
            if fact.resolved_at is not None:
                facts.append(fact)
        return facts

    def _meetings(self) -> list[MeetingFact]:
        bucket = self._bucket_of(self.day)
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
        bucket = self._bucket_of(self.day)
        start, end = self.window.start, self.window.end
        return (
            [SurveyFact(self.channel_id, t, s) for t, s in bucket.surveys if start <= t < end]
            if bucket
            else []
        )

    def _actors(self) -> dict[int, set[str]]:
        return {
            offset: bucket.actors
            for offset in range(28)
            if (bucket := self._bucket_of(self.day - offset)) is not None and bucket.actors
        }


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
            elif name == "actors":
                cached = {}
                for table in tables:
                    for offset, people in table.items():
                        cached.setdefault(offset, set()).update(people)
            else:
                cached = [row for table in tables for row in table]
            self._cache[name] = cached
        return cached


_TABLES = {
    "events": "events",
    "messages": "messages",
    "meetings": "meetings",
    "surveys": "surveys",
}


def _rows(facts: ChannelWindow | KindWindow, kpi: Kpi) -> Sequence[Any]:
    if kpi.facts == "events":
        return _Counted(facts.table("events"))
    if kpi.facts == "requests":
        return facts.table("resolved_facts" if kpi.attributed_to == "resolved_at" else "opened")  # type: ignore[no-any-return]
    return facts.table(_TABLES[kpi.facts])  # type: ignore[no-any-return]


def _active(facts: ChannelWindow | KindWindow, measure: Distinct) -> Result:
    """A distinct count over the actors of the trailing days, from the days' sets of actors.

    Without a filter that is the size of the sets' union; a fact per actor and
    day is built only for a filter to look at.
    """
    actors: dict[int, set[str]] = facts.table("actors")
    days = [people for offset, people in actors.items() if offset < measure.trailing_days]
    if measure.where is EVERY and measure.column == "actor_id":
        return evaluate_distinct(measure, days)
    return evaluate(measure, [_Actor(actor) for people in days for actor in people])


def evaluate_window(facts: ChannelWindow | KindWindow, kpis: Iterable[Kpi]) -> dict[str, Result]:
    """The KPIs among ``kpis`` (of the window's granularity) that have a value there."""
    granularity = facts.window.granularity
    results: dict[str, Result] = {}
    for kpi in kpis:
        if granularity not in kpi.granularities:
            continue
        if kpi.facts == "activity":
            assert isinstance(kpi.measure, Distinct)
            result = _active(facts, kpi.measure)
        else:
            result = evaluate(kpi.measure, _rows(facts, kpi))
        if result.value is not None and (result.value != 0 or kpi.facts != "activity"):
            results[kpi.name] = result
    return results
