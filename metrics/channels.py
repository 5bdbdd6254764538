"""The channel catalog: calendars, SLA overrides and idle thresholds, from a TOML file.

Example (``docs/channels.example.toml`` has a complete one)::

    [rules]
    read_window = "7d"
    reopen_window = "3d business"

    [calendars.default]
    timezone = "Asia/Shanghai"
    periods = ["09:00-12:00", "13:30-18:00"]
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    holidays = [2026-10-01, 2026-10-02, 2026-10-05]
    makeup_days = [2026-09-27]

    [sla.kinds]
    ticket = "4h business"

    [sla.categories]
    complaint = "24h"

    [idle]
    hotline = "1h business"

    [channels."hotline-main"]
    kind = "hotline"
    scope = "external"
    name = "Main hotline"
    calendar = "default"
    idle_threshold = "30min business"
    sla = { first_response = "45s" }

Channels that are not listed get their kind's defaults and the ``default``
calendar; kind and scope then come from their events.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from ingest.errors import ConfigurationError
from ingest.events import ChannelKind, RequestCategory, Scope
from metrics.calendar import BusinessCalendar, parse_period
from metrics.durations import Duration, parse_duration
from metrics.policy import (
    DEFAULT_CATEGORY_TARGETS,
    DEFAULT_FIRST_RESPONSE,
    DEFAULT_IDLE_THRESHOLDS,
    ChannelPolicy,
    KpiRules,
)

__all__ = ["ChannelCatalog", "ChannelInfo"]

_INTERNAL_KINDS: Final = frozenset(
    {
        ChannelKind.EMAIL,
        ChannelKind.IM,
        ChannelKind.MEETING,
        ChannelKind.ANNOUNCEMENT,
        ChannelKind.FORUM,
        ChannelKind.KNOWLEDGE_BASE,
    }
)
_USUAL_SCOPE: Final = {
    kind: Scope.INTERNAL if kind in _INTERNAL_KINDS else Scope.EXTERNAL for kind in ChannelKind
}
_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _duration(value: str) -> str:
    parse_duration(value)  # raises ValueError with a clear message
    return value


DurationText = Annotated[str, AfterValidator(_duration)]


class _Calendar(BaseModel):
    model_config = _FROZEN

    timezone: str = "UTC"
    periods: list[str] = ["09:00-12:00", "13:00-18:00"]
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    ]
    holidays: list[date] = []
    makeup_days: list[date] | dict[date, list[str]] = []

    def build(self, name: str) -> BusinessCalendar:
        makeup = self.makeup_days
        makeup_map = (
            {day: tuple(parse_period(p) for p in periods) for day, periods in makeup.items()}
            if isinstance(makeup, dict)
            else dict.fromkeys(makeup)
        )
        return BusinessCalendar(
            name=name,
            timezone=self.timezone,
            periods=tuple(parse_period(p) for p in self.periods),
            weekdays=frozenset(_WEEKDAYS[day] for day in self.weekdays),
            holidays=frozenset(self.holidays),
            makeup_days=makeup_map,
        )


class _Sla(BaseModel):
    model_config = _FROZEN

    first_response: DurationText | None = None
    categories: dict[RequestCategory, DurationText] = {}


class _SlaDefaults(BaseModel):
    model_config = _FROZEN

    kinds: dict[ChannelKind, DurationText] = {}
    categories: dict[RequestCategory, DurationText] = {}


class _Rules(BaseModel):
    model_config = _FROZEN

    read_window: DurationText = "7d"
    response_horizon: DurationText = "7d"
    reopen_window: DurationText = "3d business"
    max_request_age: DurationText = "30d"

    def build(self) -> KpiRules:
        return KpiRules(
            read_window=parse_duration(self.read_window),
            response_horizon=parse_duration(self.response_horizon),
            reopen_window=parse_duration(self.reopen_window),
            max_request_age=parse_duration(self.max_request_age),
        )


class _Channel(BaseModel):
    model_config = _FROZEN

    kind: ChannelKind | None = None
    scope: Scope | None = None
    name: str | None = None
    department: str | None = None
    calendar: str = "default"
    idle_threshold: DurationText | None = None
    sla: _Sla = _Sla()


class _Catalog(BaseModel):
    model_config = _FROZEN

    rules: _Rules = _Rules()
    calendars: dict[str, _Calendar] = {}
    sla: _SlaDefaults = _SlaDefaults()
    idle: dict[ChannelKind, DurationText] = {}
    channels: dict[str, _Channel] = {}


class ChannelInfo(BaseModel):
    """What the catalog says about one channel (all optional but the calendar name)."""

    model_config = _FROZEN

    channel_id: str
    kind: ChannelKind | None
    scope: Scope | None
    name: str | None
    department: str | None
    calendar: str


class ChannelCatalog:
    """Policies per channel, built from a catalog file or the defaults; cheap to query."""

    def __init__(self, spec: _Catalog | None = None, *, source: str = "defaults") -> None:
        self._spec = spec or _Catalog()
        self.source = source
        calendars = {name: cal.build(name) for name, cal in self._spec.calendars.items()}
        calendars.setdefault("default", BusinessCalendar())
        self.calendars: Mapping[str, BusinessCalendar] = calendars
        for channel_id, channel in self._spec.channels.items():
            if channel.calendar not in calendars:
                raise ConfigurationError(
                    f"channel {channel_id!r} uses calendar {channel.calendar!r}, which the catalog does not define"
                )
        self.rules: KpiRules = self._spec.rules.build()
        self._policies: dict[tuple[str, ChannelKind], ChannelPolicy] = {}

    @classmethod
    def load(cls, path: Path) -> ChannelCatalog:
        """Read and check a catalog file; every problem is one ConfigurationError line."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read channel catalog {path}: {exc.strerror or exc}"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"channel catalog {path} is not valid TOML: {exc}") from exc
        try:
            spec = _Catalog.model_validate(data)
            return cls(spec, source=str(path))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            raise ConfigurationError(f"channel catalog {path}: {problems}") from exc
        except ValueError as exc:  # e.g. a calendar that does not hold together
            raise ConfigurationError(f"channel catalog {path}: {exc}") from exc

    def fingerprint(self) -> str:
        """The catalog's content as canonical JSON: what a warehouse build records, so that
        a build under another catalog is noticed (reformatting the file changes nothing)."""
        return self._spec.model_dump_json()

    def info(self, channel_id: str) -> ChannelInfo | None:
        channel = self._spec.channels.get(channel_id)
        if channel is None:
            return None
        return ChannelInfo(
            channel_id=channel_id,
            kind=channel.kind,
            scope=channel.scope,
            name=channel.name,
            department=channel.department,
            calendar=channel.calendar,
        )

    def channel_ids(self) -> list[str]:
        return list(self._spec.channels)

    def listed(self) -> list[tuple[str, ChannelKind, Scope]]:
        """``(channel_id, kind, scope)`` of the channels the catalog gives a kind: known
        before their first event (a channel idle from the start still shows up as idle).
        With no scope given, a kind's usual one: internal for e-mail, IM, meetings,
        announcements, forum and knowledge base, external for the others."""
        return [
            (channel_id, channel.kind, channel.scope or _USUAL_SCOPE[channel.kind])
            for channel_id, channel in self._spec.channels.items()
            if channel.kind is not None
        ]

    def policy(self, channel_id: str, kind: ChannelKind | str) -> ChannelPolicy:
        """The policy of ``channel_id`` (a ``kind`` channel): catalog entry, then defaults."""
        kind = ChannelKind(kind)
        key = (channel_id, kind)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = self._build_policy(channel_id, kind)
        return policy

    def _build_policy(self, channel_id: str, kind: ChannelKind) -> ChannelPolicy:
        spec = self._spec
        channel = spec.channels.get(channel_id)
        if channel is not None and channel.kind is not None:
            kind = channel.kind
        calendar = self.calendars[channel.calendar if channel else "default"]

        first: Duration = DEFAULT_FIRST_RESPONSE[kind]
        if kind in spec.sla.kinds:
            first = parse_duration(spec.sla.kinds[kind])
        if channel is not None and channel.sla.first_response:
            first = parse_duration(channel.sla.first_response)

        categories: dict[str, Duration] = {c.value: d for c, d in DEFAULT_CATEGORY_TARGETS.items()}
        categories |= {c.value: parse_duration(d) for c, d in spec.sla.categories.items()}
        if channel is not None:
            categories |= {c.value: parse_duration(d) for c, d in channel.sla.categories.items()}

        idle = DEFAULT_IDLE_THRESHOLDS[kind]
        if kind in spec.idle:
            idle = parse_duration(spec.idle[kind])
        if channel is not None and channel.idle_threshold:
            idle = parse_duration(channel.idle_threshold)
        return ChannelPolicy(
            calendar=calendar, first_response=first, categories=categories, idle_threshold=idle
        )
