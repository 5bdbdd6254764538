"""One bad input per rejection class that JSON input can have, for ingest tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from ingest import RejectCode
from tests.helpers import event_dict


def invalid_lines(n: int) -> list[tuple[RejectCode, bytes]]:
    """``n`` invalid JSON lines (no newlines inside), cycling through every class."""
    far_future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    makers = {
        RejectCode.MALFORMED_JSON: lambda i: b'{"event_id": "' + str(i).encode(),
        RejectCode.INVALID_ENCODING: lambda i: b'{"event_id": "\xff\xfe' + str(i).encode() + b'"}',
        RejectCode.NOT_AN_OBJECT: lambda i: orjson.dumps([i, "an array"]),
        RejectCode.UNSUPPORTED_SCHEMA_VERSION: lambda i: orjson.dumps(
            event_dict(10_000 + i, schema_version=9)
        ),
        RejectCode.UNKNOWN_EVENT_TYPE: lambda i: orjson.dumps(
            event_dict(10_000 + i, event_type="fax_sent")
        ),
        RejectCode.MISSING_FIELD: lambda i: orjson.dumps(event_dict(10_000 + i, message_id=None)),
        RejectCode.UNEXPECTED_FIELD: lambda i: orjson.dumps(
            event_dict(10_000 + i, body="hi Bob, ...")
        ),
        RejectCode.WRONG_TYPE: lambda i: orjson.dumps(
            event_dict(10_000 + i, recipient_count="many")
        ),
        RejectCode.INVALID_VALUE: lambda i: orjson.dumps(
            event_dict(10_000 + i, channel_kind="carrier_pigeon")
        ),
        RejectCode.FUTURE_TIME: lambda i: orjson.dumps(
            event_dict(10_000 + i, occurred_at=far_future)
        ),
        RejectCode.TOO_OLD: lambda i: orjson.dumps(
            event_dict(10_000 + i, occurred_at="1985-03-01T00:00:00Z")
        ),
        RejectCode.OVERSIZED: lambda i: orjson.dumps(
            event_dict(10_000 + i, department="x" * 70_000)
        ),
    }
    classes = list(makers)
    return [(classes[i % len(classes)], makers[classes[i % len(classes)]](i)) for i in range(n)]


def valid_lines(n: int, *, start: int = 0) -> list[bytes]:
    """``n`` valid events of several types (distinct ids from ``start``)."""
    lines = []
    for i in range(start, start + n):
        kind = i % 4
        if kind == 0:
            data = event_dict(i)
        elif kind == 1:
            data = event_dict(
                i, event_type="message_sent", recipient_count=3, actor_id=f"user{i}@corp.example"
            )
        elif kind == 2:
            data = event_dict(
                i, event_type="ticket_opened", channel_id="ticket-1", channel_kind="ticket", scope="external",
                actor_role="customer", conversation_id=f"c-{i}", message_id=None,
            )  # fmt: skip
        else:
            data = event_dict(
                i,
                event_type="meeting_held",
                channel_kind="meeting",
                duration_s=1800.0,
                message_id=None,
            )
        lines.append(orjson.dumps(data))
    return lines
