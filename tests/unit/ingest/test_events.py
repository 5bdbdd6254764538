"""The v1 event model: every event type, its required fields, and value rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from ingest import REQUIRED_FIELDS, ChannelKind, Event, EventType
from tests.helpers import event_dict

# One value for every optional field, so that each type can be made complete.
_FILLERS = {
    "message_id": "m-9",
    "conversation_id": "c-9",
    "decision": "approved",
    "duration_s": 1800.0,
    "score": 4,
}


def complete(event_type: EventType) -> dict[str, object]:
    data = event_dict(event_type=event_type.value, message_id=None)
    for name in REQUIRED_FIELDS[event_type]:
        data[name] = _FILLERS[name]
    return data


def test_there_are_twelve_channel_kinds() -> None:
    assert {kind.value for kind in ChannelKind} == {
        "email", "im", "meeting", "announcement", "forum", "knowledge_base",
        "hotline", "live_chat", "ticket", "social", "crm", "partner_portal",
    }  # fmt: skip


def test_every_event_type_has_a_required_field_rule() -> None:
    assert set(REQUIRED_FIELDS) == set(EventType)


@pytest.mark.parametrize("event_type", list(EventType))
def test_each_type_validates_with_its_required_fields(event_type: EventType) -> None:
    event = Event.model_validate(complete(event_type))
    assert event.event_type is event_type


@pytest.mark.parametrize(
    ("event_type", "field"),
    [(event_type, field) for event_type, fields in REQUIRED_FIELDS.items() for field in fields],
)
def test_each_required_field_is_enforced(event_type: EventType, field: str) -> None:
    data = complete(event_type)
    del data[field]
    with pytest.raises(ValidationError) as caught:
        Event.model_validate(data)
    [error] = caught.value.errors()
    assert error["type"] == "missing_field"
    assert error["msg"] == f"{event_type.value} requires {field}"


def test_the_documented_examples_of_required_fields() -> None:
    assert REQUIRED_FIELDS[EventType.MESSAGE_READ] == ("message_id",)
    assert "conversation_id" in REQUIRED_FIELDS[EventType.TICKET_OPENED]
    assert REQUIRED_FIELDS[EventType.MEETING_HELD] == ("duration_s",)
    assert REQUIRED_FIELDS[EventType.SURVEY_ANSWERED] == ("score",)


@pytest.mark.parametrize("score", [0, 6, -1])
def test_survey_score_is_one_to_five(score: int) -> None:
    with pytest.raises(ValidationError):
        Event.model_validate({**complete(EventType.SURVEY_ANSWERED), "score": score})


def test_occurred_at_must_carry_a_time_zone_and_is_stored_in_utc() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Event.model_validate(event_dict(occurred_at="2026-01-05T09:00:00"))
    shanghai = timezone(timedelta(hours=8))
    event = Event.model_validate(
        event_dict(occurred_at=datetime(2026, 1, 5, 9, 0, tzinfo=shanghai))
    )
    assert event.occurred_at == datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_unknown_fields_are_forbidden_so_no_body_or_subject_can_pass() -> None:
    for field in ("body", "subject", "name", "email"):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            Event.model_validate({**event_dict(), field: "x"})


@pytest.mark.parametrize("channel_id", ["support@corp.example", " im-1", "im 1", "", "-im"])
def test_channel_ids_are_names_not_addresses(channel_id: str) -> None:
    with pytest.raises(ValidationError):
        Event.model_validate(event_dict(channel_id=channel_id))


def test_events_are_frozen() -> None:
    event = Event.model_validate(event_dict())
    with pytest.raises(ValidationError):
        event.actor_id = "someone else"  # type: ignore[misc]


def test_schema_version_is_one() -> None:
    assert Event.model_validate(event_dict()).schema_version == 1
    with pytest.raises(ValidationError):
        Event.model_validate(event_dict(schema_version=2))
