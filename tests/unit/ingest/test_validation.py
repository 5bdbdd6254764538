"""Every rejection class, produced by a representative input."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from ingest import Event, Limits, RejectCode, Rejection, Validator
from tests.helpers import NOW, event_dict, event_json

validator = Validator(clock=lambda: NOW)


def rejected(raw: bytes) -> Rejection:
    outcome = validator.from_json(raw)
    assert isinstance(outcome, Rejection), outcome
    return outcome


@pytest.mark.parametrize(
    ("raw", "code", "reason"),
    [
        (b'{"event_id": ', RejectCode.MALFORMED_JSON, "Invalid JSON"),
        (b"\xff\xfe{}", RejectCode.INVALID_ENCODING, "not valid UTF-8"),
        (b"[1, 2]", RejectCode.NOT_AN_OBJECT, "object"),
        (b'"text"', RejectCode.NOT_AN_OBJECT, "object"),
        (
            event_json(event_type="message_teleported"),
            RejectCode.UNKNOWN_EVENT_TYPE,
            "event_type: Input should be",
        ),
        (event_json(message_id=None), RejectCode.MISSING_FIELD, "message_read requires message_id"),
        (event_json(channel_kind=None), RejectCode.MISSING_FIELD, "channel_kind: Field required"),
        (
            event_json(body="hello"),
            RejectCode.UNEXPECTED_FIELD,
            "body: Extra inputs are not permitted",
        ),
        (
            event_json(recipient_count="12"),
            RejectCode.WRONG_TYPE,
            "recipient_count: Input should be a valid integer",
        ),
        (event_json(occurred_at=12345), RejectCode.WRONG_TYPE, "occurred_at"),
        (event_json(event_id="not-a-uuid"), RejectCode.WRONG_TYPE, "event_id"),
        (event_json(channel_kind="pigeon"), RejectCode.INVALID_VALUE, "channel_kind"),
        (event_json(occurred_at="2026-01-01T10:00:00"), RejectCode.INVALID_VALUE, "timezone"),
        (event_json(channel_id="help@corp.example"), RejectCode.INVALID_VALUE, "not an address"),
        (event_json(schema_version=2), RejectCode.UNSUPPORTED_SCHEMA_VERSION, "schema_version"),
        (
            event_json(occurred_at="2026-11-23T12:00:01Z"),
            RejectCode.FUTURE_TIME,
            "more than 1 day after now",
        ),
        (event_json(occurred_at="1989-12-31T23:59:59Z"), RejectCode.TOO_OLD, "before 1990-01-01"),
        (b"[" * 5000, RejectCode.MALFORMED_JSON, "recursion limit"),
    ],
)
def test_rejection_classes(raw: bytes, code: RejectCode, reason: str) -> None:
    rejection = rejected(raw)
    assert rejection.code is code
    assert reason in rejection.reason


def test_oversized_input_is_rejected_before_parsing() -> None:
    small = Validator(Limits(max_event_bytes=1000), clock=lambda: NOW)
    rejection = small.from_json(b"{" + b" " * 2000 + b"}")
    assert rejection == Rejection(RejectCode.OVERSIZED, "event is 2002 bytes, the limit is 1000")


def test_the_most_fundamental_class_wins_and_all_reasons_are_kept() -> None:
    rejection = rejected(event_json(event_type="nope", recipient_count="x", body="b"))
    assert rejection.code is RejectCode.UNKNOWN_EVENT_TYPE
    assert "recipient_count" in rejection.reason and "body" in rejection.reason


def test_reasons_do_not_echo_input_values() -> None:
    rejection = rejected(event_json(recipient_count="secret-value-123"))
    assert "secret-value-123" not in rejection.reason


def test_real_history_from_2013_is_accepted() -> None:
    event = validator.from_json(event_json(occurred_at="2013-05-17T08:00:00Z"))
    assert isinstance(event, Event)


def test_up_to_one_day_in_the_future_is_accepted() -> None:
    edge = (NOW + timedelta(days=1)).isoformat()
    assert isinstance(validator.from_json(event_json(occurred_at=edge)), Event)


def test_json_is_strict_but_rows_are_lax() -> None:
    # CSV cells are text: "12" must become 12 there, but JSON must carry a number.
    assert rejected(event_json(recipient_count="12")).code is RejectCode.WRONG_TYPE
    row = event_dict(recipient_count="12", event_type="message_sent")
    event = validator.from_mapping(row)
    assert isinstance(event, Event) and event.recipient_count == 12


def test_valid_json_gives_the_event() -> None:
    data = event_dict(7)
    event = validator.from_json(orjson.dumps(data))
    assert isinstance(event, Event)
    assert str(event.event_id) == data["event_id"]
