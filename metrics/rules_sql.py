"""The request and read rules in SQL: the warehouse's form of :mod:`metrics.requests`
and :mod:`metrics.messages`.

Both forms compute the facts of docs/kpis.md ("Requests", "Messages") from the
same constants; tests/unit/metrics/test_rules_agree.py runs them over
generated histories, in random orders, and requires the same facts. The SQL
is a few set operations per request or message, never a loop over rows:

1. **opening**: the earliest opening event (ties: the first in log order,
   ``arg_min`` over ``(t, partition, offset)``) gives the type, requester and
   category;
2. **the request's events**: one aggregate over the events at or after the
   opening and at most ``max_request_age`` after it: the first counting
   response, the first bot reply within the horizon, the first resolution,
   and the responses, hand-offs and reopens as sorted lists;
3. **clock and deadline**: bot first, hand-off and clock start from those,
   then the deadline and every business-time figure by lookups in the working
   periods table (:mod:`metrics.calendar_table`);
4. **status**: met, breached or pending as of ``as_of``.

Each statement creates a temporary table named after ``out``; the caller
gives the events (``src``: ``channel_id, conversation_id, message_id,
event_type, t`` (epoch seconds), ``partition, offset, actor_id, actor_role,
visibility, in_reply_to, channel_kind, category, recipient_count``), the
targets (``targets``: ``channel_id, category`` (NULL: the channel's default),
``business, target_s``), the channels' calendars and reopen windows
(``policies``: ``channel_id, calendar, reopen_business, reopen_s``) and the
periods. Times stay epoch seconds (DOUBLE), as in the Python form, so both
compute the same values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from metrics.calendar_table import add_business, business_at, period_after, period_reaching
from metrics.facts import ACTIVITY_EVENTS, MESSAGE_EVENTS, PEOPLE_ROLES, REQUEST_EVENTS
from metrics.requests import (
    BOT_REPLY_EVENTS,
    MESSAGE_REQUEST_KINDS,
    OPENINGS,
    REQUESTER_ROLES,
    RESPONDER_ROLES,
    RESPONSE_EVENTS,
)

__all__ = [
    "RuleParams",
    "activity_predicate",
    "concerns_request_sql",
    "message_event_predicate",
    "message_fact_sql",
    "opening_predicate",
    "request_fact_sql",
]


@dataclass(frozen=True)
class RuleParams:
    """The time rules, in calendar seconds (``math.inf``: no bound), and the tables of
    working periods, channel policies and targets the statements read."""

    read_window_s: float
    response_horizon_s: float
    max_request_age_s: float
    periods: str = "periods"
    policies: str = "policies"
    targets: str = "targets"


def _text(values: Iterable[str]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in sorted(values))


def _seconds(value: float) -> str:
    return "CAST('infinity' AS DOUBLE)" if math.isinf(value) else repr(float(value))


def concerns_request_sql(e: str = "e") -> str:
    """Whether an event may belong to a request (``concerns_request``)."""
    return (
        f"({e}.event_type IN ({_text(REQUEST_EVENTS)}) OR ({e}.event_type = 'message_sent' "
        f"AND {e}.channel_kind IN ({_text(MESSAGE_REQUEST_KINDS)})))"
    )


def opening_predicate(e: str = "e") -> str:
    """Whether an event opens a request (``opening_type`` is not None)."""
    return (
        f"({e}.event_type IN ({_text(OPENINGS)}) OR ({e}.event_type = 'message_sent' "
        f"AND {e}.in_reply_to IS NULL AND {e}.conversation_id IS NOT NULL "
        f"AND {e}.actor_role IN ({_text(REQUESTER_ROLES)}) "
        f"AND {e}.channel_kind IN ({_text(MESSAGE_REQUEST_KINDS)})))"
    )


def activity_predicate(e: str = "e") -> str:
    """Whether an event makes its actor active on the channel."""
    return (
        f"({e}.event_type IN ({_text(ACTIVITY_EVENTS)}) "
        f"AND {e}.actor_role IN ({_text(PEOPLE_ROLES)}))"
    )


def _request_type(e: str) -> str:
    cases = " ".join(f"WHEN '{event}' THEN '{kind}'" for event, kind in sorted(OPENINGS.items()))
    return f"CASE {e}.event_type {cases} ELSE 'message' END"


def _answers(request_type: str, e: str) -> str:
    """Whether ``e``'s type answers a request of ``request_type``."""
    cases = " ".join(
        f"WHEN '{kind}' THEN {e}.event_type IN ({_text(events)})"
        for kind, events in sorted(RESPONSE_EVENTS.items())
    )
    return f"(CASE {request_type} {cases} ELSE FALSE END)"


