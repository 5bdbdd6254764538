"""GH Archive hourly files (``YYYY-MM-DD-H.json.gz``) as ticket events.

Each repository is one channel of kind ``ticket``, scope ``external``, named
``gh:<owner>/<repo>``; an issue or pull request is one conversation,
``gh:<owner>/<repo>#<number>`` (issues and pull requests share the numbers).

============================================  ====================  =====================
GitHub event                                  becomes               actor role
============================================  ====================  =====================
IssuesEvent ``opened``                        ``ticket_opened``     customer
IssuesEvent ``closed``                        ``ticket_resolved``   agent; customer if
                                                                    the author closed it
IssuesEvent ``reopened``                      ``ticket_reopened``   agent; customer if
                                                                    the author reopened it
IssueCommentEvent ``created``                 ``ticket_replied``    agent (a response);
                                              (public)              customer if by the
                                                                    issue's author
PullRequestEvent ``opened``                   ``post_submitted``    customer
PullRequestReviewCommentEvent ``created``     ``post_reviewed``     agent
                                              (changes_requested)
... by the pull request's author              ``ticket_replied``    customer (follow-up)
============================================  ====================  =====================

Bots (logins ending in ``[bot]`` or ``-bot``) get the role ``bot`` whatever
they do. Every other event type or action is skipped and counted per
``type/action``; an event of one of the types above without an action cannot
be told apart and is malformed, as is one without what its mapping needs.
Logins are the actor ids (the producer pseudonymises them); no title, body or
name is read into an event, and no login goes anywhere but ``actor_id`` —
except that a repository's public name, which holds its owner's login, names
the channel.
"""

from __future__ import annotations

import gzip
import logging
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson

from ingest.errors import ConfigurationError, InputError
from ingest.events import ActorRole, ChannelKind, Decision, EventType, Scope, Visibility
from ingest.importers.foreign import (
    Problem,
    check_channel,
    check_files,
    event_record,
    is_bot,
    malformed_record,
    stable_id,
)
from ingest.producer import Record

__all__ = ["GhArchive", "GhArchiveStats"]

log = logging.getLogger(__name__)

_REQUESTS: Final = ("ticket_opened/", "post_submitted/")


@dataclass(slots=True)
class GhArchiveStats:
    """What an import read: GitHub events by what they became, skipped or malformed."""

    files: int = 0
    events: int = 0  # GitHub events (lines) read
    #: ``(GitHub type/action, event_type/actor_role)`` → how many
    mapped: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # by GitHub ``type/action``
    malformed: list[Problem] = field(default_factory=list)
    repositories: set[str] = field(default_factory=set)
    repeated: int = 0  # events whose GitHub id came earlier (the same file twice): not sent

    @property
    def requests(self) -> int:
        """Requests opened: issues opened and pull requests submitted."""
        return sum(n for (_, made), n in self.mapped.items() if made.startswith(_REQUESTS))


class _Malformed(Exception):
    """A GitHub event lacks something its mapping needs."""


