"""One definition, two forms: the Python rules the stream keeps (metrics/requests.py,
metrics/messages.py) and the SQL the warehouse runs (metrics/rules_sql.py) give the same
request and message facts, for generated histories fed to the Python form in any order.

Histories mix every request event (openings of each type, a second opening, replies by
agents, employees, bots, the requester, internal notes, hand-offs, resolutions, reopens),
categories with their own targets, a calendar with a holiday and a make-up day, short time
rules (so horizons and ages cut), and messages with repeated sends, reads before the send,
the sender's own reads, bounces and misdeliveries. Times are whole seconds, so both forms
compute exactly, and each conversation's openings (each message's sends) have distinct times:
at the same instant the warehouse takes the first in log order, the stream the first to
arrive (metrics/requests.py says so).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics.channels import ChannelCatalog
from metrics.facts import MESSAGE_EVENTS
from metrics.messages import MessageState
from metrics.requests import RequestState, concerns_request, opening_type, role_in_request
from warehouse.build import build
from warehouse.schema import open_warehouse
from warehouse.sink import commit_batch, decode_record

CATALOG = """
[rules]
read_window = "2d"
response_horizon = "1d"
reopen_window = "1d business"
max_request_age = "3d"

[calendars.default]
timezone = "Europe/Berlin"
periods = ["09:00-12:00", "13:00-17:30"]
holidays = [2026-03-04]
makeup_days = [2026-03-07]

[sla.categories]
complaint = "4h"
suggestion = "1d business"
"""
START = datetime(2026, 3, 2, 6, tzinfo=UTC).timestamp()  # a Monday morning
SPAN_S = 6 * 86_400
KINDS = {"tk": "ticket", "chat": "live_chat", "mail": "email", "hot": "hotline", "kb": "forum"}
ACTORS = ("c1", "c2", "a1", "a2", "e1", "bot")
ROLES = {"c1": "customer", "c2": "partner", "a1": "agent", "a2": "agent", "e1": "employee",
         "bot": "bot"}  # fmt: skip
REQUEST_TYPES = (
    "ticket_opened", "call_received", "post_submitted", "ticket_replied", "message_sent",
    "ticket_handed_off", "ticket_resolved", "ticket_reopened", "call_answered", "post_reviewed",
)  # fmt: skip
NOW = START + SPAN_S + 86_400


@st.composite
def conversation(draw: st.DrawFn, channel: str, number: int) -> list[dict[str, Any]]:
    """A conversation's events at whole seconds, mostly near its start; its openings at
    distinct times. Some start as a bot-first story: opening, bot reply, hand-off, reply."""
    conv = f"{channel}-r{number}"
    base = draw(st.integers(0, SPAN_S - 86_400))
    near = st.one_of(st.integers(0, 4 * 3600), st.integers(-3600, 2 * 86_400))
    events = []
    openings: set[int] = set()
    if draw(st.booleans()):
        opening = draw(st.sampled_from(["ticket_opened", "message_sent"]))
        # bot reply, hand-off and reply gaps; each may fall after the one-day horizon
        gaps = [draw(st.sampled_from([30, 3_600, 26 * 3600])), draw(st.integers(1, 3 * 3600)),
                draw(st.sampled_from([600, 5_400, 30 * 3600]))]  # fmt: skip
        story: list[tuple[str, str, int, dict[str, Any]]] = [
            (opening, "c1", 0, {}),
            ("ticket_replied", "bot", gaps[0], {}),
            ("ticket_handed_off", "a1", gaps[0] + gaps[1], {}),
            ("ticket_replied", "a2", sum(gaps), {}),
        ]
        answered = sum(gaps)
        if draw(st.booleans()):
            story.append(("ticket_replied", "e1", answered + 60, {}))  # a second reply
        if draw(st.booleans()):
            story.append(("ticket_resolved", "a1", answered + 120, {}))
            if draw(st.booleans()):
                story.append(
                    ("ticket_reopened", "c1", answered + draw(st.integers(180, 86_400)), {})
                )
        if draw(st.booleans()):
            del story[2]  # no hand-off: the bot's answer stands unless a person answers in time
        for event_type, actor, at, _ in story:
            fields: dict[str, Any] = {"conversation_id": conv}
            if event_type == "message_sent":
                fields["message_id"] = f"{conv}-m0"
            events.append(_event(channel, event_type, actor, base + at, **fields))
        openings.add(base)
    for _ in range(draw(st.integers(0 if events else 1, 8))):
        event_type = draw(st.sampled_from(REQUEST_TYPES))
        actor = draw(st.sampled_from(ACTORS))
        t = max(0, min(SPAN_S, base + draw(near)))
        fields = {"conversation_id": conv}
        if event_type == "message_sent":
            fields["message_id"] = f"{conv}-m{len(events) + 1}"
            if draw(st.booleans()):
                fields["in_reply_to"] = f"{conv}-m0"
        if event_type == "post_reviewed":
            fields["decision"] = "approved"
        if draw(st.integers(0, 5)) == 0:
            fields["visibility"] = "internal"
        if draw(st.integers(0, 3)) == 0:
            fields["category"] = draw(st.sampled_from(["complaint", "suggestion", "inquiry"]))
        event = _event(channel, event_type, actor, t, **fields)
        if opening_type(_shape(event)) is not None:
            if t in openings:
                continue
            openings.add(t)
        events.append(event)
    return events


@st.composite
def message(draw: st.DrawFn, channel: str, number: int) -> list[dict[str, Any]]:
    """A message's sends (distinct times), reads and flags."""
    mid = f"{channel}-m{number}"
    events = []
    sends = draw(st.sets(st.integers(0, SPAN_S), min_size=0, max_size=2))
    for t in sorted(sends):
        events.append(
            _event(channel, "message_sent", draw(st.sampled_from(ACTORS)), t, message_id=mid,
                   recipient_count=draw(st.sampled_from([None, 0, 1, 3])))
        )  # fmt: skip
    for _ in range(draw(st.integers(0, 6))):
        event_type = draw(
            st.sampled_from(["message_read"] * 4 + ["message_bounced", "message_misdelivered"])
        )
        events.append(
            _event(channel, event_type, draw(st.sampled_from(ACTORS)),
                   draw(st.integers(0, SPAN_S)), message_id=mid)
        )  # fmt: skip
    return events


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    events = []
    for channel in draw(
        st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=3, unique=True)
    ):
        for number in range(draw(st.integers(1, 3))):
            events += draw(conversation(channel, number))
        for number in range(draw(st.integers(0, 2))):
            events += draw(message(channel, number))
    return events


