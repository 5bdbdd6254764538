"""Mailbox archives (mbox, e.g. a mailing list's pipermail quarters) as e-mail events.

One archive — one or more mbox files of the same list or mailbox — is one
channel of kind ``email``. Every message becomes one ``message_sent``; the
request rules (docs/importers.md) then read threads from it:

* a thread's *starter* (no parent) is sent by the ``customer``: it opens a
  request;
* a message by anyone else in that thread is sent by an ``agent``: a
  response, the earliest one the first response;
* a later message by the starter's sender is the ``customer`` again: a
  follow-up.

Threads are built across all files (replies cross quarter files), so
:meth:`MboxArchive.records` reads every file's headers first and emits after.
A message's parent is its In-Reply-To if that message was imported, else the
nearest imported ancestor named in References. A message without an imported
parent starts a thread unless it has an In-Reply-To: then its thread started
before the files, it keeps ``in_reply_to`` — so it opens no request — and its
thread is named after the earliest ancestor its References name.

Nothing but ids, times and roles leaves this module: no subject, body, name or
address (the sender's address becomes ``actor_id``, which the producer
pseudonymises, as it does every id holding an ``@``).
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Final

from ingest.errors import ConfigurationError, InputError
from ingest.events import ActorRole, ChannelKind, EventType, Scope
from ingest.importers.foreign import (
    Problem,
    check_channel,
    check_files,
    event_record,
    malformed_record,
    stable_id,
)
from ingest.importers.mailsplit import SEPARATOR, Preamble, RawMessage, envelope_time, split_mbox
from ingest.producer import Record
from ingest.validation import EARLIEST_OCCURRED_AT

__all__ = ["MboxArchive", "MboxStats", "default_channel"]

log = logging.getLogger(__name__)

_IDS: Final = re.compile(r"<([^<>]*)>")
_NAME_COMMENT: Final = re.compile(r"\s*\([^()]*\)\s*$")
_NOT_IN_CHANNEL_ID: Final = re.compile(r"[^A-Za-z0-9._:/+\-]+")
_MAX_ID: Final = 256
#: A month, then a year written with a leading zero ("Jan 0013"): the date parser reads
#: years below 100 as two-digit years (13 as 2013), whatever digits they were written with.
_PADDED_YEAR: Final = re.compile(r"[A-Za-z]\.?\s+0\d{2,}(?!\d)")


@dataclass(slots=True)
class MboxStats:
    """What an import read and built; positions are ``file:line`` of separator lines."""

    files: int = 0
    messages: int = 0  # messages found (separator lines), malformed and repeated ones too
    duplicates: int = 0  # messages whose Message-ID came earlier (the same event: not sent)
    threads: int = 0
    requests: int = 0  # threads started in the imported files
    answered: int = 0  # requests with a reply by someone other than the starter
    threads_started_earlier: int = 0  # threads whose start is not in the files
    malformed: list[Problem] = field(default_factory=list)
    from_lines: list[str] = field(default_factory=list)  # "From " body lines kept in a message
    envelope_dates: list[str] = field(default_factory=list)  # date from the separator line


@dataclass(frozen=True, slots=True)
class _Mail:
    source: str
    message_id: str
    in_reply_to: str | None  # the first id In-Reply-To names
    references: tuple[str, ...]
    sent_at: datetime
    sender: str


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a message sits in its thread."""

    conversation_id: str
    in_reply_to: str | None
    role: ActorRole


def default_channel(paths: Sequence[Path]) -> str:
    """``email:<directory name>`` of the files, which must share their directory."""
    folders = {path.resolve().parent for path in paths}
    if len(folders) != 1:
        raise ConfigurationError("the files are in different directories; give --channel")
    name = _NOT_IN_CHANNEL_ID.sub("-", folders.pop().name).strip("-._:/+")
    if not name:
        raise ConfigurationError("cannot name the channel after the directory; give --channel")
    return f"email:{name}"