class GhArchive:
    """GitHub events from GH Archive files (gzip JSON lines; plain ``.json`` too).

    Constructing it does no I/O; :meth:`open` checks the files; :meth:`records`
    streams them (``done`` of ``total`` bytes). :attr:`stats` is complete once
    it ends.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.done = 0
        self.total = 0
        self.stats = GhArchiveStats(files=len(self.paths))
        self._seen: set[uuid.UUID] = set()  # event ids sent by this run

    @property
    def label(self) -> str:
        count = len(self.paths)
        return f"gharchive ({count} file{'s' if count != 1 else ''})"

    def open(self) -> None:
        """Check that every file can be read (and unzipped)."""
        self.total = check_files(self.paths)
        for path in self.paths:
            try:
                with path.open("rb") as raw, self._unzipped(path, raw) as lines:
                    lines.readline()
            except (OSError, EOFError) as exc:
                raise InputError(f"{path}: cannot read: {exc}") from exc

    def records(self) -> Iterator[Record]:
        self.stats = GhArchiveStats(files=len(self.paths))
        self._seen = set()
        base = 0
        for path in self.paths:
            number = 0
            with path.open("rb") as raw, self._unzipped(path, raw) as lines:
                try:
                    for number, line in enumerate(lines, start=1):
                        self.done = base + raw.tell()
                        if line.strip():
                            record = self._record(line, f"{path.name}:{number}")
                            if record is not None:
                                yield record
                except (OSError, EOFError):  # a truncated or corrupt .gz: keep what was read
                    self.stats.events += 1  # the line it broke in: read, and reported malformed
                    yield self._malformed(f"{path.name}:{number + 1}", "file ends unreadably here")
            base += path.stat().st_size
        self.done = self.total
        log.info(
            "gharchive events=%d mapped=%d skipped=%d malformed=%d",
            self.stats.events, self.stats.mapped.total(), self.stats.skipped.total(),
            len(self.stats.malformed),
        )  # fmt: skip

    @staticmethod
    def _unzipped(path: Path, raw: IO[bytes]) -> IO[bytes] | gzip.GzipFile:
        return gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw

    def _record(self, line: bytes, source: str) -> Record | None:
        self.stats.events += 1
        try:
            item = orjson.loads(line)
            if not isinstance(item, dict):
                raise _Malformed("not a JSON object")
            fields = _map(item)
        except orjson.JSONDecodeError:
            return self._malformed(source, "not JSON")
        except _Malformed as exc:
            return self._malformed(source, str(exc))
        kind = _kind(item)
        if fields is None:
            self.stats.skipped[kind] += 1
            return None
        if fields["event_id"] in self._seen:
            self.stats.repeated += 1
            return None
        self._seen.add(fields["event_id"])
        self.stats.mapped[kind, f"{fields['event_type']}/{fields['actor_role']}"] += 1
        self.stats.repositories.add(fields["channel_id"])
        return event_record(fields, source)

    def _malformed(self, source: str, reason: str) -> Record:
        problem = Problem(source, reason)
        self.stats.malformed.append(problem)
        return malformed_record("gharchive", problem)


# -- mapping ---------------------------------------------------------------

_MAPPING: Final = {
    ("IssuesEvent", "opened"): EventType.TICKET_OPENED,
    ("IssuesEvent", "closed"): EventType.TICKET_RESOLVED,
    ("IssuesEvent", "reopened"): EventType.TICKET_REOPENED,
    ("IssueCommentEvent", "created"): EventType.TICKET_REPLIED,
    ("PullRequestEvent", "opened"): EventType.POST_SUBMITTED,
    ("PullRequestReviewCommentEvent", "created"): EventType.POST_REVIEWED,
}
_MAPPED_TYPES: Final = frozenset(kind for kind, _ in _MAPPING)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MAX_KIND: Final = 100  # characters of a skipped event's type/action shown
_OPENINGS: Final = (EventType.TICKET_OPENED, EventType.POST_SUBMITTED)


def _map(item: dict[str, Any]) -> dict[str, Any] | None:
    """The canonical event fields for a GitHub event, or ``None`` if it maps to nothing."""
    kind, action = item.get("type"), _action(item)
    if kind in _MAPPED_TYPES and action is None:  # which action decides whether it maps
        raise _Malformed("no payload.action")
    made = _MAPPING.get((kind, action)) if isinstance(kind, str) and action else None
    if made is None:
        return None
    login = _text(item, "actor", "login")
    subject = (
        "pull_request" if made in (EventType.POST_SUBMITTED, EventType.POST_REVIEWED) else "issue"
    )
    by_author = login == _text(item, "payload", subject, "user", "login")
    number = _number(item["payload"], subject)
    if made is EventType.POST_REVIEWED and by_author:  # the author answers a review
        made = EventType.TICKET_REPLIED
    role = ActorRole.CUSTOMER if by_author or made in _OPENINGS else ActorRole.AGENT
    repository = _text(item, "repo", "name")
    channel = f"gh:{repository}"
    try:
        check_channel(channel)
    except ConfigurationError as exc:
        raise _Malformed("repo.name is not usable as a channel id") from exc
    fields: dict[str, Any] = {
        "event_id": stable_id("gharchive", _event_id(item), made.value),
        "event_type": made,
        "occurred_at": _time(item),
        "channel_id": channel,
        "channel_kind": ChannelKind.TICKET,
        "scope": Scope.EXTERNAL,
        "actor_id": login,
        "actor_role": ActorRole.BOT if is_bot(login) else role,
        "conversation_id": f"{channel}#{number}",
    }
    if made is EventType.TICKET_REPLIED:
        fields["visibility"] = Visibility.PUBLIC
    elif made is EventType.POST_REVIEWED:
        # A line comment on a diff asks for a change or questions it; GitHub (before
        # 2016) had no review verdicts, so this is the closest decision.
        fields["decision"] = Decision.CHANGES_REQUESTED
    return fields


def _action(item: dict[str, Any]) -> str | None:
    payload = item.get("payload")
    action = payload.get("action") if isinstance(payload, dict) else None
    return action if isinstance(action, str) and action else None


def _kind(item: dict[str, Any]) -> str:
    """``type/action`` (``type`` alone if it has no action), for counting and printing.

    Both come from the file and the counts are printed: control characters (a
    terminal's escape sequences) are replaced, and a long label is cut short.
    """
    kind, action = item.get("type"), _action(item)
    kind = kind if isinstance(kind, str) and kind else "(no type)"
    label = _CONTROL.sub("\ufffd", f"{kind}/{action}" if action else kind)
    return label if len(label) <= _MAX_KIND else label[: _MAX_KIND - 1] + "\u2026"


def _event_id(item: dict[str, Any]) -> str:
    value = item.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(item, "id")


def _time(item: dict[str, Any]) -> datetime:
    try:
        occurred_at = datetime.fromisoformat(_text(item, "created_at"))
    except ValueError as exc:
        raise _Malformed("created_at is not an ISO 8601 time") from exc
    if occurred_at.tzinfo is None:
        raise _Malformed("created_at has no time zone")
    return occurred_at


def _text(item: dict[str, Any], *keys: str) -> str:
    value: Any = item
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        raise _Malformed(f"no {'.'.join(keys)}")
    return value


def _number(payload: dict[str, Any], key: str) -> int:
    container = payload.get(key)
    value = container.get("number") if isinstance(container, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"no payload.{key}.number")
    return value