def request_fact_sql(src: str, out: str, params: RuleParams, as_of: float) -> list[str]:
    """Statements that leave one row per request in ``out`` (``core.requests``' columns,
    times as epoch seconds), for every request with an opening in ``src``."""
    horizon = _seconds(params.response_horizon_s)
    max_age = _seconds(params.max_request_age_s)
    public = "e.visibility IS DISTINCT FROM 'internal'"
    response = (
        f"{_answers('r.o.request_type', 'e')} AND e.actor_role IN ({_text(RESPONDER_ROLES)}) "
        f"AND e.actor_id <> r.o.requester AND {public}"
    )
    bot = f"e.event_type IN ({_text(BOT_REPLY_EVENTS)}) AND e.actor_role = 'bot' AND {public}"
    periods = params.periods
    return [
        f"""
CREATE OR REPLACE TEMP TABLE {out}_open AS
SELECT e.channel_id, e.conversation_id, min(e.t) AS opened,
       arg_min({{'request_type': {_request_type("e")}, 'requester': e.actor_id,
                 'category': e.category}}, (e.t, e."partition", e."offset")) AS o
FROM {src} e
WHERE e.conversation_id IS NOT NULL AND {opening_predicate("e")}
GROUP BY e.channel_id, e.conversation_id""",
        f"""
CREATE OR REPLACE TEMP TABLE {out}_events AS
SELECT r.channel_id, r.conversation_id, r.opened, r.o.request_type AS request_type,
       r.o.requester AS requester, r.o.category AS category,
       min(e.t) FILTER (WHERE {response}) AS first_response,
       min(e.t) FILTER (WHERE {bot} AND e.t <= r.opened + {horizon}) AS first_bot,
       min(e.t) FILTER (WHERE e.event_type = 'ticket_resolved') AS resolved,
       coalesce(list(e.t) FILTER (WHERE {response}), []) AS responses,
       coalesce(list(e.t) FILTER (WHERE e.event_type = 'ticket_handed_off'
                                  AND e.t <= r.opened + {horizon}), []) AS handoffs,
       coalesce(list(e.t) FILTER (WHERE e.event_type = 'ticket_reopened'), []) AS reopens
FROM {out}_open r
JOIN {src} e ON e.channel_id = r.channel_id AND e.conversation_id = r.conversation_id
WHERE e.t >= r.opened AND e.t <= r.opened + {max_age} AND {concerns_request_sql("e")}
GROUP BY ALL""",
        f"""
CREATE OR REPLACE TEMP TABLE {out}_clock AS
WITH judged AS (
    SELECT *, first_bot IS NOT NULL AND (first_response IS NULL OR first_bot < first_response)
              AS bot_first,
           list_min(list_filter(handoffs, lambda h: h >= first_bot
                                AND (first_response IS NULL OR h <= first_response))) AS handoff
    FROM {out}_events
)
SELECT j.* EXCLUDE (responses, handoffs), p.calendar, p.reopen_business, p.reopen_s,
       coalesce(c.business, d.business) AS business, coalesce(c.target_s, d.target_s) AS target_s,
       CASE WHEN NOT bot_first THEN opened
            WHEN handoff IS NOT NULL THEN handoff
            WHEN first_response <= opened + {horizon} THEN opened END AS clock_start,
       CASE WHEN resolved IS NULL THEN len(responses)
            ELSE len(list_filter(responses, lambda x: x <= resolved)) END AS agent_reply_count
FROM judged j
JOIN {params.policies} p USING (channel_id)
JOIN {params.targets} d ON d.channel_id = j.channel_id AND d.category IS NULL
LEFT JOIN {params.targets} c ON c.channel_id = j.channel_id AND c.category = j.category""",
        f"""
CREATE OR REPLACE TEMP TABLE {out}_deadline AS
SELECT k.*,
       CASE WHEN k.clock_start IS NULL THEN NULL
            WHEN NOT k.business THEN k.clock_start + k.target_s
            ELSE {add_business("k.clock_start", "k.target_s", "ps", "pd")} END AS deadline,
       CASE WHEN k.resolved IS NULL THEN NULL
            WHEN NOT k.reopen_business THEN k.resolved + k.reopen_s
            ELSE {add_business("k.resolved", "k.reopen_s", "pr", "pq")} END AS reopen_until,
       {business_at("k.clock_start", "ps")} AS b_start
FROM {out}_clock k
{period_after(periods, "k.calendar", "k.clock_start", "ps")}
{period_reaching(periods, "k.calendar", business_at("k.clock_start", "ps") + " + k.target_s", "pd")}
{period_after(periods, "k.calendar", "k.resolved", "pr")}
{period_reaching(periods, "k.calendar", business_at("k.resolved", "pr") + " + k.reopen_s", "pq")}""",
        f"""
CREATE OR REPLACE TEMP TABLE {out} AS
SELECT d.channel_id, d.conversation_id, d.request_type, d.category, d.opened AS opened_at,
       d.clock_start AS clock_start_at, d.deadline AS deadline_at,
       CASE WHEN d.deadline IS NULL THEN NULL
            WHEN d.business THEN {business_at("d.deadline", "pe")} - d.b_start
            ELSE d.deadline - d.clock_start END AS sla_target_s,
       d.first_response AS first_response_at,
       CASE WHEN d.first_response <= d.opened + {horizon} AND d.clock_start IS NOT NULL
            THEN d.first_response - d.clock_start END AS first_response_s,
       CASE WHEN d.first_response <= d.opened + {horizon} AND d.clock_start IS NOT NULL
            THEN {business_at("d.first_response", "pf")} - d.b_start END
            AS first_response_business_s,
       CASE WHEN d.deadline IS NULL THEN 'pending'
            WHEN d.first_response IS NOT NULL
            THEN CASE WHEN d.first_response <= d.deadline THEN 'met' ELSE 'breached' END
            WHEN {as_of!r} > epoch(to_timestamp(d.deadline)) THEN 'breached'
            ELSE 'pending' END AS sla_status,
       d.resolved AS resolved_at,
       CAST(len(d.reopens) AS INTEGER) AS reopen_count,
       CAST(d.agent_reply_count AS INTEGER) AS agent_reply_count,
       CASE WHEN d.resolved IS NOT NULL
            THEN d.agent_reply_count <= 1 AND len(list_filter(
                     d.reopens, lambda x: x > d.resolved AND x <= d.reopen_until)) = 0 END AS fcr,
       (d.clock_start IS NOT NULL AND d.deadline IS NULL)
           OR (d.resolved IS NOT NULL AND d.reopen_until IS NULL) AS beyond_calendar
FROM {out}_deadline d
{period_after(periods, "d.calendar", "d.deadline", "pe")}
{period_after(periods, "d.calendar", "d.first_response", "pf")}""",
    ]


