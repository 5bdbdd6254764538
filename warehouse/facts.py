"""Core facts in SQL: from ``raw.events``, whole or for what a load touched.

The rules are :mod:`metrics.rules_sql` (requests, messages) and
:mod:`metrics.calendar_table` (business time); this module gives them their
inputs and merges their results into the core tables. Nothing here loops over
events in Python: the catalog is read per channel, never per event.

A full build (:meth:`FactBuild.full`) recomputes every core table. An
incremental build (:meth:`FactBuild.incremental`) starts from the events
loaded since the last build (``delta``) and recomputes only what they reach:

* **requests**: every conversation with a new event, read again from the first
  instant that can count (its opening: earlier events never count), so the scan
  of ``raw.events`` is bounded by time, not by the history;
* **messages**: every message with a new event, likewise from its send, plus the
  message's *strays* (``ops.message_strays``: reads and flags that came before
  their send was known, which a reader's earliest read needs);
* **channels, channel days, activity, meetings, surveys**: merged from the delta
  (counts add, earliest and latest times combine);
* **pending requests** whose deadline has passed by the new "as of" time become
  breached.

Each step records the (channel, day) pairs whose KPIs change in
``_cp_touched``, and in ``_cp_trailing`` the days of new active people and new
channel days (from which the active-user counts change): what
:mod:`warehouse.kpis` recomputes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import duckdb
import polars as pl

from metrics.calendar import BusinessCalendar
from metrics.channels import ChannelCatalog
from metrics.durations import Duration
from metrics.rules_sql import (
    RuleParams,
    activity_predicate,
    concerns_request_sql,
    message_event_predicate,
    message_fact_sql,
    opening_predicate,
    request_fact_sql,
)
from warehouse.schema import WarehouseError, scalar

__all__ = ["SRC_COLUMNS", "FactBuild", "NeedsFullBuild", "rule_params"]

log = logging.getLogger(__name__)

#: The columns the rules read, with the event time as epoch seconds.
SRC_COLUMNS: Final = (
    "event_id, channel_id, conversation_id, message_id, event_type, epoch(occurred_at) AS t, "
    '"partition", "offset", actor_id, actor_role, visibility, in_reply_to, channel_kind, '
    "category, recipient_count, duration_s, planned_duration_s, score, scope, occurred_at"
)
_REQUEST_COLUMNS: Final = (
    "channel_id, conversation_id, request_type, category, to_timestamp(opened_at), "
    "to_timestamp(clock_start_at), to_timestamp(deadline_at), sla_target_s, "
    "to_timestamp(first_response_at), first_response_s, first_response_business_s, sla_status, "
    "to_timestamp(resolved_at), reopen_count, agent_reply_count, fcr"
)
_MESSAGE_COLUMNS: Final = (
    "channel_id, message_id, to_timestamp(sent_at), sender, recipients, readers, "
    "to_timestamp(first_read_at), bounced, misdelivered, counts_for_read_rate"
)
#: Keys whose first instant that counts is this much older than the newest key's are read in
#: a scan of their own, so one old conversation does not widen the scan for the recent ones.
_RECENT_S: Final = 2 * 86_400.0


class NeedsFullBuild(Exception):
    """An increment cannot be merged (a channel's kind or scope changed): build in full."""


def rule_params(catalog: ChannelCatalog) -> RuleParams:
    rules = catalog.rules
    return RuleParams(
        read_window_s=rules.read_window.calendar_seconds,
        response_horizon_s=rules.response_horizon.calendar_seconds,
        max_request_age_s=rules.max_request_age.calendar_seconds,
        periods="core.working_periods",
        policies="_cp_policies",
        targets="_cp_targets",
    )


def _day(instant_sql: str, timezone: str) -> str:
    """The reporting day (DATE) of a TIMESTAMPTZ expression."""
    zone = timezone.replace("'", "''")
    return f"CAST(timezone('{zone}', {instant_sql}) AS DATE)"


@dataclass
class FactBuild:
    """One build's fact step; ``as_of`` (epoch seconds) is when SLA statuses are judged."""

    con: duckdb.DuckDBPyConnection
    catalog: ChannelCatalog
    timezone: str
    as_of: float
    #: whether steps record what they touch (an incremental build) or not (a full one)
    _record: bool = False

    # -- full ---------------------------------------------------------------------------

    def full(self) -> None:
        con, tz = self.con, self.timezone
        self._record = False
        for table in ("requests", "messages", "meetings", "surveys", "activity", "channel_days"):
            con.execute(f"DELETE FROM core.{table}")
        con.execute("DELETE FROM ops.message_strays")
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW _cp_delta AS SELECT {SRC_COLUMNS} FROM raw.events"
        )
        self._channels(full=True)
        self._policies()
        self._run(request_fact_sql("_cp_delta", "_cp_req", rule_params(self.catalog), self.as_of))
        self._check_calendar()
        con.execute(f"INSERT INTO core.requests SELECT {_REQUEST_COLUMNS} FROM _cp_req")
        self._run(message_fact_sql("_cp_delta", "_cp_msg", rule_params(self.catalog)))
        con.execute(f"INSERT INTO core.messages SELECT {_MESSAGE_COLUMNS} FROM _cp_msg")
        self._strays("_cp_msg")
        self._append_events()
        con.execute(f"""
INSERT INTO core.activity
SELECT DISTINCT e.channel_id, {_day("e.occurred_at", tz)}, e.actor_id
FROM _cp_delta e WHERE {activity_predicate("e")}""")
        con.execute(f"""
INSERT INTO core.channel_days
SELECT channel_id, {_day("occurred_at", tz)} AS day, count(*) FROM _cp_delta GROUP BY ALL""")

    # -- incremental --------------------------------------------------------------------

    def incremental(self) -> None:
        """Merge the events of ``_cp_delta`` (a table of :data:`SRC_COLUMNS`) into the facts."""
        con, tz = self.con, self.timezone
        self._record = True
        con.execute("CREATE OR REPLACE TEMP TABLE _cp_touched (channel_id VARCHAR, day DATE)")
        con.execute("CREATE OR REPLACE TEMP TABLE _cp_trailing (channel_id VARCHAR, day DATE)")
        self._channels(full=False)
        self._policies()
        self._requests()
        self._messages()
        self._append_events()
        self._touch("_cp_delta", "occurred_at")
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_days AS
SELECT channel_id, {_day("occurred_at", tz)} AS day, count(*) AS events
FROM _cp_delta GROUP BY ALL""")
        # A channel's first event on a day adds a report day for its active users.
        con.execute("""
