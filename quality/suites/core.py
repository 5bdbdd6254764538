"""One suite per core table: the facts the build derives from ``raw.events``.

What each table promises is in docs/warehouse.md; these checks hold the build
to it. Orderings of times, enums and counts are critical; consistency between
derived columns (a status and its timestamps, a flag and the values it comes
from) is a warning.
"""

from __future__ import annotations

from typing import Final

from ingest.events import ChannelKind, Scope
from quality.checks import Frame, Suite, When, at_least, between, equal, in_set, not_null, null

__all__ = ["core_suites"]

_DAY_S: Final = 86_400.0


def _requests() -> Suite:
    f = "requests"
    return Suite(
        "core.requests",
        "requests: times in order, SLA status, counts",
        (Frame(f, "SELECT * FROM core.requests", ("channel_id", "conversation_id")),),
        (
            in_set(f, "request_type", ("ticket", "call", "message", "post")),
            not_null(f, "sla_status"),
            in_set(f, "sla_status", ("met", "breached", "pending")),
            at_least(f, "first_response_at", "opened_at", name="first_response_after_opening"),
            at_least(f, "resolved_at", "opened_at", name="resolved_after_opening"),
            at_least(f, "clock_start_at", "opened_at", name="clock_starts_after_opening"),
            at_least(f, "deadline_at", "clock_start_at", name="deadline_after_clock_start"),
            between(f, "reopen_count", 0, name="reopen_count_non_negative"),
            between(f, "agent_reply_count", 0, name="agent_reply_count_non_negative"),
            between(f, "first_response_s", 0, name="first_response_s_non_negative"),
            between(
                f, "first_response_business_s", 0, name="first_response_business_s_non_negative"
            ),
            at_least(
                f,
                "first_response_s",
                "first_response_business_s",
                name="business_time_within_calendar_time",
                critical=False,
            ),
            not_null(
                f,
                "first_response_at",
                name="met_has_a_first_response",
                when=When("sla_status", ("met",)),
                critical=False,
            ),
            null(
                f,
                "first_response_at",
                name="pending_has_no_first_response",
                when=When("sla_status", ("pending",)),
            ),
            null(f, "fcr", name="fcr_only_once_resolved", when=When("resolved_at")),
        ),
    )


def _messages() -> Suite:
    f = "messages"
    return Suite(
        "core.messages",
        "messages: readers within recipients, reads after the send",
        (Frame(f, "SELECT * FROM core.messages", ("channel_id", "message_id")),),
        (
            between(f, "readers", 0, name="readers_non_negative"),
            between(f, "recipients", 0, name="recipients_non_negative"),
            at_least(f, "recipients", "readers", name="readers_at_most_recipients"),
            at_least(f, "first_read_at", "sent_at", name="first_read_after_send"),
        ),
    )


def _meetings() -> Suite:
    f = "meetings"
    return Suite(
        "core.meetings",
        "meetings: durations, overrun flag",
        (
            Frame(
                f,
                "SELECT *, duration_s > planned_duration_s AS ran_over FROM core.meetings",
                ("channel_id", "held_at"),
            ),
        ),
        (
            between(f, "duration_s", 0, name="duration_s_non_negative"),
            between(f, "planned_duration_s", 0, name="planned_duration_s_non_negative"),
            equal(f, "overrun", "ran_over", name="overrun_matches_durations", critical=False),
        ),
    )


def _calendar() -> Suite:
    f = "calendar"
    return Suite(
        "core.calendar",
        "calendar: quarter of the day, business seconds in a day",
        (
            Frame(
                f,
                "SELECT *, CAST(year(day) AS VARCHAR) || 'Q' || CAST(quarter(day) AS VARCHAR) "
                "AS quarter_of_day FROM core.calendar",
                ("calendar", "day"),
            ),
        ),
        (
            not_null(f, "quarter"),
            equal(f, "quarter", "quarter_of_day", name="quarter_matches_day"),
            between(f, "business_s", 0, _DAY_S, name="business_s_within_a_day"),
            in_set(
                f,
                "business_s",
                (0.0,),
                name="no_business_time_on_holidays",
                when=When("holiday", (True,)),
                critical=False,
            ),
            in_set(
                f,
                "business_s",
                (0.0,),
                name="no_business_time_off_workdays",
                when=When("workday", (False,)),
                critical=False,
            ),
        ),
    )


def _surveys() -> Suite:
    f = "surveys"
    return Suite(
        "core.surveys",
        "surveys: scores 1 to 5",
        (Frame(f, "SELECT * FROM core.surveys", ("channel_id", "answered_at")),),
        (
            not_null(f, "score"),
            between(f, "score", 1, 5, name="score_1_to_5"),
        ),
    )


def _channels() -> Suite:
    f = "channels"
    return Suite(
        "core.channels",
        "channels: kinds and scopes, activity after the first event",
        (Frame(f, "SELECT * FROM core.channels", ("channel_id",)),),
        (
            in_set(f, "channel_kind", (kind.value for kind in ChannelKind)),
            in_set(f, "scope", (scope.value for scope in Scope)),
            between(f, "events", 0, name="events_non_negative"),
            between(f, "idle_threshold_s", 0, name="idle_threshold_s_non_negative"),
            at_least(
                f, "last_activity_at", "first_event_at", name="last_activity_after_first_event"
            ),
            at_least(
                f,
                "archived_at",
                "first_event_at",
                name="archived_after_first_event",
                critical=False,
            ),
        ),
    )


def core_suites() -> tuple[Suite, ...]:
    return (_requests(), _messages(), _meetings(), _calendar(), _surveys(), _channels())