class MboxArchive:
    """The messages of one list or mailbox, from one or more mbox files (``.gz`` too).

    Constructing it does no I/O; :meth:`open` checks the files; :meth:`records`
    reads every file's headers (``done`` of ``total`` bytes), then yields a
    pointer per unusable message and one record per message, by Date (file order
    among equal dates). :attr:`stats` is complete once it ends.
    """

    def __init__(
        self, paths: Sequence[Path], *, channel: str, scope: Scope = Scope.EXTERNAL
    ) -> None:
        self.paths = list(paths)
        self.channel = check_channel(channel)
        self.scope = scope
        self.done = 0
        self.total = 0
        self.stats = MboxStats(files=len(self.paths))

    @property
    def label(self) -> str:
        count = len(self.paths)
        return f"{self.channel} ({count} file{'s' if count != 1 else ''})"

    def open(self) -> None:
        """Check that every file can be read and starts like an mbox archive."""
        self.total = check_files(self.paths)
        for path in self.paths:
            try:
                with self._lines(path) as lines:
                    first = next(iter(lines), b"")
            except (OSError, EOFError) as exc:
                raise InputError(f"{path}: cannot read: {exc}") from exc
            if first.strip() and not SEPARATOR.fullmatch(first.rstrip(b"\r\n")):
                raise InputError(
                    f"{path}: not an mbox archive (the first line is no 'From ' separator line)"
                )

    def records(self) -> Iterator[Record]:
        self.stats = stats = MboxStats(files=len(self.paths))
        self.done = 0
        # First pass: every file's headers, because threads cross files.
        order: list[tuple[str, str]] = []  # (source, Message-ID) of each usable message
        mails: dict[str, _Mail] = {}
        for item in self._read_all():
            if isinstance(item, Problem):
                stats.malformed.append(item)
                continue
            if item.message_id in mails:  # an archive's repeat, or the same file twice
                stats.duplicates += 1
                continue
            mails[item.message_id] = item
            order.append((item.source, item.message_id))
        self.done = self.total

        places = _thread(mails)
        _count_threads(stats, places)
        log.info(
            "mbox channel=%s messages=%d threads=%d requests=%d malformed=%d",
            self.channel, stats.messages, stats.threads, stats.requests, len(stats.malformed),
        )  # fmt: skip
        for problem in stats.malformed:
            yield malformed_record("mbox", problem)
        # In the order the messages were written, not the archive's: an archive keeps them
        # as they arrived, hours or days after their Date at times, and the stream judges
        # lateness by event time (a message more than its grace older than the channel's
        # latest is dropped there). The sort is stable: equal dates keep file order.
        order.sort(key=lambda entry: mails[entry[1]].sent_at)
        for source, message_id in order:
            yield event_record(self._fields(mails[message_id], places[message_id]), source)

    # -- reading -----------------------------------------------------------

    def _read_all(self) -> Iterator[_Mail | Problem]:
        base = 0
        for path in self.paths:
            try:
                with self._lines(path, base) as lines:
                    for item in split_mbox(lines):
                        yield self._parse(path.name, item)
            except (OSError, EOFError) as exc:  # e.g. a truncated .gz; nothing was sent yet
                raise InputError(f"{path}: unreadable: {exc}") from exc
            base += path.stat().st_size

    @contextmanager
    def _lines(self, path: Path, base: int = 0) -> Iterator[Iterator[bytes]]:
        """The file's lines (gunzipped for ``.gz``); ``done`` follows the bytes read."""
        with path.open("rb") as raw:
            stream: IO[bytes] | gzip.GzipFile = (
                gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
            )

            def lines() -> Iterator[bytes]:
                for line in stream:
                    self.done = base + raw.tell()
                    yield line

            yield lines()

    def _parse(self, name: str, item: RawMessage | Preamble) -> _Mail | Problem:
        source = f"{name}:{item.line}"
        if isinstance(item, Preamble):
            return Problem(source, "text before the first separator line")
        self.stats.messages += 1
        self.stats.from_lines.extend(f"{name}:{line}" for line in item.from_lines)
        headers = item.headers
        message_ids = _ids(headers.get("message-id"))
        if not message_ids:
            return Problem(source, "no Message-ID")
        sender = _sender(headers.get("from"))
        if sender is None:
            return Problem(source, "no From address")
        sent_at = _header_date(headers.get("date"))
        if sent_at is None:
            sent_at = envelope_time(item.envelope_date)
            if sent_at is None:
                return Problem(source, "no usable Date, and no date on the separator line")
            self.stats.envelope_dates.append(source)
        replied = _ids(headers.get("in-reply-to"))
        return _Mail(
            source=source,
            message_id=message_ids[0],
            in_reply_to=replied[0] if replied else None,
            references=tuple(_ids(headers.get("references"))),
            sent_at=sent_at,
            sender=sender,
        )

    def _fields(self, mail: _Mail, place: _Place) -> dict[str, Any]:
        return {
            "event_id": stable_id("mbox", self.channel, mail.message_id),
            "event_type": EventType.MESSAGE_SENT,
            "occurred_at": mail.sent_at,
            "channel_id": self.channel,
            "channel_kind": ChannelKind.EMAIL,
            "scope": self.scope,
            "actor_id": mail.sender,
            "actor_role": place.role,
            "conversation_id": place.conversation_id,
            "message_id": mail.message_id,
            "in_reply_to": place.in_reply_to,
        }