INSERT INTO _cp_trailing SELECT n.channel_id, n.day FROM _cp_days n
WHERE NOT EXISTS (SELECT 1 FROM core.channel_days d
                  WHERE d.channel_id = n.channel_id AND d.day = n.day)""")
        con.execute("""
UPDATE core.channel_days d SET events = d.events + n.events
FROM _cp_days n WHERE d.channel_id = n.channel_id AND d.day = n.day""")
        con.execute("""
INSERT INTO core.channel_days SELECT * FROM _cp_days n
WHERE NOT EXISTS (SELECT 1 FROM core.channel_days d
                  WHERE d.channel_id = n.channel_id AND d.day = n.day)""")
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_new_activity AS
SELECT DISTINCT e.channel_id, {_day("e.occurred_at", tz)} AS day, e.actor_id
FROM _cp_delta e WHERE {activity_predicate("e")}""")
        con.execute("""
DELETE FROM _cp_new_activity n WHERE EXISTS (
    SELECT 1 FROM core.activity a
    WHERE a.day >= (SELECT min(day) FROM _cp_new_activity)
      AND a.channel_id = n.channel_id AND a.day = n.day AND a.actor_id = n.actor_id)""")
        con.execute("INSERT INTO core.activity SELECT * FROM _cp_new_activity")
        con.execute(
            "INSERT INTO _cp_trailing SELECT DISTINCT channel_id, day FROM _cp_new_activity"
        )

    # -- steps --------------------------------------------------------------------------

    def _run(self, statements: list[str]) -> None:
        for statement in statements:
            self.con.execute(statement)

    def _touch(self, relation: str, *columns: str) -> None:
        """Record the reporting days of ``columns`` (TIMESTAMPTZ) of ``relation`` (a table or a
        parenthesised query with ``channel_id``) as touched: their KPIs are computed again."""
        if not self._record:
            return
        days = " UNION ".join(
            f"SELECT channel_id, {_day(f'CAST({column} AS TIMESTAMPTZ)', self.timezone)} "
            f"FROM {relation} x WHERE {column} IS NOT NULL"
            for column in columns
        )
        self.con.execute(f"INSERT INTO _cp_touched {days}")

    def _channels(self, *, full: bool) -> None:
        """``core.channels``: counts and times from the events, kind, scope and policy from
        the catalog, falling back to the channel's first event."""
        con = self.con
        con.execute("""
CREATE OR REPLACE TEMP TABLE _cp_chan AS
SELECT channel_id,
       arg_min({'kind': channel_kind, 'scope': scope}, (occurred_at, "partition", "offset"))
           AS first,
       min(occurred_at) AS first_event_at, max(occurred_at) AS last_activity_at,
       min(occurred_at) FILTER (WHERE event_type = 'channel_archived') AS archived_at,
       count(*) AS events
FROM _cp_delta GROUP BY channel_id""")
        if full:
            con.execute("DELETE FROM core.channels")
            self._insert_channels("SELECT * FROM _cp_chan")
            return
        # A channel whose first event may have changed: judge its first event again over
        # the events up to its old first instant (few: a time-bounded scan) and the new ones.
        earlier = con.execute("""
SELECT d.channel_id, c.first_event_at, c.channel_kind, c.scope
FROM _cp_chan d JOIN core.channels c USING (channel_id)
WHERE d.first_event_at <= c.first_event_at""").fetchall()
        if earlier:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _cp_first AS "
                "SELECT e.channel_id, arg_min({'kind': e.channel_kind, 'scope': e.scope}, "
                '(e.occurred_at, e."partition", e."offset")) AS first '
                "FROM raw.events e JOIN core.channels c USING (channel_id) "
                "WHERE e.occurred_at <= ? AND e.occurred_at <= c.first_event_at "
                "AND e.channel_id IN (SELECT channel_id FROM _cp_chan) GROUP BY e.channel_id",
                [max(row[1] for row in earlier)],
            )
            for channel_id, _, kind, scope in earlier:
                row = con.execute(
                    "SELECT first.kind, first.scope FROM _cp_first WHERE channel_id = ?",
                    [channel_id],
                ).fetchone()
                assert row is not None, channel_id
                if self._resolve(channel_id, row[0], row[1])[:2] != (kind, scope):
                    raise NeedsFullBuild(f"channel {channel_id} changed its kind or scope")
        con.execute("""
UPDATE core.channels c SET
    first_event_at = least(c.first_event_at, d.first_event_at),
    last_activity_at = greatest(c.last_activity_at, d.last_activity_at),
    archived_at = least(c.archived_at, d.archived_at),
    events = c.events + d.events
FROM _cp_chan d WHERE c.channel_id = d.channel_id""")
        self._insert_channels(
            "SELECT * FROM _cp_chan WHERE channel_id NOT IN (SELECT channel_id FROM core.channels)"
        )

    def _resolve(self, channel_id: str, kind: str, scope: str) -> tuple[str, str, str | None, str]:
        """(kind, scope, name, calendar) of a channel whose first event says ``kind``/``scope``."""
        info = self.catalog.info(channel_id)
        return (
            info.kind.value if info and info.kind else kind,
            info.scope.value if info and info.scope else scope,
            info.name if info else None,
            info.calendar if info else "default",
        )

    def _insert_channels(self, select: str) -> None:
        con = self.con
        rows = con.execute(f"SELECT channel_id, first.kind, first.scope FROM ({select})").fetchall()
        if not rows:
            return
        resolved = []
        for channel_id, kind, scope in rows:
            kind, scope, name, calendar = self._resolve(channel_id, kind, scope)
            resolved.append(
                {
                    "channel_id": channel_id,
                    "channel_kind": kind,
                    "scope": scope,
                    "name": name,
                    "calendar": calendar,
                    "idle_threshold_s": self.catalog.policy(
                        channel_id, kind
                    ).idle_business_seconds(),
                }
            )
        frame = pl.DataFrame(
            resolved,
            schema={
                "channel_id": pl.String, "channel_kind": pl.String, "scope": pl.String,
                "name": pl.String, "calendar": pl.String, "idle_threshold_s": pl.Float64,
            },
        )  # fmt: skip
        con.register("_cp_resolved", frame)
        try:
            con.execute(f"""
INSERT INTO core.channels
SELECT r.channel_id, r.channel_kind, r.scope, r.name, r.calendar, r.idle_threshold_s,
       d.first_event_at, d.last_activity_at, d.archived_at, d.events
FROM ({select}) d JOIN _cp_resolved r USING (channel_id)""")
        finally:
            con.unregister("_cp_resolved")

    def _policies(self) -> None:
        """``_cp_policies`` and ``_cp_targets``: every channel's calendar, reopen window and
        response targets (per category; NULL: the channel's own), from the catalog."""
        catalog, rules = self.catalog, self.catalog.rules
        policies: list[dict[str, object]] = []
        targets: list[dict[str, object]] = []
        for channel_id, kind in self.con.execute(
            "SELECT channel_id, channel_kind FROM core.channels"
        ).fetchall():
            policy = catalog.policy(channel_id, kind)
            reopen = rules.reopen_window
            policies.append(
                {
                    "channel_id": channel_id,
                    "calendar": policy.calendar.name,
                    "reopen_business": reopen.clock == "business",
                    "reopen_s": _seconds(reopen, policy.calendar),
                }
            )
            for category, target in [(None, policy.first_response), *policy.categories.items()]:
                targets.append(
                    {
                        "channel_id": channel_id,
                        "category": category,
                        "business": target.clock == "business",
                        "target_s": _seconds(target, policy.calendar),
                    }
                )
        self._temp(
            "_cp_policies",
            policies,
            {"channel_id": pl.String, "calendar": pl.String, "reopen_business": pl.Boolean,
             "reopen_s": pl.Float64},
        )  # fmt: skip
        self._temp(
            "_cp_targets",
            targets,
            {"channel_id": pl.String, "category": pl.String, "business": pl.Boolean,
             "target_s": pl.Float64},
        )  # fmt: skip

    def _temp(self, name: str, rows: list[dict[str, object]], schema: dict[str, object]) -> None:
        frame = pl.DataFrame(rows, schema=schema)  # type: ignore[arg-type]
        self.con.register("_cp_frame", frame)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _cp_frame")
        finally:
            self.con.unregister("_cp_frame")

    def _check_calendar(self) -> None:
        found = self.con.execute(
            "SELECT r.channel_id, p.calendar FROM _cp_req r JOIN _cp_policies p USING (channel_id) "
            "WHERE r.beyond_calendar LIMIT 1"
        ).fetchone()
        if found is not None:
            raise WarehouseError(
                f"calendar {found[1]!r} (channel {found[0]}) has no working time within the "
                "400 days after its events: check its periods, weekdays and holidays"
            )

    def _fetch(self, keys: str, key_columns: tuple[str, str], predicate: str, into: str) -> None:
        """``into``: the events of ``keys`` at or after each key's ``lower`` bound (epoch
        seconds), read from ``raw.events`` in time-bounded scans: one for the keys of the last
        two days before the newest, one for the older keys (a late reply to an old request
        does not widen the scan for the others)."""
        con = self.con
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {into} AS SELECT {SRC_COLUMNS} FROM raw.events LIMIT 0"
        )
        split = scalar(con, f"SELECT max(lower) - {_RECENT_S!r} FROM {keys}")
        if split is None:
            return
        bounds = con.execute(
            f"SELECT min(lower) FILTER (WHERE lower >= ?), min(lower) FILTER (WHERE lower < ?) "
            f"FROM {keys}",
            [split, split],
        ).fetchone()
        assert bounds is not None
        columns = SRC_COLUMNS.replace("epoch(occurred_at)", "epoch(e.occurred_at)")
        for bound, which in zip(bounds, (">=", "<"), strict=True):
            if bound is None:
                continue
            con.execute(
                f"""
INSERT INTO {into}
SELECT {columns} FROM raw.events e JOIN {keys} k USING ({", ".join(key_columns)})
WHERE e.occurred_at >= to_timestamp(?) AND epoch(e.occurred_at) >= k.lower
  AND k.lower {which} ? AND {predicate}""",
                [bound - 1.0, split],
            )

    def _requests(self) -> None:
        con = self.con
        # One look at core.requests for the conversations the delta touches: their rows (to
        # delete by rowid), opening (the first instant that can count) and attribution days.
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_rold AS
WITH d AS (
    SELECT DISTINCT channel_id, conversation_id FROM _cp_delta e
    WHERE e.conversation_id IS NOT NULL AND {concerns_request_sql("e")}
)
SELECT r.rowid AS row, r.channel_id, r.conversation_id, r.opened_at, r.resolved_at
FROM core.requests r JOIN d USING (channel_id, conversation_id)""")
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_rkeys AS
WITH d AS (
    SELECT channel_id, conversation_id, min(t) FILTER (WHERE {opening_predicate("e")}) AS opening
    FROM _cp_delta e WHERE e.conversation_id IS NOT NULL AND {concerns_request_sql("e")}
    GROUP BY ALL
)
SELECT d.channel_id, d.conversation_id, least(epoch(r.opened_at), d.opening) AS lower
FROM d LEFT JOIN _cp_rold r USING (channel_id, conversation_id)
WHERE r.opened_at IS NOT NULL OR d.opening IS NOT NULL""")
        if scalar(con, "SELECT count(*) FROM _cp_rkeys"):
            self._fetch(
                "_cp_rkeys",
                ("channel_id", "conversation_id"),
                concerns_request_sql("e"),
                "_cp_rsrc",
            )
            self._run(
                request_fact_sql("_cp_rsrc", "_cp_req", rule_params(self.catalog), self.as_of)
            )
            self._check_calendar()
            self._touch("_cp_rold", "opened_at", "resolved_at")
            con.execute("DELETE FROM core.requests WHERE rowid IN (SELECT row FROM _cp_rold)")
            con.execute(f"INSERT INTO core.requests SELECT {_REQUEST_COLUMNS} FROM _cp_req")
            self._touch(
                "(SELECT channel_id, to_timestamp(opened_at) AS opened_at, "
                "to_timestamp(resolved_at) AS resolved_at FROM _cp_req)",
                "opened_at",
                "resolved_at",
            )
        self._breach_overdue()

    def _breach_overdue(self) -> None:
        """Unanswered requests whose deadline has passed by ``as_of`` are breached."""
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _cp_overdue AS "
            "SELECT rowid AS row, channel_id, opened_at FROM core.requests "
            "WHERE sla_status = 'pending' AND first_response_at IS NULL "
            "AND deadline_at IS NOT NULL AND ? > epoch(deadline_at)",
            [self.as_of],
        )
        if scalar(con, "SELECT count(*) FROM _cp_overdue"):
            self._touch("_cp_overdue", "opened_at")
            con.execute(
                "UPDATE core.requests SET sla_status = 'breached' "
                "WHERE rowid IN (SELECT row FROM _cp_overdue)"
            )

    def _messages(self) -> None:
        con = self.con
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_mold AS
WITH d AS (SELECT DISTINCT channel_id, message_id FROM _cp_delta e
           WHERE {message_event_predicate("e")})
