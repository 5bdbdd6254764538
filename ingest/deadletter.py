"""The dead-letter record format of ``commpulse.events.dlq``.

The record value is the raw input, byte for byte (cut at
:data:`MAX_RAW_BYTES` so that a huge input still fits in a Kafka record; the
original size is kept). Everything else travels in headers:

=========================  =====================================================
header                     value
=========================  =====================================================
``commpulse.error``        the rejection class, e.g. ``missing_field``
``commpulse.reason``       a readable reason
``commpulse.source``       where the input came from, e.g. ``http``, ``events.csv:17``
``commpulse.received_at``  when ingest saw it (ISO 8601, UTC)
``commpulse.raw_size``     size of the raw input in bytes
``commpulse.truncated``    ``true`` when the value holds only the first bytes
=========================  =====================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ingest.validation import RejectCode, Rejection

__all__ = ["MAX_RAW_BYTES", "DeadLetter"]

MAX_RAW_BYTES: Final = 512 * 1024
_P: Final = "commpulse."


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    rejection: Rejection
    source: str
    received_at: datetime
    raw_size: int
    truncated: bool = False

    @classmethod
    def of(
        cls, raw: bytes, rejection: Rejection, *, source: str, received_at: datetime
    ) -> DeadLetter:
        return cls(
            raw=raw[:MAX_RAW_BYTES],
            rejection=rejection,
            source=source,
            received_at=received_at,
            raw_size=len(raw),
            truncated=len(raw) > MAX_RAW_BYTES,
        )

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (_P + "error", self.rejection.code.value.encode()),
            (_P + "reason", self.rejection.reason.encode("utf-8", "replace")),
            (_P + "source", self.source.encode("utf-8", "replace")),
            (_P + "received_at", self.received_at.isoformat().encode()),
            (_P + "raw_size", str(self.raw_size).encode()),
            (_P + "truncated", b"true" if self.truncated else b"false"),
        ]

    @classmethod
    def from_record(cls, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> DeadLetter:
        """Read a dead-letter record back (for tools and tests)."""
        h = {
            key.removeprefix(_P): raw.decode("utf-8") for key, raw in headers if key.startswith(_P)
        }
        return cls(
            raw=value or b"",
            rejection=Rejection(RejectCode(h["error"]), h["reason"]),
            source=h["source"],
            received_at=datetime.fromisoformat(h["received_at"]),
            raw_size=int(h["raw_size"]),
            truncated=h["truncated"] == "true",
        )
