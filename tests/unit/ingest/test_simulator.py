"""The workload simulator: exact counts, valid events, time order, determinism,
and the phenomena the KPIs need (breaches, late reads, reopens, idle channels)."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ingest.errors import ConfigurationError
from ingest.events import ChannelKind, Event, EventType, Scope
from ingest.simulator import SimulationConfig, simulate

END = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
DAYS = 90
SHANGHAI = ZoneInfo("Asia/Shanghai")
ENUM_FIELDS = (
    "event_type",
    "channel_kind",
    "scope",
    "actor_role",
    "decision",
    "category",
    "visibility",
)


def run(events: int, **overrides: Any) -> list[dict[str, Any]]:
    return list(simulate(SimulationConfig(events=events, **({"end": END} | overrides))))


@pytest.fixture(scope="module")
def quarter() -> list[dict[str, Any]]:
    """A default quarter with 50,000 events."""
    return run(50_000, seed=7)


@pytest.fixture(scope="module")
def small() -> list[dict[str, Any]]:
    return run(5_000, seed=7)


def by_type(events: list[dict[str, Any]], event_type: EventType) -> list[dict[str, Any]]:
    return [event for event in events if event["event_type"] == event_type.value]


def in_working_time(moment: datetime, zone: ZoneInfo = SHANGHAI) -> bool:
    local = moment.astimezone(zone)
    hour = local.hour + local.minute / 60
    return local.weekday() < 5 and (9 <= hour < 12 or 13.5 <= hour < 18)


@pytest.mark.parametrize("count", [0, 1, 7, 5000])
def test_yields_exactly_the_number_of_events_asked_for(count: int) -> None:
    events = run(count)

    assert len(events) == count
    for event in events:
        Event.model_validate(event)


@pytest.mark.parametrize("days", [1, 2])
def test_exact_even_when_the_span_is_short_and_busy(days: int) -> None:
    events = run(3000, days=days)

    assert len(events) == 3000
    assert all(END - timedelta(days=days) < event["occurred_at"] <= END for event in events)


def test_every_event_is_valid_and_raw(quarter: list[dict[str, Any]]) -> None:
    for event in quarter:
        Event.model_validate(event)
        assert None not in event.values()
        assert all(
            type(event[name]) is str for name in ENUM_FIELDS if name in event
        )  # values, not enums
        assert type(event["event_id"]) is str
        assert event["occurred_at"].utcoffset() == timedelta(0)
        assert "@" not in event["channel_id"]
    actors = {event["actor_id"] for event in quarter}
    assert any("@corp.example" in actor for actor in actors)  # raw, to be pseudonymised downstream
    assert any(actor.startswith("cust-") for actor in actors)
    assert any(actor.startswith("partner-") for actor in actors)
    assert any(actor.startswith("bot-") for actor in actors)


def test_events_are_in_time_order_within_the_span(quarter: list[dict[str, Any]]) -> None:
    times = [event["occurred_at"] for event in quarter]

    assert times == sorted(times)
    assert END - timedelta(days=DAYS) < times[0]
    assert times[-1] <= END


def test_event_ids_are_unique_version_4_uuids(quarter: list[dict[str, Any]]) -> None:
    ids = [event["event_id"] for event in quarter]

    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(event_id).version for event_id in ids} == {4}


def test_same_config_same_events_and_other_seed_other_events(small: list[dict[str, Any]]) -> None:
    assert run(5_000, seed=7) == small
    other = run(5_000, seed=8)
    assert [e["event_id"] for e in other] != [e["event_id"] for e in small]
    assert [e["actor_id"] for e in other] != [e["actor_id"] for e in small]


def test_channels_depend_on_the_seed_not_on_the_number_of_events(
    small: list[dict[str, Any]], quarter: list[dict[str, Any]]
) -> None:
    threads = {(e["channel_id"], e["conversation_id"]) for e in small if "conversation_id" in e}
    threads_per_channel = Counter(channel for channel, _ in threads)
    busy_in_small = {channel for channel, count in threads_per_channel.items() if count >= 3}
    in_quarter = {event["channel_id"] for event in quarter}
    other_seed = {event["channel_id"] for event in run(50_000, seed=8)}

    assert busy_in_small <= in_quarter
    assert other_seed != in_quarter


def test_a_mid_size_organisation_on_all_kinds_of_channel(
    small: list[dict[str, Any]], quarter: list[dict[str, Any]]
) -> None:
    assert {event["channel_kind"] for event in small} == {kind.value for kind in ChannelKind}
    assert {event["scope"] for event in small} == {scope.value for scope in Scope}
    assert len({event["channel_id"] for event in quarter}) >= 200
    internal_tickets = {
        e["category"] for e in by_type(quarter, EventType.TICKET_OPENED) if e["scope"] == "internal"
    }
    assert internal_tickets == {"suggestion", "cross_department"}
    employees = {e["actor_id"] for e in quarter if e["actor_role"] == "employee"}
    agents = {e["actor_id"] for e in quarter if e["actor_role"] == "agent"}
    assert len(employees) >= 300
    assert len(agents) >= 24
    assert all(
        "department" in e
        for e in quarter
        if e["scope"] == "internal" and e["actor_role"] == "employee"
    )


def test_most_activity_is_in_working_hours_but_not_all(quarter: list[dict[str, Any]]) -> None:
    share = sum(in_working_time(event["occurred_at"]) for event in quarter) / len(quarter)

    assert 0.6 < share < 0.95


def test_working_hours_follow_the_configured_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    events = run(5_000, timezone="Europe/Berlin")

    in_berlin_hours = sum(in_working_time(event["occurred_at"], berlin) for event in events) / len(
        events
    )
    in_shanghai_hours = sum(in_working_time(event["occurred_at"]) for event in events) / len(events)
    assert in_berlin_hours > 0.6
    assert in_shanghai_hours < 0.4


def test_requests_are_opened_before_anything_happens_to_them(quarter: list[dict[str, Any]]) -> None:
    opened: set[str] = set()
    orphans = []
    for event in quarter:
        kind = event["event_type"]
        opening_message = (
            kind == "message_sent" and "in_reply_to" not in event and event["scope"] == "external"
        )
        follows = kind.startswith("ticket_") or kind == "call_answered"
        if kind in ("ticket_opened", "call_received") or opening_message:
            opened.add(event["conversation_id"])
        elif follows and event["conversation_id"] not in opened:
            orphans.append(event)
    assert orphans == []


def test_reads_and_replies_refer_to_earlier_messages(quarter: list[dict[str, Any]]) -> None:
    sent: dict[str, str] = {}  # message id -> conversation
    for event in quarter:
        kind = event["event_type"]
        if kind in ("message_read", "message_bounced", "message_misdelivered"):
            assert event["message_id"] in sent, event
        if kind == "message_sent" and "in_reply_to" in event:
            assert sent.get(event["in_reply_to"]) == event["conversation_id"], event
        if kind in ("message_sent", "post_submitted"):
            sent[event["message_id"]] = event["conversation_id"]


def test_request_lifecycles_have_the_phenomena_kpis_need(quarter: list[dict[str, Any]]) -> None:
    replies = by_type(quarter, EventType.TICKET_REPLIED)
    assert any(e["actor_role"] == "bot" for e in replies)
    assert any(e["visibility"] == "internal" and e["actor_role"] == "agent" for e in replies)
    assert any(e["actor_role"] == "customer" for e in replies)  # follow-ups
    assert by_type(quarter, EventType.TICKET_HANDED_OFF)
    assert by_type(quarter, EventType.TICKET_REOPENED)
    assert any(e["actor_role"] == "bot" for e in by_type(quarter, EventType.MESSAGE_SENT))

    opened = {
        e["conversation_id"]: e["occurred_at"] for e in by_type(quarter, EventType.TICKET_OPENED)
    }
    first_response: dict[str, datetime] = {}
    for e in replies:
        if e["actor_role"] in ("agent", "employee") and e["visibility"] == "public":
            first_response.setdefault(e["conversation_id"], e["occurred_at"])
    waits = [first_response[c] - opened[c] for c in first_response]
    breached = sum(wait > timedelta(hours=2) for wait in waits)
    assert 0.1 * len(waits) < breached < 0.7 * len(waits)
    assert len(first_response) < len(opened)  # some still pending at the end

    resolved = {e["conversation_id"] for e in by_type(quarter, EventType.TICKET_RESOLVED)}
    one_reply = Counter(e["conversation_id"] for e in replies
                        if e["actor_role"] == "agent" and e["visibility"] == "public")  # fmt: skip
    assert any(one_reply[c] == 1 for c in resolved & opened.keys())  # first-contact resolutions
    assert any(one_reply[c] > 1 for c in resolved & opened.keys())


def test_hotline_calls_are_mostly_answered_within_a_minute(quarter: list[dict[str, Any]]) -> None:
    received = {
        e["conversation_id"]: e["occurred_at"] for e in by_type(quarter, EventType.CALL_RECEIVED)
    }
    answered = by_type(quarter, EventType.CALL_ANSWERED)
    waits = [e["occurred_at"] - received[e["conversation_id"]] for e in answered]

    assert all(e["duration_s"] > 0 for e in answered)
    assert sum(wait <= timedelta(seconds=60) for wait in waits) > 0.6 * len(waits)
    assert any(wait > timedelta(seconds=60) for wait in waits)
    assert len(answered) < len(received)  # abandoned calls


def test_surveys_score_one_to_five_mostly_four_or_five(quarter: list[dict[str, Any]]) -> None:
    scores = Counter(e["score"] for e in by_type(quarter, EventType.SURVEY_ANSWERED))

    assert set(scores) == {1, 2, 3, 4, 5}
    assert scores[4] + scores[5] > 0.6 * scores.total()


def test_messages_are_read_late_or_never(quarter: list[dict[str, Any]]) -> None:
    sent = {
        e["message_id"]: e for e in quarter if e["event_type"] in ("message_sent", "post_submitted")
    }
    reads = by_type(quarter, EventType.MESSAGE_READ)
    late = [
        e
        for e in reads
        if e["occurred_at"] - sent[e["message_id"]]["occurred_at"] > timedelta(hours=24)
    ]
    readers: dict[str, set[str]] = defaultdict(set)
    for e in reads:
        readers[e["message_id"]].add(e["actor_id"])

    assert late
    assert len(late) < 0.3 * len(reads)
    assert all(
        len(readers[m]) <= e["recipient_count"] for m, e in sent.items() if "recipient_count" in e
    )
    unread = [
        m
        for m, e in sent.items()
        if e["channel_kind"] == "email" and e["recipient_count"] > len(readers[m])
    ]
    assert unread
    assert by_type(quarter, EventType.MESSAGE_BOUNCED)


def test_announcements_reach_hundreds_without_dominating(quarter: list[dict[str, Any]]) -> None:
    announcements = [e for e in quarter if e["channel_kind"] == "announcement"]
    recipients = [e["recipient_count"] for e in announcements if e["event_type"] == "message_sent"]

    assert recipients
    assert all(200 <= count <= 2000 for count in recipients)
    assert len(announcements) < 0.15 * len(quarter)


def test_meetings_posts_and_reviews(quarter: list[dict[str, Any]]) -> None:
    meetings = by_type(quarter, EventType.MEETING_HELD)
    overruns = sum(e["duration_s"] > e["planned_duration_s"] for e in meetings)
    decisions = {e["decision"] for e in by_type(quarter, EventType.POST_REVIEWED)}

    assert 0.1 * len(meetings) < overruns < 0.35 * len(meetings)
    assert decisions == {"approved", "rejected", "changes_requested"}
    assert {e["channel_kind"] for e in by_type(quarter, EventType.POST_SUBMITTED)} == {
        "forum",
        "knowledge_base",
    }


def test_channels_are_created_archived_and_go_idle(quarter: list[dict[str, Any]]) -> None:
    created = {
        e["channel_id"]: e["occurred_at"] for e in by_type(quarter, EventType.CHANNEL_CREATED)
    }
    archived = {
        e["channel_id"]: e["occurred_at"] for e in by_type(quarter, EventType.CHANNEL_ARCHIVED)
    }
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    counts: Counter[str] = Counter()
    for e in quarter:
        first.setdefault(e["channel_id"], e["occurred_at"])
        last[e["channel_id"]] = e["occurred_at"]
        counts[e["channel_id"]] += 1

    assert created
    assert archived
    assert all(first[channel] == at for channel, at in created.items())
    assert all(last[channel] == at for channel, at in archived.items())
    quiet_since = END - timedelta(days=0.2 * DAYS)
    idle = [c for c in counts if counts[c] >= 100 and last[c] < quiet_since and c not in archived]
    assert idle


def test_the_generator_is_lazy() -> None:
    events = simulate(SimulationConfig(events=10_000_000, end=END))

    Event.model_validate(next(events))


def test_default_end_is_now() -> None:
    before = datetime.now(UTC)
    events = run(50, end=None)

    assert all(
        before - timedelta(days=DAYS) < e["occurred_at"] <= datetime.now(UTC) for e in events
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"events": -1},
        {"days": 0},
        {"end": datetime(2026, 1, 1)},  # naive
        {"timezone": "Mars/Olympus_Mons"},
    ],
)
def test_invalid_configs_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SimulationConfig(**({"events": 10} | overrides))