SELECT m.rowid AS row, m.channel_id, m.message_id, m.sent_at
FROM core.messages m JOIN d USING (channel_id, message_id)""")
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cp_msent AS
WITH d AS (
    SELECT channel_id, message_id, min(t) FILTER (WHERE event_type = 'message_sent') AS sent
    FROM _cp_delta e WHERE {message_event_predicate("e")} GROUP BY ALL
)
SELECT d.channel_id, d.message_id, least(epoch(m.sent_at), d.sent) AS lower
FROM d LEFT JOIN _cp_mold m USING (channel_id, message_id)
WHERE m.sent_at IS NOT NULL OR d.sent IS NOT NULL""")
        if scalar(con, "SELECT count(*) FROM _cp_msent"):
            self._fetch(
                "_cp_msent", ("channel_id", "message_id"), message_event_predicate("e"), "_cp_msrc"
            )
            con.execute("""
INSERT INTO _cp_msrc (event_id, channel_id, message_id, event_type, t, actor_id)
SELECT s.event_id, s.channel_id, s.message_id, s.event_type, s.t, s.actor_id
FROM ops.message_strays s JOIN _cp_msent k USING (channel_id, message_id) WHERE s.t < k.lower""")
            self._run(message_fact_sql("_cp_msrc", "_cp_msg", rule_params(self.catalog)))
            self._touch("_cp_mold", "sent_at")
            con.execute("DELETE FROM core.messages WHERE rowid IN (SELECT row FROM _cp_mold)")
            con.execute(f"INSERT INTO core.messages SELECT {_MESSAGE_COLUMNS} FROM _cp_msg")
            self._touch(
                "(SELECT channel_id, to_timestamp(sent_at) AS sent_at FROM _cp_msg)", "sent_at"
            )
        else:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _cp_msg AS "
                "SELECT channel_id, message_id, CAST(NULL AS DOUBLE) AS sent_at FROM _cp_msent LIMIT 0"
            )
        self._strays("_cp_msg")

    def _strays(self, messages: str) -> None:
        """Keep the reads and flags of ``_cp_delta`` that came before their message's send
        (or before any send): a reader's earliest read may be one of them. ``messages``
        holds the send of every message the delta has events of (epoch ``sent_at``)."""
        self.con.execute(f"""
INSERT INTO ops.message_strays
SELECT e.channel_id, e.message_id, e.event_id, e.event_type, e.t, e.actor_id
FROM _cp_delta e LEFT JOIN {messages} m USING (channel_id, message_id)
WHERE {message_event_predicate("e")} AND e.event_type <> 'message_sent'
  AND (m.sent_at IS NULL OR e.t < m.sent_at)""")

    def _append_events(self) -> None:
        """Meetings and surveys: one row per event."""
        con = self.con
        con.execute("""
INSERT INTO core.meetings
SELECT channel_id, occurred_at, duration_s, planned_duration_s,
       CASE WHEN planned_duration_s IS NULL THEN NULL ELSE duration_s > planned_duration_s END
FROM _cp_delta WHERE event_type = 'meeting_held'""")
        con.execute("""
INSERT INTO core.surveys SELECT channel_id, occurred_at, score
FROM _cp_delta WHERE event_type = 'survey_answered'""")
        self._touch(
            "(SELECT channel_id, occurred_at FROM _cp_delta "
            "WHERE event_type IN ('meeting_held', 'survey_answered'))",
            "occurred_at",
        )


def _seconds(duration: Duration, calendar: BusinessCalendar) -> float:
    """A duration's length on its clock: calendar seconds, or business seconds on ``calendar``."""
    if duration.clock == "calendar":
        return duration.amount * duration.unit_s
    return duration.business_seconds(calendar)
