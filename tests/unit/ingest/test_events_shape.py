"""Pins the JSON shape of schema v1 on the wire. A failing test here means a
breaking change: add a new schema version and an upcaster instead."""

from __future__ import annotations

import orjson

from ingest import Event, decode, encode, kafka_key
from ingest.codec import timestamp_ms

FULL_V1 = (
    b'{"event_id":"0b6f8e52-6c1e-4b8e-9d51-3f0a3b9c7d21","schema_version":1,'
    b'"event_type":"ticket_replied","occurred_at":"2026-07-01T01:30:00.250000Z",'
    b'"channel_id":"ticket-support-2","channel_kind":"ticket","scope":"external",'
    b'"actor_id":"p_0123456789abcdef0123456789abcdef","actor_role":"agent",'
    b'"conversation_id":"c-77","message_id":"m-3","in_reply_to":"m-1",'
    b'"recipient_count":1,"duration_s":12.5,"planned_duration_s":10.0,"score":5,'
    b'"decision":"approved","category":"complaint","visibility":"public",'
    b'"department":"support"}'
)

V1_FIELDS = [
    "event_id", "schema_version", "event_type", "occurred_at", "channel_id", "channel_kind",
    "scope", "actor_id", "actor_role", "conversation_id", "message_id", "in_reply_to",
    "recipient_count", "duration_s", "planned_duration_s", "score", "decision", "category",
    "visibility", "department",
]  # fmt: skip


def test_v1_field_order_is_pinned() -> None:
    assert list(Event.model_fields) == V1_FIELDS


def test_full_event_round_trips_byte_for_byte() -> None:
    event = decode(FULL_V1)
    assert encode(event) == FULL_V1


def test_null_fields_are_left_out_and_times_are_utc_with_z() -> None:
    event = Event.model_validate(
        {
            "event_id": "0b6f8e52-6c1e-4b8e-9d51-3f0a3b9c7d21",
            "event_type": "message_read",
            "occurred_at": "2026-07-01T09:30:00+08:00",
            "channel_id": "im-1",
            "channel_kind": "im",
            "scope": "internal",
            "actor_id": "p_0123456789abcdef0123456789abcdef",
            "actor_role": "employee",
            "message_id": "m-1",
        }
    )
    assert encode(event) == (
        b'{"event_id":"0b6f8e52-6c1e-4b8e-9d51-3f0a3b9c7d21","schema_version":1,'
        b'"event_type":"message_read","occurred_at":"2026-07-01T01:30:00Z",'
        b'"channel_id":"im-1","channel_kind":"im","scope":"internal",'
        b'"actor_id":"p_0123456789abcdef0123456789abcdef","actor_role":"employee",'
        b'"message_id":"m-1"}'
    )


def test_kafka_key_is_the_channel_and_timestamp_is_event_time() -> None:
    event = decode(FULL_V1)
    assert kafka_key(event) == b"ticket-support-2"
    assert timestamp_ms(event) == 1782869400250


def test_encoded_json_is_plain_json() -> None:
    assert orjson.loads(encode(decode(FULL_V1)))["score"] == 5