def message_fact_sql(src: str, out: str, params: RuleParams) -> list[str]:
    """Statements that leave one row per message sent in ``src`` in ``out`` (``core.messages``'
    columns, times as epoch seconds)."""
    window = _seconds(params.read_window_s)
    return [
        f"""
CREATE OR REPLACE TEMP TABLE {out}_sent AS
SELECT channel_id, message_id, min(t) AS sent,
       arg_min({{'sender': actor_id, 'recipients': recipient_count}},
               (t, "partition", "offset")) AS s
FROM {src} WHERE event_type = 'message_sent' AND message_id IS NOT NULL
GROUP BY channel_id, message_id""",
        f"""
CREATE OR REPLACE TEMP TABLE {out} AS
WITH first_reads AS (
    SELECT channel_id, message_id, actor_id, min(t) AS first_read
    FROM {src} WHERE event_type = 'message_read'
    GROUP BY ALL
), readers AS (
    SELECT m.channel_id, m.message_id, count(*) AS readers, min(r.first_read) AS first_read
    FROM {out}_sent m JOIN first_reads r USING (channel_id, message_id)
    WHERE r.actor_id <> m.s.sender AND r.first_read >= m.sent AND r.first_read <= m.sent + {window}
    GROUP BY ALL
), flags AS (
    SELECT m.channel_id, m.message_id,
           bool_or(e.event_type = 'message_bounced') AS bounced,
           bool_or(e.event_type = 'message_misdelivered') AS misdelivered
    FROM {out}_sent m JOIN {src} e USING (channel_id, message_id)
    WHERE e.event_type IN ('message_bounced', 'message_misdelivered')
      AND e.t >= m.sent AND e.t <= m.sent + {window}
    GROUP BY ALL
)
SELECT m.channel_id, m.message_id, m.sent AS sent_at, m.s.sender AS sender,
       m.s.recipients AS recipients,
       CAST(CASE WHEN m.s.recipients IS NULL THEN coalesce(r.readers, 0)
                 ELSE least(coalesce(r.readers, 0), m.s.recipients) END AS INTEGER) AS readers,
       r.first_read AS first_read_at,
       coalesce(f.bounced, FALSE) AS bounced, coalesce(f.misdelivered, FALSE) AS misdelivered,
       coalesce(m.s.recipients, 0) > 0 AND NOT coalesce(f.bounced, FALSE)
           AND NOT coalesce(f.misdelivered, FALSE) AS counts_for_read_rate
FROM {out}_sent m
LEFT JOIN readers r USING (channel_id, message_id)
LEFT JOIN flags f USING (channel_id, message_id)""",
    ]


def message_event_predicate(e: str = "e") -> str:
    """Whether an event concerns a message (a send, read, bounce or misdelivery)."""
    return f"({e}.event_type IN ({_text(MESSAGE_EVENTS)}) AND {e}.message_id IS NOT NULL)"
