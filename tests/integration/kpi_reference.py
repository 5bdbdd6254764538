"""A plain polars recomputation of every KPI of docs/kpis.md, for acceptance tests.

Written from the words of ``docs/kpis.md`` only, independently of the stream
engine: nothing here comes from ``streams/``, ``metrics/requests.py``,
``metrics/messages.py`` or ``metrics/catalog.py``. Only configuration is shared:
the business calendar (``metrics.calendar``), durations, the default targets and
rules (``metrics.policy``) and the hour/day window clock (``metrics.windows``).

The reference sees every event (the warehouse view: no late-event dropping);
SLA status is judged as of the latest event time of the data. On windows the
stream has made final, with its events received in order, the two should agree
exactly; where they do not, tests/unit/streams/test_kpi_reference.py keeps the
smallest cases (one of them a gap in the document itself: a request a bot
answered first and nobody handed off can be answered after its window is final).

``grace_s`` does not change any value: it only goes into ``final_at``.

:func:`reference_kpis` gives ``{(subject, kpi, granularity, window_start_iso):
(value, numerator, denominator)}`` with ``subject`` the channel id, or
``"<kind> (<scope>)"`` for a kind window, like ``streams.records.KpiRecord``.
:func:`reference_frame` gives the same as a polars frame, with each window's
end and the event time after which the stream may call it final.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

import polars as pl

from metrics.calendar import BusinessCalendar
from metrics.durations import Duration
from metrics.policy import DEFAULT_CATEGORY_TARGETS, DEFAULT_FIRST_RESPONSE, KpiRules
from metrics.windows import WindowClock

__all__ = [
    "KPIS",
    "Key",
    "Value",
    "event_frame",
    "reference_frame",
    "reference_kpis",
    "request_frame",
    "settles_at",
]

Key = tuple[str, str, str, str]
#: Targets by channel kind or request category (``metrics.policy``'s tables, keyed by enums).
Targets = Mapping[Any, Duration]
Value = tuple[float | None, float | None, float | None]

#: Every KPI of the table in docs/kpis.md.
KPIS: Final = (
    "volume",
    "read_rate",
    "first_response_sla_rate",
    "first_response_median_s",
    "first_response_p90_s",
    "first_response_median_business_s",
    "first_response_p90_business_s",
    "fcr_rate",
    "active_users_1d",
    "active_users_7d",
    "active_users_28d",
    "review_sla_rate",
    "meeting_overrun_rate",
    "hotline_answer_sla_rate",
    "csat_mean",
)

#: KPIs whose window settles when the window ends ("final after: window end").
_AT_WINDOW_END: Final = frozenset(
    {
        "volume",
        "active_users_1d",
        "active_users_7d",
        "active_users_28d",
        "meeting_overrun_rate",
        "csat_mean",
    }
)
#: KPIs that settle "+ response": the slowest target after window end + response_horizon.
_AFTER_RESPONSE: Final = frozenset(
    {
        "first_response_sla_rate",
        "first_response_median_s",
        "first_response_p90_s",
        "first_response_median_business_s",
        "first_response_p90_business_s",
        "review_sla_rate",
        "hotline_answer_sla_rate",
    }
)
_QUANTILES: Final = {
    "first_response_median_s": ("first_response_s", 0.5),
    "first_response_p90_s": ("first_response_s", 0.9),
    "first_response_median_business_s": ("first_response_business_s", 0.5),
    "first_response_p90_business_s": ("first_response_business_s", 0.9),
}

_STRINGS: Final = (
    "event_type",
    "channel_id",
    "channel_kind",
    "scope",
    "actor_id",
    "actor_role",
    "conversation_id",
    "message_id",
    "in_reply_to",
    "category",
    "visibility",
)
_SCHEMA: Final[dict[str, Any]] = {
    **dict.fromkeys(_STRINGS, pl.String),
    "recipient_count": pl.Int64,
    "duration_s": pl.Float64,
    "planned_duration_s": pl.Float64,
    "score": pl.Int64,
}
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_REQUEST_KEY: Final = ["channel_id", "conversation_id"]
_MESSAGE_KEY: Final = ["channel_id", "message_id"]
_PEOPLE: Final = ["employee", "agent", "customer", "partner"]


# -- input ------------------------------------------------------------------------------


def _epoch(value: object) -> float:
    """Epoch seconds of an ``occurred_at``: an aware datetime, ISO text with offset, or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"occurred_at must be timezone-aware, got {value.isoformat()}")
        return value.timestamp()
    if isinstance(value, str):
        return _epoch(datetime.fromisoformat(value))
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"occurred_at of unexpected type: {value!r}")


