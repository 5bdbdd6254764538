"""How an event travels on Kafka.

One event per record on ``commpulse.events``:

* key: the ``channel_id`` as UTF-8, so one channel's events stay in one
  partition, in order;
* value: the event as compact JSON (UTF-8), fields in model order, ``null``
  fields left out, ``occurred_at`` in UTC with a ``Z``;
* timestamp: ``occurred_at`` in epoch milliseconds (CreateTime), so
  time-based tools see event time.

Consumers decode with :func:`decode`, which validates strictly and raises
:class:`~ingest.errors.EventDecodeError` carrying topic, partition and offset.
"""

from __future__ import annotations

from typing import Final

from pydantic import TypeAdapter, ValidationError

from ingest.errors import EventDecodeError
from ingest.events import Event

__all__ = ["decode", "encode", "kafka_key", "timestamp_ms"]

_ADAPTER: Final = TypeAdapter(Event)


def encode(event: Event) -> bytes:
    """The record value for ``event``."""
    return _ADAPTER.dump_json(event, exclude_none=True)


def kafka_key(event: Event) -> bytes:
    return event.channel_id.encode("utf-8")


def timestamp_ms(event: Event) -> int:
    return int(event.occurred_at.timestamp() * 1000)


def decode(
    value: bytes,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> Event:
    """Parse and validate one record value; errors say where the record was."""
    try:
        return Event.model_validate_json(value, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "event"
        raise EventDecodeError(
            f"{where}: {first['msg']}", topic=topic, partition=partition, offset=offset
        ) from exc
