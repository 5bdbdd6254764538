"""Builders shared by the tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

#: A fixed "now" for tests that must not depend on the clock.
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

_BASE: dict[str, Any] = {
    "schema_version": 1,
    "event_type": "message_read",
    "channel_id": "im-eng-01",
    "channel_kind": "im",
    "scope": "internal",
    "actor_id": "alice@corp.example",
    "actor_role": "employee",
    "message_id": "m-1",
}


def event_dict(n: int = 0, *, when: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid raw event (JSON-ready: strings, not datetimes), deterministic for ``n``."""
    occurred = when or (NOW - timedelta(hours=1) + timedelta(seconds=n))
    data = {
        **_BASE,
        "event_id": str(uuid.UUID(int=n + 1, version=4)),
        "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
        **overrides,
    }
    return {key: value for key, value in data.items() if value is not None}


def event_json(n: int = 0, **overrides: Any) -> bytes:
    return orjson.dumps(event_dict(n, **overrides))