# -- threads ---------------------------------------------------------------


def _thread(mails: Mapping[str, _Mail]) -> dict[str, _Place]:
    """Each message's thread, parent and role (see the module docstring)."""
    parent: dict[str, str | None] = {}
    for message_id, mail in mails.items():
        named = ([mail.in_reply_to] if mail.in_reply_to else []) + list(reversed(mail.references))
        parent[message_id] = next(
            (other for other in named if other in mails and other != message_id), None
        )
    _break_cycles(parent, mails)
    tops = _tops(parent)

    places: dict[str, _Place] = {}
    for message_id, mail in mails.items():
        top = mails[tops[message_id]]
        started_here = top.in_reply_to is None
        if started_here:
            conversation = top.message_id
            role = ActorRole.CUSTOMER if mail.sender == top.sender else ActorRole.AGENT
        else:  # the thread started before these files: its requester is unknown
            conversation = top.references[0] if top.references else top.in_reply_to or ""
            role = ActorRole.AGENT
        replied = parent[message_id]
        if replied is None and not started_here:  # a reply within a thread started earlier
            replied = mail.in_reply_to
        places[message_id] = _Place(conversation, replied, role)
    return places


def _tops(parent: Mapping[str, str | None]) -> dict[str, str]:
    """Each message's topmost imported ancestor (itself if it has no imported parent)."""
    tops: dict[str, str] = {}
    for message_id in parent:
        path, node = [], message_id
        while node not in tops and (up := parent[node]) is not None:
            path.append(node)
            node = up
        top = tops.setdefault(node, node)
        tops.update(dict.fromkeys(path, top))
    return tops


def _break_cycles(parent: dict[str, str | None], mails: Mapping[str, _Mail]) -> None:
    """Cut parent loops (bad headers) at the loop's earliest message."""
    state: dict[str, bool] = {}  # False while on the current walk, True when done
    for start in mails:
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in state:
            state[node] = False
            path.append(node)
            node = parent[node]
        if node is not None and state[node] is False:
            loop = path[path.index(node) :]
            parent[min(loop, key=lambda m: (mails[m].sent_at, m))] = None
        state.update(dict.fromkeys(path, True))


def _count_threads(stats: MboxStats, places: Mapping[str, _Place]) -> None:
    starters = {message_id for message_id, place in places.items() if place.in_reply_to is None}
    answered = {place.conversation_id for place in places.values() if place.role is ActorRole.AGENT}
    conversations = {place.conversation_id for place in places.values()}
    stats.threads = len(conversations)
    stats.requests = len(starters)
    stats.answered = len(starters & answered)
    stats.threads_started_earlier = len(conversations - starters)


# -- headers ---------------------------------------------------------------


def _ids(value: str | None) -> list[str]:
    """The message ids a header names, without angle brackets or folding whitespace."""
    if not value:
        return []
    found = ["".join(text.split()) for text in _IDS.findall(value)]
    if not found and len(value.split()) == 1:  # a bare id without brackets
        found = [value.strip()]
    return [text for text in found if text]


def _sender(value: str | None) -> str | None:
    """The sender's address (as the archive shows it), lower-cased, without a display name."""
    if not value:
        return None
    text = " ".join(value.split())
    bracketed = _IDS.search(text)
    text = bracketed[1] if bracketed else _NAME_COMMENT.sub("", text)
    text = text.strip().lower()[:_MAX_ID].strip()
    return text or None


def _header_date(value: str | None) -> datetime | None:
    """The Date header as an aware time; ``-0000`` or no zone means UTC; ``None`` if unusable."""
    if not value:
        return None
    if _PADDED_YEAR.search(value):  # before 1990, but "0013" would be read as 2013
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed if parsed >= EARLIEST_OCCURRED_AT else None
