"""Hypothesis strategies for hostile GH Archive hours and mbox archives, with what each must give.

The importers of foreign formats (docs/importers.md) map their input themselves,
so what a hostile item must give differs from tests/hostile.py's canonical
events. An item becomes an event (:class:`Sent`; the producer may still reject
it, e.g. for a time far in the future, and dead-letters it *redacted*), is
skipped and counted (:class:`Skipped`: a GitHub event of an unmapped type), is a
repeat and counted (sent once), or is :class:`Malformed`: dead-lettered as a
pointer (importer, ``file:line``, reason) only.

* :func:`gh_hours` — GH Archive files: GitHub events built like those of the
  shared real hour, mixed with lines cut short, not UTF-8, not an object, nested
  too deep, huge, of the wrong types, of unmapped types, without what their
  mapping needs, from the far future or before 1990 (2013 is history, and fine),
  blank or repeated; at times a second file: the same hour again, or a cut-off
  ``.gz``;
* :func:`mbox_archives` — mbox files (plain, CRLF, ``.gz``, at times cut off) of
  valid messages and hostile ones: no Message-ID or From, undeclared 8-bit and
  invalid UTF-8 headers, huge bodies and headers, Dates far in the future, before
  1990 or unparsable (the separator line's date is used then), from 2013, a
  separator line with no date either, repeated Message-IDs, "From " lines in
  bodies, reply loops, stray text before the first message.

Every text that must not leave an importer (logins, names, addresses, subjects,
bodies, Message-IDs) is made of :data:`SECRET_LETTERS`, so a test can look for it
in any output without collecting it.
"""

from __future__ import annotations

import gzip
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final

import orjson
from hypothesis import strategies as st

from ingest import RejectCode
from ingest.importers.foreign import IMPORT_NAMESPACE
from tests.hostile import invalid_bytes, not_objects, offsets

__all__ = [
    "CHANNEL",
    "GH_TROUBLES",
    "MAIL_FAULTS",
    "SECRET_LETTERS",
    "GhFile",
    "GhLine",
    "Mail",
    "Malformed",
    "MboxFile",
    "Sent",
    "Skipped",
    "gh_hours",
    "mbox_archives",
]

#: Letters of text that must never leave an importer: no hex digit and no vowel, so that
#: none of it turns up by chance in an id, a pseudonym, a JSON key or a reason.
SECRET_LETTERS: Final = "ghjkmnpqrstvwxz"
secrets = st.text(st.sampled_from(SECRET_LETTERS), min_size=10, max_size=14)
#: orjson refuses JSON nested deeper than this.
MAX_DEPTH: Final = 1024
HUGE: Final = (1 << 20, 2 << 20)  # bytes of a huge field: 1-2 MB

_VALID = (datetime(1990, 1, 2), datetime(2025, 12, 31))  # history, always past
_2013 = (datetime(2013, 1, 1), datetime(2013, 12, 31))  # a real archive's history: accepted
_FUTURE = (datetime(2200, 1, 1), datetime(9999, 12, 30))
_ANCIENT = (datetime(1, 1, 2), datetime(1989, 12, 31))


@dataclass(frozen=True)
class Sent:
    """An item that becomes an event; the producer accepts it unless ``verdict`` says why not."""

    event_id: str
    verdict: RejectCode | None = None
    kind: str = ""  # GitHub type/action
    made: str = ""  # event_type/actor_role
    channel: str = ""

    @property
    def opening(self) -> bool:
        return self.made.startswith(("ticket_opened/", "post_submitted/"))


@dataclass(frozen=True)
class Skipped:
    kind: str


@dataclass(frozen=True)
class Malformed:
    reason: str


Outcome = Sent | Skipped | Malformed


def expected_id(*key: str) -> str:
    """An importer's event id: UUID 5 of its natural key (docs/importers.md, Idempotency)."""
    return str(uuid.uuid5(IMPORT_NAMESPACE, "\x1f".join(key)))


def instants(bounds: tuple[datetime, datetime]) -> st.SearchStrategy[datetime]:
    return st.datetimes(*bounds, timezones=st.just(UTC))


