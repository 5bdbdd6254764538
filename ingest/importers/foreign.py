"""What importers of foreign formats (mailbox archives, GitHub events) share.

They map their input onto canonical events themselves, so a bad input never
reaches the dead-letter topic as it was: its raw text would carry bodies,
subjects and addresses out of the importer. Instead:

* an item the importer cannot use at all (no Message-ID, not JSON, ...) goes
  to the dead-letter topic as a ``malformed_row`` whose value is only a
  pointer (importer, file:line, reason) — the original stays in the file;
* a mapped event the schema still rejects goes there *redacted*: identifying
  fields (actor, message, conversation ids) are blanked.

Event ids are :func:`stable_id`\\ s of a natural key, so importing the same
input again yields the same ids and stores nothing new downstream.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from pydantic import TypeAdapter, ValidationError

from ingest.errors import ConfigurationError, InputError
from ingest.events import ACTOR_FIELDS, JOIN_KEY_FIELDS, ChannelId, Event
from ingest.producer import Record
from ingest.validation import RejectCode, Rejection, rejection_from

__all__ = [
    "IMPORT_NAMESPACE",
    "Problem",
    "check_channel",
    "check_files",
    "event_record",
    "is_bot",
    "malformed_record",
    "stable_id",
]

#: Fixed namespace of importer event ids; changing it would change every id.
IMPORT_NAMESPACE: Final = uuid.UUID("548206b5-d3f1-4482-9c65-a5b3efdbccc9")
_REDACTED: Final = "<redacted>"
_BOT_SUFFIXES: Final = ("[bot]", "-bot")
_CHANNEL: Final[TypeAdapter[str]] = TypeAdapter(ChannelId)


@dataclass(frozen=True, slots=True)
class Problem:
    """An input item that was not imported as it is: where (``file:line``) and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def stable_id(*parts: str) -> uuid.UUID:
    """A deterministic event id (UUID 5) for a natural key."""
    return uuid.uuid5(IMPORT_NAMESPACE, "\x1f".join(parts))


def is_bot(login: str) -> bool:
    """GitHub-style bot accounts: ``name[bot]`` (apps) and ``name-bot`` (by convention)."""
    return login.lower().endswith(_BOT_SUFFIXES)


def event_record(fields: Mapping[str, Any], source: str) -> Record:
    """The event built from ``fields``, or its rejection with a redacted copy as raw input."""
    try:
        event = Event.model_validate(fields)
    except ValidationError as exc:
        return Record(rejection_from(exc), source, _redacted(fields))
    return Record(event, source, _redacted(fields))


def malformed_record(importer: str, problem: Problem) -> Record:
    """A dead-letter record that points at an unusable input item without carrying it."""
    pointer = {"importer": importer, "source": problem.source, "reason": problem.reason}
    return Record(
        Rejection(RejectCode.MALFORMED_ROW, problem.reason), problem.source, orjson.dumps(pointer)
    )


def check_channel(channel: str) -> str:
    """``channel`` if it is a valid channel id, else a :class:`ConfigurationError`."""
    try:
        return _CHANNEL.validate_python(channel)
    except ValidationError as exc:
        raise ConfigurationError(
            f"channel id {channel!r} is not valid: it must start with a letter or digit and "
            "hold only letters, digits and . _ : / + - (a channel name, not an address)"
        ) from exc


def check_files(paths: Sequence[Path]) -> int:
    """Fail early when a file cannot be read; returns their total size in bytes."""
    if not paths:
        raise InputError("no input files given")
    total = 0
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a directory; give the files in it")
        try:
            total += path.stat().st_size
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from exc
    return total


def _redacted(fields: Mapping[str, Any]) -> bytes:
    """``fields`` as JSON with every identifying value blanked."""
    hidden = {*ACTOR_FIELDS, *JOIN_KEY_FIELDS}
    safe = {
        key: _REDACTED if key in hidden and value is not None else value
        for key, value in fields.items()
    }
    return orjson.dumps(safe, default=str)