def event_frame(events: pl.DataFrame | Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Events as a frame: the schema's columns (missing ones null), ``t`` (epoch s) and ``seq`` (input order)."""
    if isinstance(events, pl.DataFrame):
        frame = events
        if "t" not in frame.columns:
            occurred = frame["occurred_at"]
            if isinstance(occurred.dtype, pl.Datetime):
                if occurred.dtype.time_zone is None:
                    raise ValueError("occurred_at must be timezone-aware")
                t = occurred.dt.epoch("us").cast(pl.Float64) / 1e6
            else:
                t = pl.Series([_epoch(v) for v in occurred.to_list()], dtype=pl.Float64)
            frame = frame.with_columns(t=t)
        frame = frame.with_columns(
            [
                pl.lit(None, dtype=dtype).alias(name)
                for name, dtype in _SCHEMA.items()
                if name not in frame.columns
            ]
        ).with_columns([pl.col(name).cast(dtype) for name, dtype in _SCHEMA.items()])
    else:
        rows = list(events)
        frame = pl.from_dicts(rows, schema=_SCHEMA).with_columns(  # other fields are ignored
            t=pl.Series([_epoch(row["occurred_at"]) for row in rows], dtype=pl.Float64)
        )
    return frame.select(*_SCHEMA, "t").with_row_index("seq")


def _with_windows(frame: pl.DataFrame, clock: WindowClock, at: str = "t") -> pl.DataFrame:
    """Add ``hour`` (start, epoch s) and ``day`` (local date ordinal) of the instant in column ``at``."""
    if clock.timezone in {"UTC", "Etc/UTC"}:
        t = pl.col(at)
        return frame.with_columns(
            hour=t - t % 3600.0,
            day=(t // 86400.0).cast(pl.Int64) + _EPOCH_ORDINAL,
        )
    times = frame[at].to_list()
    return frame.with_columns(
        hour=pl.Series([clock.hour_window(t).start for t in times], dtype=pl.Float64),
        day=pl.Series([clock.day(t) for t in times], dtype=pl.Int64),
    )


# -- requests ---------------------------------------------------------------------------


def _target(
    kind: str,
    category: str | None,
    first_response: Targets,
    category_targets: Targets,
) -> Duration:
    if category is not None and category in category_targets:
        return category_targets[category]
    return first_response[kind]


def request_frame(
    events: pl.DataFrame,
    *,
    calendar: BusinessCalendar,
    rules: KpiRules,
    first_response: Targets,
    category_targets: Targets,
    as_of: float,
) -> pl.DataFrame:
    """One row per request (docs/kpis.md, "Requests"): its times, SLA status and facts."""
    et, role, conv = pl.col("event_type"), pl.col("actor_role"), pl.col("conversation_id")
    horizon = rules.response_horizon.calendar_seconds
    max_age = rules.max_request_age.calendar_seconds

    opening_message = (
        (et == "message_sent")
        & pl.col("in_reply_to").is_null()
        & role.is_in(["customer", "partner"])
        & pl.col("channel_kind").is_in(["email", "live_chat", "social"])
    )
    request_type = (
        pl.when(et == "ticket_opened")
        .then(pl.lit("ticket"))
        .when(et == "call_received")
        .then(pl.lit("call"))
        .when(et == "post_submitted")
        .then(pl.lit("post"))
        .when(opening_message)
        .then(pl.lit("message"))
    )
    # The earliest opening event opens the request (ties: the first in log order).
    requests = (
        events.filter(conv.is_not_null())
        .with_columns(type=request_type)
        .filter(pl.col("type").is_not_null())
        .sort("t", "seq")
        .unique(subset=_REQUEST_KEY, keep="first", maintain_order=True)
        .select(
            *_REQUEST_KEY,
            "channel_kind",
            "scope",
            "type",
            "category",
            opened=pl.col("t"),
            requester=pl.col("actor_id"),
        )
    )

    # Events of the request that count: at or after the opening, at most max_request_age after it.
    public = pl.col("visibility").is_null() | (pl.col("visibility") != "internal")
    answer_type = (
        pl.when(pl.col("type").is_in(["ticket", "message"]))
        .then(et.is_in(["ticket_replied", "message_sent"]))
        .when(pl.col("type") == "call")
        .then(et == "call_answered")
        .otherwise(et == "post_reviewed")
    )
    within_horizon = pl.col("t") <= pl.col("opened") + horizon
    facts = (
        events.filter(conv.is_not_null())
        .join(requests.select(*_REQUEST_KEY, "type", "opened", "requester"), on=_REQUEST_KEY)
        .filter((pl.col("t") >= pl.col("opened")) & (pl.col("t") <= pl.col("opened") + max_age))
        .with_columns(
            response=answer_type
            & role.is_in(["agent", "employee"])
            & (pl.col("actor_id") != pl.col("requester"))
            & public,
            bot_reply=et.is_in(["ticket_replied", "message_sent"])
            & (role == "bot")
            & public
            & within_horizon,
            handoff=(et == "ticket_handed_off") & within_horizon,
            resolution=et == "ticket_resolved",
            reopen=et == "ticket_reopened",
        )
    )
    t = pl.col("t")
    times = facts.group_by(_REQUEST_KEY).agg(
        first_response=t.filter(pl.col("response")).min(),
        first_bot_reply=t.filter(pl.col("bot_reply")).min(),
        first_resolution=t.filter(pl.col("resolution")).min(),
    )
    requests = requests.join(times, on=_REQUEST_KEY, how="left")

    # Hand-off: the earliest one at or after the (first) bot reply, within the horizon,
    # and not after the first response.
    handoffs = (
        facts.filter(pl.col("handoff"))
        .join(requests.select(*_REQUEST_KEY, "first_bot_reply", "first_response"), on=_REQUEST_KEY)
        .filter(
            (t >= pl.col("first_bot_reply"))
            & (pl.col("first_response").is_null() | (t <= pl.col("first_response")))
        )
        .group_by(_REQUEST_KEY)
        .agg(handoff=t.min())
    )
    replies = (
        facts.filter(pl.col("response"))
        .join(requests.select(*_REQUEST_KEY, "first_resolution"), on=_REQUEST_KEY)
        .filter(t <= pl.col("first_resolution"))
        .group_by(_REQUEST_KEY)
        .agg(agent_reply_count=pl.len())
    )
    requests = (
        requests.join(handoffs, on=_REQUEST_KEY, how="left")
        .join(replies, on=_REQUEST_KEY, how="left")
        .with_columns(pl.col("agent_reply_count").fill_null(0))
    )
    bot_first = pl.col("first_bot_reply").is_not_null() & (
        pl.col("first_response").is_null() | (pl.col("first_bot_reply") < pl.col("first_response"))
    )
    requests = requests.with_columns(bot_first=bot_first).with_columns(
        clock_start=pl.when(~pl.col("bot_first"))
        .then(pl.col("opened"))
        .when(pl.col("handoff").is_not_null())
        .then(pl.col("handoff"))
        .when(pl.col("first_response") <= pl.col("opened") + horizon)
        .then(pl.col("opened"))
        .otherwise(None)
    )

    # Business-time arithmetic per request, in Python over the calendar.
    deadlines: list[float | None] = []
    business: list[float | None] = []
    reopen_ends: list[float | None] = []
    for row in requests.select(
        "channel_kind", "category", "clock_start", "first_response", "first_resolution"
    ).iter_rows():
        kind, category, start, response, resolution = row
        target = _target(kind, category, first_response, category_targets)
        deadlines.append(None if start is None else target.end(start, calendar))
        business.append(
            None
            if start is None or response is None
            else calendar.business_seconds_between(start, response)
        )
        reopen_ends.append(
            None if resolution is None else rules.reopen_window.end(resolution, calendar)
        )
    requests = requests.with_columns(
        deadline=pl.Series(deadlines, dtype=pl.Float64),
        response_business_s=pl.Series(business, dtype=pl.Float64),
        reopen_until=pl.Series(reopen_ends, dtype=pl.Float64),
    )
    reopens = (
        facts.filter(pl.col("reopen"))
        .join(requests.select(*_REQUEST_KEY, "first_resolution", "reopen_until"), on=_REQUEST_KEY)
        .filter((t > pl.col("first_resolution")) & (t <= pl.col("reopen_until")))
        .group_by(_REQUEST_KEY)
        .agg(reopened=pl.len() > 0)
    )
    requests = requests.join(reopens, on=_REQUEST_KEY, how="left").with_columns(
        pl.col("reopened").fill_null(False)
    )

    response, deadline = pl.col("first_response"), pl.col("deadline")
    in_horizon = response.is_not_null() & (response <= pl.col("opened") + horizon)
    return requests.with_columns(
        sla=pl.when(pl.col("clock_start").is_null())
        .then(pl.lit("pending"))
        .when(response.is_not_null() & (response <= deadline))
        .then(pl.lit("met"))
        .when(response.is_not_null() | (deadline < as_of))
        .then(pl.lit("breached"))
        .otherwise(pl.lit("pending")),
        first_response_s=pl.when(in_horizon).then(response - pl.col("clock_start")),
        first_response_business_s=pl.when(in_horizon).then(pl.col("response_business_s")),
        fcr=pl.when(pl.col("first_resolution").is_not_null()).then(
            (pl.col("agent_reply_count") <= 1) & ~pl.col("reopened")
        ),
    )


# -- messages ---------------------------------------------------------------------------


def _message_frame(events: pl.DataFrame, rules: KpiRules) -> pl.DataFrame:
    """One row per message (docs/kpis.md, "Messages"): sent, recipients, readers, bounced."""
    read_window = rules.read_window.calendar_seconds
    et, t = pl.col("event_type"), pl.col("t")
    messages = (
        events.filter((et == "message_sent") & pl.col("message_id").is_not_null())
        .sort("t", "seq")
        .unique(subset=_MESSAGE_KEY, keep="first", maintain_order=True)
        .select(
            *_MESSAGE_KEY,
            "channel_kind",
            "scope",
            "recipient_count",
            sent=t,
            sender=pl.col("actor_id"),
        )
    )
    in_window = (t >= pl.col("sent")) & (t <= pl.col("sent") + read_window)
    readers = (
        events.filter(et == "message_read")
        .group_by(*_MESSAGE_KEY, "actor_id")
        .agg(t.min())
        .join(messages.select(*_MESSAGE_KEY, "sent", "sender"), on=_MESSAGE_KEY)
        .filter((pl.col("actor_id") != pl.col("sender")) & in_window)
        .group_by(_MESSAGE_KEY)
        .agg(readers=pl.col("actor_id").n_unique())
    )
    spoiled = (
        events.filter(et.is_in(["message_bounced", "message_misdelivered"]))
        .join(messages.select(*_MESSAGE_KEY, "sent"), on=_MESSAGE_KEY)
        .filter(in_window)
        .group_by(_MESSAGE_KEY)
        .agg(spoiled=pl.len() > 0)
    )
    return (
        messages.join(readers, on=_MESSAGE_KEY, how="left")
        .join(spoiled, on=_MESSAGE_KEY, how="left")
        .with_columns(
            pl.col("readers").fill_null(0),
            pl.col("spoiled").fill_null(False),
            pl.col("recipient_count").fill_null(0),
        )
        .with_columns(readers=pl.min_horizontal("readers", "recipient_count"))
    )


# -- facts and windows ------------------------------------------------------------------


def _facts(events: pl.DataFrame, requests: pl.DataFrame, messages: pl.DataFrame) -> pl.DataFrame:
    """Every KPI fact as (channel, kind, scope, kpi, at, x, d): ratios sum x over d,
    quantiles take x, counts count rows."""
    cols = ["channel_id", "channel_kind", "scope"]
    et = pl.col("event_type")

    def fact(frame: pl.DataFrame, kpi: str, at: str, x: pl.Expr, d: pl.Expr) -> pl.DataFrame:
        return frame.select(
            *cols,
            kpi=pl.lit(kpi),
            at=pl.col(at),
            x=x.cast(pl.Float64),
            d=d.cast(pl.Float64),
        )

    one = pl.lit(1.0)
    decided = requests.filter(pl.col("sla") != "pending")
    met = pl.col("sla") == "met"
    answered = requests.filter(
        pl.col("type").is_in(["ticket", "call", "message"])
        & pl.col("first_response_s").is_not_null()
    )
    resolved = requests.filter(pl.col("first_resolution").is_not_null())
    read = messages.filter((pl.col("recipient_count") > 0) & ~pl.col("spoiled"))
    planned = events.filter((et == "meeting_held") & pl.col("planned_duration_s").is_not_null())
    surveys = events.filter((et == "survey_answered") & pl.col("score").is_not_null())
    parts = [
        fact(events, "volume", "t", one, one),
        fact(read, "read_rate", "sent", pl.col("readers"), pl.col("recipient_count")),
        fact(
            decided.filter(pl.col("type").is_in(["ticket", "call", "message"])),
            "first_response_sla_rate",
            "opened",
            met,
            one,
        ),
        fact(decided.filter(pl.col("type") == "post"), "review_sla_rate", "opened", met, one),
        fact(
            decided.filter(pl.col("type") == "call"), "hotline_answer_sla_rate", "opened", met, one
        ),
        *(
            fact(answered, kpi, "opened", pl.col(column), one)
            for kpi, (column, _) in _QUANTILES.items()
        ),
        fact(resolved, "fcr_rate", "first_resolution", pl.col("fcr"), one),
        fact(
            planned,
            "meeting_overrun_rate",
            "t",
            pl.col("duration_s") > pl.col("planned_duration_s"),
            one,
        ),
        fact(surveys, "csat_mean", "t", pl.col("score"), one),
    ]
    return pl.concat(parts)


def _aggregate(facts: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """(value, numerator, denominator) per group of ``by`` (which includes ``kpi``)."""
    x, d = pl.col("x"), pl.col("d")
    kpi = pl.col("kpi")
    counts = (
        facts.filter(kpi == "volume")
        .group_by(by)
        .agg(value=pl.len().cast(pl.Float64))
        .with_columns(numerator=pl.col("value"), denominator=pl.lit(None, dtype=pl.Float64))
    )
    ratios = (
        facts.filter(~kpi.is_in(["volume", *_QUANTILES]))
        .group_by(by)
        .agg(numerator=x.sum(), denominator=d.sum())
        .filter(pl.col("denominator") > 0)
        .with_columns(value=pl.col("numerator") / pl.col("denominator"))
    )
    quantiles = [
        facts.filter(kpi == name)
        .group_by(by)
        .agg(value=x.quantile(q, interpolation="linear"), denominator=pl.len().cast(pl.Float64))
        .with_columns(numerator=pl.lit(None, dtype=pl.Float64))
        for name, (_, q) in _QUANTILES.items()
    ]
    columns = [*by, "value", "numerator", "denominator"]
    return pl.concat([frame.select(columns) for frame in (counts, ratios, *quantiles)])


def _windowed(frame: pl.DataFrame, clock: WindowClock) -> pl.DataFrame:
    """``frame`` (with ``hour`` and ``day``) once per granularity, with ``granularity``, ``start``, ``end``."""
    days = frame["day"].unique().to_list()
    bounds = pl.DataFrame(
        {
            "day": days,
            "day_start": [clock.day_window(day).start for day in days],
            "day_end": [clock.day_window(day).end for day in days],
        },
        schema={"day": pl.Int64, "day_start": pl.Float64, "day_end": pl.Float64},
    )
    frame = frame.join(bounds, on="day", how="left")
    hour = frame.with_columns(
        granularity=pl.lit("hour"), start=pl.col("hour"), end=pl.col("hour") + 3600.0
    )
    day = frame.with_columns(
        granularity=pl.lit("day"), start=pl.col("day_start"), end=pl.col("day_end")
    )
    return pl.concat([hour, day]).drop("hour", "day", "day_start", "day_end")


def _active_users(events: pl.DataFrame, clock: WindowClock) -> pl.DataFrame:
    """active_users_1d/7d/28d per channel day and kind day (channels with an event that day)."""
    activity = (
        events.filter(
            pl.col("event_type").is_in(["message_sent", "message_read"])
            & pl.col("actor_role").is_in(_PEOPLE)
        )
        .select("channel_id", "actor_id", "day")
        .unique()
        .with_columns(offset=pl.int_range(0, 28).implode())
        .explode("offset")
        .with_columns(report_day=pl.col("day") + pl.col("offset"))
    )
    reported = events.select(
        "channel_id", "channel_kind", "scope", report_day=pl.col("day")
    ).unique()
    joined = reported.join(activity, on=["channel_id", "report_day"])
    people = {
        "active_users_1d": pl.col("actor_id").filter(pl.col("offset") < 1).n_unique(),
        "active_users_7d": pl.col("actor_id").filter(pl.col("offset") < 7).n_unique(),
        "active_users_28d": pl.col("actor_id").n_unique(),
    }
    frames = []
    for subject in (["channel_id", "channel_kind", "scope"], ["channel_kind", "scope"]):
        counted = joined.group_by(*subject, "report_day").agg(**people)
        if subject[0] != "channel_id":
            counted = counted.with_columns(channel_id=pl.lit(None, dtype=pl.String))
        frames.append(
            counted.unpivot(
                index=["channel_id", "channel_kind", "scope", "report_day"],
                variable_name="kpi",
                value_name="value",
            )
            .filter(pl.col("value") > 0)
            .with_columns(
                value=pl.col("value").cast(pl.Float64),
                numerator=pl.col("value").cast(pl.Float64),
                denominator=pl.lit(None, dtype=pl.Float64),
            )
        )
    days = pl.concat(frames, how="diagonal")
    ordinals = days["report_day"].unique().to_list()
    bounds = pl.DataFrame(
        {
            "report_day": ordinals,
            "start": [clock.day_window(day).start for day in ordinals],
            "end": [clock.day_window(day).end for day in ordinals],
        },
        schema={"report_day": pl.Int64, "start": pl.Float64, "end": pl.Float64},
    )
    return (
        days.join(bounds, on="report_day")
        .with_columns(granularity=pl.lit("day"))
        .drop("report_day")
    )


# -- settling ---------------------------------------------------------------------------


def settles_at(
    kpi: str,
    kind: str,
    window_end: float,
    *,
    calendar: BusinessCalendar,
    rules: KpiRules,
    first_response: Targets = DEFAULT_FIRST_RESPONSE,
    category_targets: Targets = DEFAULT_CATEGORY_TARGETS,
) -> float:
    """Window end + the KPI's "final after" time of docs/kpis.md (grace not included)."""
    if kpi in _AT_WINDOW_END:
        return window_end
    if kpi == "read_rate":
        return window_end + rules.read_window.calendar_seconds
    if kpi == "fcr_rate":
        return rules.reopen_window.end(window_end, calendar)
    if kpi in _AFTER_RESPONSE:
        start = window_end + rules.response_horizon.calendar_seconds
        targets = [first_response[kind], *category_targets.values()]
        return max(target.end(start, calendar) for target in targets)
    raise ValueError(f"unknown KPI {kpi!r}")


# -- the whole ------------------------------------------------------------------------


def reference_frame(
    events: pl.DataFrame | Iterable[Mapping[str, Any]],
    *,
    timezone: str = "UTC",
    calendar: BusinessCalendar | None = None,
    grace_s: float = 600.0,
    rules: KpiRules | None = None,
    first_response: Targets = DEFAULT_FIRST_RESPONSE,
    category_targets: Targets = DEFAULT_CATEGORY_TARGETS,
) -> pl.DataFrame:
    """Every reported KPI window: subject, channel_id, channel_kind, scope, kpi, granularity,
    start, end, window_start (ISO, UTC), value, numerator, denominator and ``final_at``
    (window end + final-after + ``grace_s``: the stream may call the window final once its
    group's latest event time passes this)."""
    calendar = calendar if calendar is not None else BusinessCalendar()
    rules = rules if rules is not None else KpiRules()
    clock = WindowClock(timezone)
    events = _with_windows(event_frame(events), clock)
    if events.is_empty():
        raise ValueError("no events")
    as_of = float(events["t"].max())  # type: ignore[arg-type]

    requests = request_frame(
        events,
        calendar=calendar,
        rules=rules,
        first_response=first_response,
        category_targets=category_targets,
        as_of=as_of,
    )
    messages = _message_frame(events, rules)
    facts = _with_windows(_facts(events, requests, messages), clock, at="at")
    facts = _windowed(facts, clock)

    # A window is reported for a channel only if the channel has an event in it; a kind
    # window merges the facts of the channels with an event in it. (Facts are attributed to
    # event times of their channel, so this keeps them all; it is here for the letter.)
    present = (
        _windowed(events.select("channel_id", "hour", "day"), clock)
        .select("channel_id", "granularity", "start")
        .unique()
    )
    facts = facts.join(present, on=["channel_id", "granularity", "start"], how="semi")
    window = ["kpi", "granularity", "start", "end"]
    channels = _aggregate(facts, ["channel_id", "channel_kind", "scope", *window])
    kinds = _aggregate(facts, ["channel_kind", "scope", *window]).with_columns(
        channel_id=pl.lit(None, dtype=pl.String)
    )
    columns = ["channel_id", "channel_kind", "scope", *window, "value", "numerator", "denominator"]
    frame = pl.concat(
        [
            channels.select(columns),
            kinds.select(columns),
            _active_users(events, clock).select(columns),
        ]
    )
    frame = frame.with_columns(
        subject=pl.coalesce(
            pl.col("channel_id"),
            pl.format("{} ({})", pl.col("channel_kind"), pl.col("scope")),
        ),
        window_start=pl.Series(
            [datetime.fromtimestamp(start, UTC).isoformat() for start in frame["start"].to_list()],
            dtype=pl.String,
        ),
    )
    settle: dict[tuple[str, str, float], float] = {}
    final_at: list[float] = []
    for kpi, kind, end in frame.select("kpi", "channel_kind", "end").iter_rows():
        found = settle.get((kpi, kind, end))
        if found is None:
            found = settle[kpi, kind, end] = settles_at(
                kpi,
                kind,
                end,
                calendar=calendar,
                rules=rules,
                first_response=first_response,
                category_targets=category_targets,
            )
        final_at.append(found + grace_s)
    return frame.with_columns(final_at=pl.Series(final_at, dtype=pl.Float64)).sort(
        "subject", "kpi", "granularity", "start"
    )


def reference_kpis(
    events: pl.DataFrame | Iterable[Mapping[str, Any]],
    *,
    timezone: str = "UTC",
    calendar: BusinessCalendar | None = None,
    grace_s: float = 600.0,
    rules: KpiRules | None = None,
    first_response: Targets = DEFAULT_FIRST_RESPONSE,
    category_targets: Targets = DEFAULT_CATEGORY_TARGETS,
) -> dict[Key, Value]:
    """``{(subject, kpi, granularity, window_start_iso): (value, numerator, denominator)}``."""
    frame = reference_frame(
        events,
        timezone=timezone,
        calendar=calendar,
        grace_s=grace_s,
        rules=rules,
        first_response=first_response,
        category_targets=category_targets,
    )
    return {
        (subject, kpi, granularity, start): (value, numerator, denominator)
        for subject, kpi, granularity, start, value, numerator, denominator in frame.select(
            "subject", "kpi", "granularity", "window_start", "value", "numerator", "denominator"
        ).iter_rows()
    }