def huge_text(word: str, size: int) -> str:
    return (word + " ") * (size // (len(word) + 1))


def _short(raw: bytes, keep: int = 2000) -> str:
    return repr(raw) if len(raw) <= keep else f"{raw[:keep]!r} ... ({len(raw):,} bytes)"


# -- GH Archive ------------------------------------------------------------------------

_MAPPING: Final = {
    ("IssuesEvent", "opened"): "ticket_opened",
    ("IssuesEvent", "closed"): "ticket_resolved",
    ("IssuesEvent", "reopened"): "ticket_reopened",
    ("IssueCommentEvent", "created"): "ticket_replied",
    ("PullRequestEvent", "opened"): "post_submitted",
    ("PullRequestReviewCommentEvent", "created"): "post_reviewed",
}
#: Skipped by design, as the real hour has them (and made-up types).
_UNMAPPED: Final = (
    ("PushEvent", None), ("WatchEvent", "started"), ("CreateEvent", None), ("ForkEvent", None),
    ("PullRequestEvent", "closed"), ("PullRequestEvent", "reopened"),
    ("IssuesEvent", "labeled"), ("IssuesEvent", "assigned"), ("GollumEvent", None),
    ("HologramEvent", "beamed"), ("FaxEvent", None),
)  # fmt: skip
_REPOS: Final = st.lists(
    st.builds(
        lambda owner, name: f"{owner}/{name}",
        st.text(st.sampled_from("ABCDEFUVWY0123456789"), min_size=2, max_size=8),
        st.text(st.sampled_from("ABCDEFUVWY0123456789-._"), min_size=1, max_size=10),
    ),
    min_size=1,
    max_size=3,
    unique=True,
)
_LOGINS: Final = st.lists(
    st.builds(
        lambda name, bot: name + bot, secrets, st.sampled_from(["", "", "", "-bot", "[bot]"])
    ),
    min_size=2,
    max_size=4,
    unique=True,
)


class _Short:
    """Printed by hypothesis with its own short ``repr`` (an example can hold megabytes)."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis prints with it
        printer.text(repr(self))


def _written(name: str, text: bytes, cut: int | None) -> bytes:
    """A file's bytes: ``text``, gzipped for ``.gz`` and then cut to ``cut`` bytes if given."""
    if not name.endswith(".gz"):
        return text
    packed = gzip.compress(text, mtime=0)
    return packed if cut is None else packed[:cut]


@dataclass(frozen=True)
class GhLine(_Short):
    raw: bytes
    outcome: Outcome | None  # None: a blank line, which is no input
    trouble: str = ""  # what is odd about it, if anything (for the tests' coverage)

    def __repr__(self) -> str:  # a falsifying example can hold megabytes
        return f"GhLine({_short(self.raw)}, {self.outcome}, {self.trouble!r})"


@dataclass(frozen=True)
class GhFile:
    name: str
    lines: tuple[GhLine, ...]
    #: a truncated .gz: only this many of the compressed bytes are written
    cut: int | None = None

    def text(self) -> bytes:
        return b"".join(line.raw + b"\n" for line in self.lines)

    def data(self) -> bytes:
        return _written(self.name, self.text(), self.cut)


def _subject(kind: str) -> str:
    return "pull_request" if kind.startswith("PullRequest") else "issue"


def _made(kind: str, action: str, login: str, author: str) -> str:
    made = _MAPPING[kind, action]
    by_author = login == author
    if made == "post_reviewed" and by_author:
        made = "ticket_replied"
    if login.lower().endswith(("[bot]", "-bot")):
        role = "bot"
    elif by_author or made in ("ticket_opened", "post_submitted"):
        role = "customer"
    else:
        role = "agent"
    return f"{made}/{role}"


@st.composite
def _gh_created_at(draw: st.DrawFn) -> tuple[str, RejectCode | None]:
    """``created_at`` as GitHub writes it (or with an offset), and the producer's verdict."""
    which = draw(st.sampled_from(["valid", "valid", "valid", "2013", "future", "ancient"]))
    bounds = {"valid": _VALID, "2013": _2013, "future": _FUTURE, "ancient": _ANCIENT}[which]
    instant = draw(instants(bounds))
    if draw(st.booleans()):
        text = instant.strftime("%Y-%m-%dT%H:%M:%SZ") if instant.year >= 1000 else None
        text = text or instant.isoformat()
    else:
        text = instant.astimezone(draw(offsets)).isoformat()
    verdict = {"future": RejectCode.FUTURE_TIME, "ancient": RejectCode.TOO_OLD}.get(which)
    if verdict is not None and draw(st.integers(0, 5)) == 5:  # no UTC instant at all
        text = "9999-12-31T23:00:00-05:00" if which == "future" else "0001-01-01T00:00:00+05:00"
    return text, verdict


@st.composite
def _gh_event(
    draw: st.DrawFn, gh_id: int, logins: list[str], repos: list[str]
) -> tuple[dict[str, Any], Outcome]:
    """A GitHub event as GH Archive has it (mapped or not), and what it must give."""
    mapped = draw(st.integers(0, 3)) > 0
    kind, action = draw(st.sampled_from(list(_MAPPING) if mapped else list(_UNMAPPED)))
    login, author = draw(st.sampled_from(logins)), draw(st.sampled_from(logins))
    repo, number = draw(st.sampled_from(repos)), draw(st.integers(1, 30_000))
    created_at, verdict = draw(_gh_created_at())
    title, body = draw(secrets), draw(secrets)
    subject = {
        "url": f"https://api.github.com/repos/{repo}/issues/{number}", "id": gh_id * 7,
        "number": number, "title": f"{title} breaks", "user": {"login": author, "id": 3},
        "labels": [], "state": "open", "locked": False, "body": f"{body} when run",
    }  # fmt: skip
    payload: dict[str, Any] = {} if action is None else {"action": action}
    if kind in ("IssuesEvent", "IssueCommentEvent", "PullRequestEvent"):
        payload[_subject(kind)] = subject
    if kind == "PullRequestEvent":
        payload["number"] = number
    if kind.endswith("CommentEvent"):
        comment = {"id": gh_id * 11, "user": {"login": login}, "body": draw(secrets)}
        payload["comment"] = comment | {"created_at": created_at}
        if kind == "PullRequestReviewCommentEvent":
            payload["comment"]["diff_hunk"] = "@@ -1,2 +1,2 @@"
            payload["pull_request"] = subject
    if kind == "PushEvent":
        payload |= {"push_id": gh_id, "size": 1, "ref": "refs/heads/master", "commits": [
            {"sha": "ab12", "author": {"email": f"{login}@users.noreply.github.com",
                                       "name": draw(secrets)}, "message": draw(secrets)}]}  # fmt: skip
    event = {
        "id": str(gh_id),
        "type": kind,
        "actor": {"id": 9, "login": login, "gravatar_id": "",
                  "url": f"https://api.github.com/users/{login}"},
        "repo": {"id": 5, "name": repo, "url": f"https://api.github.com/repos/{repo}"},
        "payload": payload,
        "public": True,
        "created_at": created_at,
    }  # fmt: skip
    if (kind, action) not in _MAPPING:
        return event, Skipped(f"{kind}/{action}" if action else kind)
    return event, _sent(event, verdict)


def _sent(event: dict[str, Any], verdict: RejectCode | None) -> Sent:
    """What a mapped GitHub event becomes (docs/importers.md, the GH Archive mapping)."""
    kind, action = event["type"], event["payload"]["action"]
    login = event["actor"]["login"]
    made = _made(kind, action, login, event["payload"][_subject(kind)]["user"]["login"])
    event_type = made.split("/")[0]
    return Sent(
        expected_id("gharchive", event["id"], event_type),
        verdict,
        f"{kind}/{action}",
        made,
        f"gh:{event['repo']['name']}",
    )


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _with(event: dict[str, Any], path: Sequence[str], value: Any) -> dict[str, Any]:
    """A copy of ``event`` with ``path`` set to ``value`` (removed if ``value`` is ``_GONE``)."""
    copy = orjson.loads(orjson.dumps(event))
    node = copy
    for key in path[:-1]:
        node = node[key]
    if value is _GONE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy  # type: ignore[no-any-return]


_GONE: Final = object()
_WRONG: Final = st.one_of(
    st.integers(-5, 5), st.booleans(), st.none(), st.just([]), st.just({}), st.just(1.5)
)
#: For a mapped event: (path, how it breaks) -> the reason ("{s}" is issue or pull_request).
_BREAKS: Final = {
    (("actor",), "wrong"): "no actor.login", (("actor",), "gone"): "no actor.login",
    (("actor", "login"), "wrong"): "no actor.login", (("actor", "login"), "empty"): "no actor.login",
    (("repo",), "wrong"): "no repo.name", (("repo",), "gone"): "no repo.name",
    (("repo", "name"), "gone"): "no repo.name",
    (("id",), "wrong"): "no id", (("id",), "gone"): "no id", (("id",), "empty"): "no id",
    (("created_at",), "wrong"): "no created_at", (("created_at",), "gone"): "no created_at",
    (("payload",), "wrong"): "no payload.action", (("payload",), "gone"): "no payload.action",
    (("payload", "action"), "gone"): "no payload.action",
    (("payload", "action"), "empty"): "no payload.action",
    (("payload", "{s}"), "gone"): "no payload.{s}.user.login",
    (("payload", "{s}", "user"), "wrong"): "no payload.{s}.user.login",
    (("payload", "{s}", "number"), "wrong"): "no payload.{s}.number",
    (("payload", "{s}", "number"), "gone"): "no payload.{s}.number",
}  # fmt: skip


#: How a GitHub event can be broken (wrong types and missing fields more often: there are more).
GH_TROUBLES: Final = (
    "cut short", "not UTF-8", "not an object", "nested", "huge", "bad login", "bad repository",
    "bad created_at", "unmapped type", *["wrong type or missing"] * 6,
)  # fmt: skip


@st.composite
def _gh_hostile(
    draw: st.DrawFn, event: dict[str, Any], sent: Sent, trouble: str
) -> tuple[bytes, Outcome]:
    """The mapped ``event`` broken in one way, and what that must give."""
    raw = orjson.dumps(event)
    subject = _subject(event["type"])
    not_json, not_object = Malformed("not JSON"), Malformed("not a JSON object")
    if trouble == "cut short":  # cut short, or something after it
        if draw(st.booleans()):
            return raw[: draw(st.integers(1, len(raw) - 1))], not_json
        return raw + draw(st.sampled_from([b"x", b"}", b",", b"{}", b" ]"])), not_json
    if trouble == "not UTF-8":  # not UTF-8, inside a string
        bad = draw(invalid_bytes)
        return raw.replace(b" breaks", bad, 1), not_json
    if trouble == "not an object":  # JSON, but an array, a number, a string ...
        return orjson.dumps(draw(not_objects)), not_object
    if trouble == "nested":  # nested: the whole line, or inside a field; too deep, or not
        depth = draw(st.one_of(st.integers(1, MAX_DEPTH - 30), st.integers(MAX_DEPTH + 1, 20_000)))
        if draw(st.booleans()):
            return _nested(depth), not_json if depth > MAX_DEPTH else not_object
        line = raw.replace(b'"labels":[]', b'"labels":' + _nested(depth), 1)
        return line, not_json if depth + 3 > MAX_DEPTH else sent
    if trouble == "huge":  # huge texts: nothing of them is read into the event
        words = huge_text(draw(secrets), draw(st.integers(*HUGE)))
        return orjson.dumps(_with(event, ("payload", subject, "body"), words)), sent
    if trouble == "bad login":  # a login that cannot be an actor id: the producer rejects the event
        login = draw(
            st.one_of(
                st.text(st.sampled_from(SECRET_LETTERS), min_size=257, max_size=3000),
                st.builds(lambda s, c: s + c + s, secrets, st.sampled_from("\x00\x01\x07\x1b\x7f")),
                secrets.map(lambda s: " " + s),
            )
        )
        broken = _with(event, ("actor", "login"), login)
        return orjson.dumps(broken), _sent(broken, RejectCode.INVALID_VALUE)
    if trouble == "bad repository":  # a repository name that cannot name a channel
        name = draw(st.sampled_from(["a b/c", "x@y/z", "\u00fc/x", "A/" + "B" * 130]))
        broken = _with(event, ("repo", "name"), name)
        return orjson.dumps(broken), Malformed("repo.name is not usable as a channel id")
    if trouble == "bad created_at":  # created_at: no zone, not a time at all, or huge
        instant = draw(instants(_VALID)).replace(tzinfo=None)
        created_at, reason = draw(
            st.sampled_from(
                [
                    (instant.isoformat(), "created_at has no time zone"),
                    (instant.date().isoformat(), "created_at has no time zone"),
                    ("yesterday", "created_at is not an ISO 8601 time"),
                    ("2015-01-01T12:00:00" + "9" * 100_000, "created_at is not an ISO 8601 time"),
                ]
            )
        )
        return orjson.dumps(_with(event, ("created_at",), created_at)), Malformed(reason)
    if trouble == "unmapped type":  # skipped, counted by its type, printably
        kind = draw(
            st.one_of(
                st.sampled_from(["FaxEvent", "", "Issues", "\x1b[2J\x1b]0;owned\x07Event", "\x9b"]),
                st.integers(0, 9),
                st.just("Y" * 5000),
            )
        )
        broken = _with(event, ("type",), kind)
        label = kind if isinstance(kind, str) and kind else "(no type)"
        label = re.sub(r"[\x00-\x1f\x7f-\x9f]", "\ufffd", f"{label}/{event['payload']['action']}")
        return orjson.dumps(broken), Skipped(label if len(label) <= 100 else label[:99] + "\u2026")
    # wrong types and missing fields
    path, how = draw(st.sampled_from(sorted(_BREAKS, key=repr)))
    reason = _BREAKS[path, how].format(s=subject)
    path = tuple(part.format(s=subject) for part in path)
    value = {"gone": _GONE, "empty": ""}.get(how) if how != "wrong" else draw(_WRONG)
    if type(value) is int and path[-1] in ("id", "number"):  # an integer is one
        value = str(value) if path[-1] == "number" else 1.5
    return orjson.dumps(_with(event, path, value)), Malformed(reason)


@st.composite
def _gh_lines(draw: st.DrawFn, first_id: int, logins: list[str], repos: list[str]) -> list[GhLine]:
    lines: list[GhLine] = []
    for gh_id in range(first_id, first_id + draw(st.integers(1, 24))):
        event, outcome = draw(_gh_event(gh_id, logins, repos))
        raw, label = orjson.dumps(event), ""
        if isinstance(outcome, Sent) and draw(st.booleans()):
            label = draw(st.sampled_from(GH_TROUBLES))
            raw, outcome = draw(_gh_hostile(event, outcome, label))
        elif isinstance(outcome, Sent):
            label = {RejectCode.FUTURE_TIME: "future", RejectCode.TOO_OLD: "before 1990"}.get(
                outcome.verdict or RejectCode.MALFORMED_ROW,
                "2013" if event["created_at"][:4] == "2013" else "",
            )
        lines.append(GhLine(raw, outcome, label))
        if draw(st.integers(0, 9)) == 9:
            lines.append(GhLine(draw(st.sampled_from([b"", b"  ", b"\r"])), None))
    for _ in range(draw(st.integers(0, 3))):  # the same event again (a resent hour)
        again = draw(st.sampled_from(lines))
        lines.insert(draw(st.integers(0, len(lines))), again)
    return lines


@st.composite
def gh_hours(draw: st.DrawFn) -> list[GhFile]:
    """One or two GH Archive files; the second may repeat the first or be a cut-off .gz."""
    logins, repos = draw(_LOGINS), draw(_REPOS)
    first = GhFile(
        "2015-01-01-12.json" + draw(st.sampled_from([".gz", ""])),
        tuple(draw(_gh_lines(1000, logins, repos))),
    )
    files = [first]
    second = draw(st.sampled_from(["none", "again", "truncated", "truncated"]))
    if second == "again":
        files.append(GhFile("2015-01-01-12-copy.json", first.lines))
    elif second == "truncated":
        cut = GhFile("2015-01-01-13.json.gz", tuple(draw(_gh_lines(5000, logins, repos))))
        size = len(cut.data())
        # in the gzip trailer, in the second half, or anywhere (even before a first whole line)
        at = st.one_of(st.integers(size - 8, size - 1), st.integers(size // 2, size - 1))
        files.append(GhFile(cut.name, cut.lines, draw(st.one_of(at, st.integers(10, size - 1)))))
    return files


# -- mbox ------------------------------------------------------------------------------

CHANNEL: Final = "email:hostile-list"
_HOSTS: Final = st.sampled_from(("r-project.example", "mail.example.net", "lists.example.org"))
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_UNPARSABLE: Final = (
    b"not a date", b"Mon, 31 Feb 2024 10:00:00 +0000", b"Mon, 1 Jan 2024 25:61:61 +0000",
    b"Mon, 1 Jan 10000 10:00:00 +0000", b"Mon, 1 Jan 2024 10:00:00 +2400",
    b"Mon, 1 Jan 20\xff\xfe 10:00:00 +0000", b"\xe9t\xe9 dernier",
)  # fmt: skip
#: What can be wrong with a message (one thing at most); the rest is valid, if odd.
MAIL_FAULTS: Final = (
    None, None, None, None, "date_2013", "date_future", "date_ancient", "date_padded_year",
    "date_unparsable", "date_missing", "envelope_ancient", "envelope_broken",
    "no_message_id", "huge_message_id", "8bit_message_id", "no_from", "control_in_from",
)  # fmt: skip
_USES_ENVELOPE: Final = {
    "date_ancient",
    "date_padded_year",
    "date_unparsable",
    "date_missing",
    "envelope_ancient",
}
_MALFORMED: Final = {
    "no_message_id": "no Message-ID",
    "no_from": "no From address",
    "envelope_broken": "no usable Date, and no date on the separator line",
}
_VERDICTS: Final = {
    "date_future": RejectCode.FUTURE_TIME,
    "envelope_ancient": RejectCode.TOO_OLD,
    "huge_message_id": RejectCode.INVALID_VALUE,
    "control_in_from": RejectCode.INVALID_VALUE,
}


@dataclass(frozen=True)
class Mail(_Short):
    """One message: its lines (separator line first, no line ends) and what it must give."""

    lines: tuple[bytes, ...]
    outcome: Sent | Malformed
    message_id: str | None = None  # as the importer reads it, if it can
    from_lines: int = 0  # body lines starting with "From " that stay in the message
    envelope_date: bool = False  # the separator line's date is used
    in_reply_to: str | None = None  # of a reply loop: the id its event must name
    fault: str = ""  # what is wrong with it, if anything (for the tests' coverage)

    def __repr__(self) -> str:  # a falsifying example can hold megabytes
        head = b"\n".join(self.lines[:12])
        return f"Mail({_short(head)}, {len(self.lines)} lines, {self.outcome}, {self.fault!r})"


@dataclass(frozen=True)
class MboxFile:
    name: str
    mails: tuple[Mail, ...]
    preamble: tuple[bytes, ...] = ()  # stray text (after a blank line) before the first mail
    crlf: bool = False
    cut: int | None = None  # a truncated .gz: only this many compressed bytes

    def placed(self) -> list[tuple[str, Mail]]:
        """Every mail with its place: ``file:line`` of its separator line."""
        number, placed = 1 + len(self.preamble), []
        for mail in self.mails:
            placed.append((f"{self.name}:{number}", mail))
            number += len(mail.lines)
        return placed

    def text(self) -> bytes:
        lines = [*self.preamble, *(line for mail in self.mails for line in mail.lines)]
        return (b"\r\n" if self.crlf else b"\n").join(lines) + b"\n"

    def data(self) -> bytes:
        return _written(self.name, self.text(), self.cut)


def _asctime(instant: datetime) -> str:
    day = _DAYS[instant.weekday()]
    return f"{day} {instant:%b} {instant.day:2d} {instant:%H:%M:%S} {instant.year:04d}"


@st.composite
def _dates(draw: st.DrawFn, fault: str | None) -> tuple[str, bytes | None]:
    """The separator line's date, and the Date header (``None``: none)."""
    envelope = _asctime(draw(instants(_VALID)))
    if fault == "envelope_ancient":
        envelope = _asctime(draw(instants((datetime(1970, 1, 1), datetime(1989, 12, 31)))))
    elif fault == "envelope_broken":  # shaped like a date, but none
        envelope = draw(st.sampled_from(["Mon Feb 31 10:00:00 2024", "Mon Jan  1 25:61:61 2024"]))
    bounds = {"date_2013": _2013, "date_future": _FUTURE, "date_ancient": _ANCIENT,
              "date_padded_year": (datetime(1, 1, 2), datetime(99, 12, 31))}  # fmt: skip
    written = draw(instants(bounds.get(fault or "", _VALID)))
    if 1 < written.year < 9999:
        written = written.astimezone(draw(offsets))
    date: bytes | None = format_datetime(written).encode()  # years before 1000 as 0999
    if fault == "date_future" and draw(st.integers(0, 3)) == 3:  # no UTC instant at all
        date = b"Fri, 31 Dec 9999 23:00:00 -0500"
    elif fault in ("date_unparsable", "envelope_ancient", "envelope_broken"):
        date = draw(st.sampled_from([*_UNPARSABLE, None]))
    elif fault == "date_missing":
        date = None
    return envelope, date


@st.composite
def _sender(draw: st.DrawFn, fault: str | None, user: str, host: str) -> bytes | None:
    name, address = draw(secrets), f"{user}.{draw(secrets)}@{host}"
    if fault == "no_from":
        return draw(st.sampled_from([None, b"", b"   ", f"({name} {user})".encode()]))
    if fault == "control_in_from":
        return f"{user}{draw(st.sampled_from([chr(c) for c in range(1, 9)]))}@{host}".encode()
    which = draw(st.integers(0, 8))
    if which == 3:  # undeclared 8-bit
        return f"{name} \xc4ngstr\xf6m <{address}>".encode("latin-1")
    if which == 4:  # not UTF-8
        return user.encode() + b"\xff\xfe@" + host.encode()
    if which == 5:  # huge
        return f"{huge_text(name, draw(st.integers(*HUGE)))}<{address}>".encode()
    if which == 6:  # an address over 256 characters: cut to 256
        return f"{user * 30}@{host}".encode()
    return [
        f"{user} at {host} ({name} {draw(secrets)})",  # as pipermail has it
        f"{name} <{address}>",
        address,
    ][which % 7].encode()


@st.composite
def _message_id(draw: st.DrawFn, fault: str | None, own: str) -> tuple[bytes | None, str]:
    """The Message-ID header, and the id as the importer reads it."""
    if fault == "no_message_id":
        return draw(st.sampled_from([None, b"<>", b"  ", b"one two three", b"< >"])), ""
    if fault == "huge_message_id":
        own = f"{draw(secrets) * draw(st.integers(20, 400))}@{own.split('@')[1]}"
    if fault == "8bit_message_id":  # lone continuation bytes: one U+FFFD each
        bad = bytes(draw(st.lists(st.integers(0x80, 0xBF), min_size=1, max_size=4)))
        left, right = own.split("@")
        return (
            f"<{left}".encode() + bad + f"@{right}>".encode(),
            f"{left}{chr(0xFFFD) * len(bad)}@{right}",
        )
    return draw(st.sampled_from([f"<{own}>", f"\n <{own}>", own, f"<{own}> (sent)"])).encode(), own


@st.composite
def _body(draw: st.DrawFn, host: str) -> tuple[list[bytes], int]:
    """Body lines, and how many start with "From " (none of them separates messages)."""
    body = [
        f"{draw(secrets)} {draw(secrets)} thanks".encode() for _ in range(draw(st.integers(0, 4)))
    ]
    count = draw(st.integers(0, 2))
    for _ in range(count):
        at = draw(st.integers(0, len(body)))
        if draw(st.booleans()):
            body.insert(at, f"From {draw(secrets)} I learned it".encode())
        else:  # shaped like a separator line, but no header line follows
            sender = f"{draw(secrets)} at {host}"
            body[at:at] = [f"From {sender}  Mon Jan  1 10:00:00 2024".encode(), b"  quoted"]
    if draw(st.integers(0, 7)) == 7:  # huge
        line = (draw(secrets) + " ") * 7
        body += [line.encode()] * (draw(st.integers(*HUGE)) // len(line))
    return body, count


@st.composite
def _mail(
    draw: st.DrawFn, fault: str | None, own: str, parents: list[str], loop: str | None = None
) -> Mail:
    """A message with Message-ID ``own`` (unless ``fault`` says otherwise).

    It may answer one of ``parents``; in a reply loop it answers ``loop``.
    """
    host, user = own.split("@")[1], draw(secrets)
    envelope, date = draw(_dates(fault))
    header_id, message_id = draw(_message_id(fault, own))
    sender = draw(_sender(fault, user, host))
    word, which = draw(secrets), draw(st.integers(0, 5))
    subject = f"[list] {word} question".encode()
    if which == 1:  # undeclared 8-bit
        subject = f"caf\xe9 {word}".encode("latin-1")
    elif which == 2:  # huge
        subject = huge_text(word, draw(st.integers(*HUGE))).encode()
    elif which == 3:  # folded over many lines
        subject = b"\n ".join([word.encode()] * draw(st.integers(2, 3000)))
    headers = [b"Subject: " + subject]
    headers += [b"From: " + sender] if sender is not None else []
    headers += [b"Date: " + date] if date is not None else []
    headers += [b"Message-ID: " + header_id] if header_id is not None else []
    if loop is not None:
        headers.append(f"In-Reply-To: <{loop}>".encode())
    elif parents and fault != "huge_message_id" and draw(st.booleans()):
        parent = draw(st.sampled_from([*parents, f"gone.{own}"]))
        headers.append(f"In-Reply-To: <{parent}> ({draw(secrets)}'s message of today)".encode())
        if refs := draw(st.lists(st.sampled_from([*parents, f"older.{own}"]), max_size=4)):
            headers.append(b"References: " + b"\n\t".join(f"<{ref}>".encode() for ref in refs))
    headers = draw(st.permutations(headers))
    if draw(st.integers(0, 5)) == 5:  # many
        headers += [
            f"Received: from {host}; {i}".encode() for i in range(draw(st.integers(1, 5000)))
        ]
    body, from_lines = draw(_body(host))
    text = [f"From {user} at {host}  {envelope}".encode(), *headers, b"", *body, b""]
    lines = tuple(part for line in text for part in line.split(b"\n"))
    if fault in _MALFORMED:
        return Mail(lines, Malformed(_MALFORMED[fault]), None, from_lines, fault=fault)
    sent = Sent(expected_id("mbox", CHANNEL, message_id), _VERDICTS.get(fault or ""))
    return Mail(lines, sent, message_id, from_lines, fault in _USES_ENVELOPE, loop, fault or "")


@st.composite
def _mails(draw: st.DrawFn, first: int) -> list[Mail]:
    mails: list[Mail] = []
    parents: list[str] = []  # ids a later message may answer
    faults = iter(draw(st.permutations(MAIL_FAULTS)))  # a few examples cover them all
    for n in range(first, first + draw(st.integers(1, len(MAIL_FAULTS)))):
        own = f"{draw(secrets)}.{n}@{draw(_HOSTS)}"
        if draw(st.integers(0, 9)) == 9:  # a reply loop: one message, or two, answering each other
            loop = (
                [own] if draw(st.booleans()) else [own, f"{draw(secrets)}.{n}b@lists.example.org"]
            )
            mails += [draw(_mail(None, me, [], loop[i - 1])) for i, me in enumerate(loop)]
            continue
        mail = draw(_mail(next(faults), own, parents))
        mails.append(mail)
        if mail.message_id == own and isinstance(mail.outcome, Sent):
            parents.append(own)
    for _ in range(draw(st.integers(0, 2))):  # a message delivered twice
        mails.insert(draw(st.integers(0, len(mails))), draw(st.sampled_from(mails)))
    return mails


@st.composite
def mbox_archives(draw: st.DrawFn) -> list[MboxFile]:
    """One or two mbox files of one list (the second gzipped, at times cut off)."""
    preamble = (b"", f"stray {draw(secrets)} text".encode()) if draw(st.booleans()) else ()
    files = [MboxFile("2024q1.mbox", tuple(draw(_mails(0))), preamble, draw(st.booleans()))]
    second = draw(st.sampled_from(["none", ".gz", ".gz", "cut .gz"]))
    if second != "none":
        files.append(MboxFile("2024q2.mbox.gz", tuple(draw(_mails(100)))))
    if second == "cut .gz":
        size = len(files[1].data())
        files[1] = MboxFile(files[1].name, files[1].mails, cut=draw(st.integers(1, size - 1)))
    return files
