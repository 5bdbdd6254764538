"""Validation at the ingest boundary: raw input in, an event or a rejection out.

A rejection names one of the classes in :class:`RejectCode` and gives a
readable reason; the producer sends the raw input with both to the
dead-letter topic. JSON input is validated strictly (``"3"`` is not an
integer); rows of CSV or Parquet files and Python mappings are validated in
lax mode, because CSV carries only text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ingest.events import Event

__all__ = ["EARLIEST_OCCURRED_AT", "Limits", "RejectCode", "Rejection", "Validator"]

#: Events before this are rejected as implausible (real archives from the
#: 1990s onwards are fine).
EARLIEST_OCCURRED_AT: Final = datetime(1990, 1, 1, tzinfo=UTC)


class RejectCode(StrEnum):
    """Why an input was dead-lettered, most fundamental first."""

    OVERSIZED = "oversized"
    INVALID_ENCODING = "invalid_encoding"
    MALFORMED_JSON = "malformed_json"
    MALFORMED_ROW = "malformed_row"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_FIELD = "missing_field"
    UNEXPECTED_FIELD = "unexpected_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    FUTURE_TIME = "future_time"
    TOO_OLD = "too_old"
    DUPLICATE_EVENT_ID = "duplicate_event_id"  # within one batch (Producer.send_many)


_PRIORITY: Final = {code: rank for rank, code in enumerate(RejectCode)}

_WRONG_TYPE_SUFFIXES: Final = ("_type", "_parsing")
_MAX_REASONS: Final = 5


@dataclass(frozen=True, slots=True)
class Rejection:
    code: RejectCode
    reason: str

    def __str__(self) -> str:
        return f"{self.code.value}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 64 * 1024
    future_tolerance: timedelta = timedelta(days=1)
    earliest: datetime = EARLIEST_OCCURRED_AT


def _code_for(error: ErrorDetails) -> RejectCode:
    kind, loc = error["type"], error["loc"]
    field = loc[0] if loc else None
    if kind == "json_invalid":
        return RejectCode.MALFORMED_JSON
    if not loc and kind in {"model_type", "model_attributes_type", "dict_type"}:
        return RejectCode.NOT_AN_OBJECT
    if field == "schema_version" and kind != "missing":
        return RejectCode.UNSUPPORTED_SCHEMA_VERSION
    if field == "event_type" and kind in {"enum", "literal_error"}:
        return RejectCode.UNKNOWN_EVENT_TYPE
    if kind == "missing" or kind == "missing_field":
        return RejectCode.MISSING_FIELD
    if kind == "extra_forbidden":
        return RejectCode.UNEXPECTED_FIELD
    if kind == "too_old":  # a time with no UTC instant (see Event._to_utc)
        return RejectCode.TOO_OLD
    if kind == "future_time":
        return RejectCode.FUTURE_TIME
    if kind.endswith(_WRONG_TYPE_SUFFIXES):
        return RejectCode.WRONG_TYPE
    return RejectCode.INVALID_VALUE


_PATTERN_HINTS: Final = {
    "channel_id": "must start with a letter or digit and hold only letters, digits "
    "and . _ : / + - (a channel name, not an address)",
}
_IDENTIFIER_HINT: Final = (
    "must not be blank, start or end with whitespace, or hold control characters"
)


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "string_pattern_mismatch":
        message = _PATTERN_HINTS.get(where, _IDENTIFIER_HINT)
    return f"{where}: {message}" if where else message


def rejection_from(exc: ValidationError) -> Rejection:
    """One rejection for a pydantic error: the most fundamental class, every message."""
    errors = exc.errors(include_url=False, include_input=False)
    code = min((_code_for(error) for error in errors), key=_PRIORITY.__getitem__)
    reasons = [_describe(error) for error in errors[:_MAX_REASONS]]
    if len(errors) > _MAX_REASONS:
        reasons.append(f"and {len(errors) - _MAX_REASONS} more")
    return Rejection(code, "; ".join(reasons))


class Validator:
    """Turns raw inputs into events, or into rejections with a reason."""

    def __init__(
        self, limits: Limits | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.limits = limits or Limits()
        self._clock = clock or (lambda: datetime.now(UTC))

    def oversized(self, size: int) -> Rejection | None:
        if size > self.limits.max_event_bytes:
            return Rejection(
                RejectCode.OVERSIZED,
                f"event is {size} bytes, the limit is {self.limits.max_event_bytes}",
            )
        return None

    def from_json(self, raw: bytes, context: dict[str, Any] | None = None) -> Event | Rejection:
        """Validate one JSON document (strict types); ``context`` goes to the model."""
        too_big = self.oversized(len(raw))
        if too_big:
            return too_big
        try:
            event = Event.model_validate_json(raw, strict=True, context=context)
        except ValidationError as exc:
            rejection = rejection_from(exc)
            if rejection.code is RejectCode.MALFORMED_JSON and not _is_utf8(raw):
                return Rejection(RejectCode.INVALID_ENCODING, "input is not valid UTF-8")
            return rejection
        return self.check_time(event)

    def from_mapping(
        self, data: Mapping[str, Any], context: dict[str, Any] | None = None
    ) -> Event | Rejection:
        """Validate one mapping, e.g. a CSV or Parquet row (lax types); ``context`` goes to the model."""
        try:
            event = Event.model_validate(data, context=context)
        except ValidationError as exc:
            return rejection_from(exc)
        return self.check_time(event)

    def check_time(self, event: Event) -> Event | Rejection:
        """Reject event times in the future (beyond the tolerance) or implausibly old."""
        now = self._clock()
        latest = now + self.limits.future_tolerance
        if event.occurred_at > latest:
            return Rejection(
                RejectCode.FUTURE_TIME,
                f"occurred_at {event.occurred_at.isoformat()} is more than "
                f"{_human(self.limits.future_tolerance)} after now ({now.isoformat(timespec='seconds')})",
            )
        if event.occurred_at < self.limits.earliest:
            return Rejection(
                RejectCode.TOO_OLD,
                f"occurred_at {event.occurred_at.isoformat()} is before "
                f"{self.limits.earliest.date().isoformat()}",
            )
        return event


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" + ("s" if days != 1 else "")
    return f"{seconds} s"