def _event(channel: str, event_type: str, actor: str, t: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "occurred_at": datetime.fromtimestamp(START + t, UTC).isoformat(),
        "channel_id": channel,
        "channel_kind": KINDS[channel],
        "scope": "internal" if KINDS[channel] in {"email", "forum"} else "external",
        "actor_id": actor,
        "actor_role": ROLES[actor],
        **fields,
    }


def _shape(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the stream's engine sees it: ``_t`` in epoch seconds."""
    return {**event, "_t": datetime.fromisoformat(event["occurred_at"]).timestamp()}


def python_facts(
    events: list[dict[str, Any]], catalog: ChannelCatalog, order: random.Random
) -> tuple[dict[tuple[str, str], tuple[Any, ...]], dict[tuple[str, str], tuple[Any, ...]]]:
    """Facts from the Python rules, the events applied in a random order as the stream's
    engine takes them in (streams/engine/partition.py: openings open, other events apply by
    role, events later than ``max_request_age`` after a known opening are left out)."""
    shuffled = [_shape(e) for e in events]
    order.shuffle(shuffled)
    requests: dict[tuple[str, str], RequestState] = {}
    messages: dict[tuple[str, str], MessageState] = {}
    max_age = catalog.rules.max_request_age.calendar_seconds
    for e in shuffled:
        key = (e["channel_id"], e.get("conversation_id") or "")
        if concerns_request(e["event_type"], e["channel_kind"]) and e.get("conversation_id"):
            opened = opening_type(e)
            state = requests.get(key)
            if opened is not None:
                state = requests.setdefault(key, RequestState())
                state.open(opened, e["_t"], e["actor_id"], e.get("category"))
            else:
                role = role_in_request(e)
                if role is not None and not (
                    state is not None
                    and state.opened_at is not None
                    and e["_t"] - state.opened_at > max_age
                ):
                    requests.setdefault(key, RequestState()).apply(role, e["_t"], e["actor_id"])
        if e["event_type"] in MESSAGE_EVENTS:
            m = messages.setdefault((e["channel_id"], e["message_id"]), MessageState())
            if e["event_type"] == "message_sent":
                m.send(e["_t"], e["actor_id"], e.get("recipient_count"))
            elif e["event_type"] == "message_read":
                m.read(e["_t"], e["actor_id"])
            else:
                m.flag(e["event_type"], e["_t"])
    as_of = max([NOW, *(e["_t"] for e in shuffled)])
    request_rows = {}
    for (channel, conv), state in requests.items():
        if state.opened_at is None:
            continue
        policy = catalog.policy(channel, KINDS[channel])
        f = state.fact(channel, conv, policy, catalog.rules, as_of)
        request_rows[(channel, conv)] = (
            f.request_type, f.category, f.opened_at, f.clock_start, f.deadline, f.sla_target_s,
            f.first_response_at, f.first_response_s, f.first_response_business_s, f.sla_status,
            f.resolved_at, f.reopen_count, f.agent_reply_count, f.fcr,
        )  # fmt: skip
    message_rows = {}
    for (channel, mid), m in messages.items():
        if m.sent_at is None:
            continue
        g = m.fact(channel, mid, catalog.rules)
        message_rows[(channel, mid)] = (
            g.sent_at, g.sender, g.recipients, g.readers, g.first_read_at, g.bounced,
            g.misdelivered, g.counts_for_read_rate,
        )  # fmt: skip
    return request_rows, message_rows


def sql_facts(
    con: duckdb.DuckDBPyConnection, events: list[dict[str, Any]], catalog: ChannelCatalog
) -> tuple[dict[tuple[str, str], tuple[Any, ...]], dict[tuple[str, str], tuple[Any, ...]]]:
    for table in ("raw.events", "ops.builds", "ops.build_state", "ops.offsets", "ops.loads"):
        con.execute(f"DELETE FROM {table}")
    rows = []
    for offset, event in enumerate(events):
        identified = {**event, "event_id": f"00000000-0000-4000-8000-{offset:012x}"}
        decoded = decode_record(orjson.dumps(identified), "events", 0, offset)
        assert isinstance(decoded, dict), decoded
        rows.append(decoded)
    commit_batch(con, "events", rows, 0, {0: len(rows)})
    build(con, catalog, "Europe/Berlin", now=datetime.fromtimestamp(NOW, UTC))
    requests = {
        (row[0], row[1]): row[2:]
        for row in con.execute("""
SELECT channel_id, conversation_id, request_type, category, epoch(opened_at),
       epoch(clock_start_at), epoch(deadline_at), sla_target_s, epoch(first_response_at),
       first_response_s, first_response_business_s, sla_status, epoch(resolved_at),
       reopen_count, agent_reply_count, fcr FROM core.requests""").fetchall()
    }
    messages = {
        (row[0], row[1]): row[2:]
        for row in con.execute("""
SELECT channel_id, message_id, epoch(sent_at), sender, recipients, readers,
       epoch(first_read_at), bounced, misdelivered, counts_for_read_rate
FROM core.messages""").fetchall()
    }
    return requests, messages


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_warehouse(tmp_path_factory.mktemp("rules") / "warehouse.duckdb")
    yield con
    con.close()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> ChannelCatalog:
    path = tmp_path_factory.mktemp("catalog") / "channels.toml"
    path.write_text(CATALOG)
    return ChannelCatalog.load(path)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(
        x == y or (isinstance(x, float) and isinstance(y, float) and math.isclose(x, y))
        for x, y in zip(a, b, strict=True)
    )


#: What a request or message fact can be; the generated histories must reach each.
COVERAGE = {
    "met": "sla_status = 'met'",
    "breached": "sla_status = 'breached'",
    "pending": "sla_status = 'pending'",
    "resolved at first contact": "fcr",
    "not at first contact": "NOT fcr",
    "reopened": "reopen_count > 0",
    "bot first, no clock": "clock_start_at IS NULL",
    "clock from a hand-off": "clock_start_at > opened_at",
    "answered after the horizon": "first_response_at IS NOT NULL AND first_response_s IS NULL",
    "answered, a bot too late to count": "first_response_at IS NOT NULL AND clock_start_at = opened_at "
    "AND conversation_id IN (SELECT conversation_id FROM raw.events WHERE actor_role = 'bot')",
    "business-time target": "category = 'suggestion' AND deadline_at IS NOT NULL",
}


@pytest.fixture(scope="module")
def reached() -> Iterator[Counter[str]]:
    """Counts of :data:`COVERAGE` over every history generated; checked at the end."""
    counts: Counter[str] = Counter()
    yield counts
    missing = [name for name in [*COVERAGE, "read message"] if not counts[name]]
    assert not missing, f"the generated histories never reached: {missing}"


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=histories(), seed=st.integers(0, 2**32 - 1))
def test_the_stream_rules_in_any_order_and_the_warehouse_sql_give_the_same_facts(
    warehouse: duckdb.DuckDBPyConnection,
    catalog: ChannelCatalog,
    reached: Counter[str],
    events: list[dict[str, Any]],
    seed: int,
) -> None:
    expected_requests, expected_messages = sql_facts(warehouse, events, catalog)
    for name, condition in COVERAGE.items():
        found = warehouse.execute(
            f"SELECT count(*) FROM core.requests WHERE {condition}"
        ).fetchone()
        reached[name] += found[0] if found else 0
    reached["read message"] += sum(1 for row in expected_messages.values() if row[3])
    for attempt in range(3):
        requests, messages = python_facts(events, catalog, random.Random(seed + attempt))
        assert requests.keys() == expected_requests.keys()
        for key, row in requests.items():
            assert _same(row, expected_requests[key]), (key, row, expected_requests[key])
        assert messages.keys() == expected_messages.keys()
        for key, row in messages.items():
            assert _same(row, expected_messages[key]), (key, row, expected_messages[key])
