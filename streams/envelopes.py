"""The packed topic's records: envelopes of events, and ticks.

``commpulse.events`` keeps one event per record (the log of record). The
packer reads it and writes ``commpulse.events.packed``, which the stream
worker consumes: faust handles a few thousand records a second, so each
packed record carries many events.

* An **envelope** holds events of one channel kind from one source
  partition, in source order: ``{"v": 1, "src": 3, "events": [...]}``. Each
  event is the decoded event with two additions, ``_o`` (its source offset)
  and ``_t`` (``occurred_at`` in epoch seconds), and without the fields the
  stream does not use. The key is the kind; the partition is the kind's.
* A **tick** carries the wall clock for idle-channel checks, the source
  partitions the packer reads, those it has caught up with, and those still
  delivering old events (an import of history): ``{"v": 1, "tick":
  1795292681.6, "sources": [0, 2], "assigned": [0, 1, 2, 3], "backfill":
  [2]}``. ``assigned`` and ``backfill`` may be missing (none).

Packing is deterministic per source partition, and offsets make re-packing
after a packer restart harmless: the stream applies each event at most once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ingest.deadletter import DeadLetter
from ingest.events import ChannelKind
from ingest.validation import RejectCode, Rejection

__all__ = [
    "KINDS",
    "DecodeProblem",
    "pack",
    "packed_partition",
    "slim_event",
    "tick",
    "unpack",
    "unusable_letter",
]

VERSION: Final = 1
KINDS: Final = tuple(kind.value for kind in ChannelKind)
_KIND_INDEX: Final = {kind: index for index, kind in enumerate(KINDS)}
_KEEP: Final = (
    "event_type", "channel_id", "channel_kind", "scope", "actor_id", "actor_role", "conversation_id",
    "message_id", "in_reply_to", "recipient_count", "duration_s", "planned_duration_s", "score",
    "category", "visibility",
)  # fmt: skip
_REQUIRED: Final = (
    "event_type",
    "occurred_at",
    "channel_id",
    "channel_kind",
    "scope",
    "actor_id",
    "actor_role",
)


#: what every packed event has (see :func:`slim_event`)
_EVENT_KEYS: Final = frozenset(("_o", "_t", *_REQUIRED)) - {"occurred_at"}


class DecodeProblem(ValueError):
    """A record on the events or the packed topic that the stream cannot use."""


def unusable_letter(raw: bytes, where: str, reason: str, *, by: str) -> DeadLetter:
    """The dead letter for a record the stream cannot use (the packer's on the events topic,
    the worker's on the packed topic): its bytes, the reason, and where it was."""
    return DeadLetter.of(
        raw,
        Rejection(RejectCode.MALFORMED_JSON, f"unusable record on {where}: {reason}"),
        source=f"{by}:{where}",
        received_at=datetime.now(UTC),
    )


def packed_partition(kind: str, partitions: int) -> int:
    """Where a kind's envelopes go: its own partition (12 kinds, 12 partitions by default)."""
    return _KIND_INDEX[kind] % partitions


def slim_event(value: bytes, offset: int) -> dict[str, Any]:
    """The fields the stream needs from one events-topic record, plus ``_o`` and ``_t``."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeProblem(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise DecodeProblem("not a JSON object")
    missing = [name for name in _REQUIRED if not isinstance(event.get(name), str)]
    if missing:
        raise DecodeProblem(f"missing or not text: {', '.join(missing)}")
    if event["channel_kind"] not in _KIND_INDEX:
        raise DecodeProblem(f"unknown channel_kind {event['channel_kind']!r}")
    try:
        when = datetime.fromisoformat(event["occurred_at"])
    except ValueError as exc:
        raise DecodeProblem(f"occurred_at: {exc}") from exc
    if when.tzinfo is None:
        raise DecodeProblem("occurred_at has no time zone")
    slim = {name: event[name] for name in _KEEP if event.get(name) is not None}
    slim["_o"] = offset
    slim["_t"] = when.timestamp()
    return slim


def pack(source: int, events: Sequence[Mapping[str, Any]]) -> bytes:
    return orjson.dumps({"v": VERSION, "src": source, "events": events})


def tick(
    now: float, sources: Sequence[int], assigned: Sequence[int], backfill: Sequence[int] = ()
) -> bytes:
    return orjson.dumps(
        {
            "v": VERSION,
            "tick": now,
            "sources": sorted(sources),
            "assigned": sorted(assigned),
            "backfill": sorted(backfill),
        }
    )


def unpack(value: bytes) -> dict[str, Any]:
    """A packed record's envelope or tick; :class:`DecodeProblem` if it is neither.

    Only the packer writes the packed topic, so this checks the shape, not every event.
    """
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeProblem(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise DecodeProblem(f"not a version-{VERSION} packed record")
    if "tick" in data:
        if not isinstance(data["tick"], int | float) or not _ints(data.get("sources")):
            raise DecodeProblem("a tick needs a number 'tick' and a list of 'sources'")
        for name in ("assigned", "backfill"):
            if name in data and not _ints(data[name]):
                raise DecodeProblem(f"a tick's {name!r} is not a list of partitions")
    elif not isinstance(data.get("src"), int) or not isinstance(data.get("events"), list):
        raise DecodeProblem("an envelope needs an int 'src' and a list of 'events'")
    elif not all(
        isinstance(event, dict) and _EVENT_KEYS <= event.keys() for event in data["events"]
    ):
        raise DecodeProblem(f"an envelope's events each need {', '.join(sorted(_EVENT_KEYS))}")
    return data


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, int) for item in value)
