"""The mbox importer: threads across files, roles, ids, malformed input; checked on real data."""

from __future__ import annotations

import email
import email.policy
import gzip
import mailbox
import re
import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from ingest import (
    ActorRole,
    ConfigurationError,
    Event,
    InputError,
    Pseudonymiser,
    RejectCode,
    Rejection,
    Scope,
    Validator,
)
from ingest.importers.foreign import IMPORT_NAMESPACE
from ingest.importers.mailsplit import Preamble, RawMessage, split_mbox
from ingest.importers.mbox import MboxArchive, MboxStats, default_channel
from ingest.producer import Record
from tests.helpers import NOW

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "r-package-devel"

FIRST = """\
From alice at example.org  Mon Jan  1 10:00:00 2024
From: alice at example.org (Alice Example)
Date: Mon, 1 Jan 2024 10:00:00 +0000
Subject: [list] How do I build a package?
Message-ID: <q1@example.org>

Hello, how do I build it?
From the docs I could not tell.
From mallory at example.com  Sun Dec 31 09:00:00 2023
looks like a separator line, but no header follows it

From bob at example.net  Mon Jan  1 11:00:00 2024
From: bob at example.net (Bob Helper)
Date: Mon, 1 Jan 2024 12:00:00 +0100
Subject: Re: [list] How do I build a package?
In-Reply-To: <q1@example.org>
References: <q1@example.org>
Message-ID:
 <r1@example.net>

Run R CMD build.

From alice at example.org  Mon Jan  1 12:30:00 2024
From: alice at example.org (Alice Example)
Date: Mon, 1 Jan 2024 12:30:00 -0000
Subject: Re: [list] How do I build a package?
In-Reply-To: <r1@example.net>
References: <q1@example.org>
 <r1@example.net>
Message-ID: <f1@example.org>

Thanks!

From carol at example.com  Tue Jan  2 09:00:00 2024
From: carol at example.com
Date: not a date
Subject: Re: an old thread
In-Reply-To: <gone@example.com> (Somebody's message of "Sun, 31 Dec 2023")
References: <older@example.com> <gone@example.com>
Message-ID: <o1@example.com>

A reply to a thread that started before this file.

From dave at example.com  Tue Jan  2 10:00:00 2024
From: dave at example.com (Dave Secret)
Date: Tue, 2 Jan 2024 10:00:00 +0000
Subject: no id here

This message has no Message-ID.
"""

SECOND = """\
From bob at example.net  Mon Apr  1 09:00:00 2024
From: bob at example.net (Bob Helper)
Date: Mon, 1 Apr 2024 09:00:00 +0000
Subject: Re: [list] How do I build a package?
In-Reply-To: <offlist@example.org>
References: <q1@example.org> <f1@example.org> <offlist@example.org>
Message-ID: <r2@example.net>

A later answer, to a message that never reached the list.

From erin at example.com  Mon Apr  1 10:00:00 2024
From: Erin Asker <erin at example.com>
Date: Mon, 1 Apr 2024 10:00:00 +0000
Subject: A new question
References: <123.ref@mail.yahoo.com>
Message-ID: <q2@example.com>

Question.

From erin at example.com  Mon Apr  1 10:00:00 2024
From: Erin Asker <erin at example.com>
Date: Mon, 1 Apr 2024 10:00:00 +0000
Subject: A new question
References: <123.ref@mail.yahoo.com>
Message-ID: <q2@example.com>

Question.
"""


def line_of(text: str, line: str) -> int:
    return text.splitlines().index(line) + 1


def separators(text: str) -> list[int]:
    """Line numbers of the real separator lines of a fixture (they all name 2024)."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if line.startswith("From ") and line.endswith(" 2024")
    ]


@pytest.fixture
def archive(tmp_path: Path) -> MboxArchive:
    folder = tmp_path / "list"
    folder.mkdir()
    (folder / "2024q1.mbox").write_text(FIRST)
    (folder / "2024q2.mbox.gz").write_bytes(gzip.compress(SECOND.encode()))
    paths = [folder / "2024q1.mbox", folder / "2024q2.mbox.gz"]
    source = MboxArchive(paths, channel=default_channel(paths))
    source.open()
    return source


def events_of(records: list[Record]) -> dict[str, Event]:
    """The distinct events by (raw) Message-ID."""
    return {r.data.message_id or "": r.data for r in records if isinstance(r.data, Event)}


def test_thread_roles_and_parents_across_files(archive: MboxArchive) -> None:
    records = list(archive.records())
    assert archive.done == archive.total > 0
    events = events_of(records)
    assert {mid: (e.actor_role, e.conversation_id, e.in_reply_to) for mid, e in events.items()} == {
        # the starter opens a request; a reply by someone else is a response
        "q1@example.org": (ActorRole.CUSTOMER, "q1@example.org", None),
        "r1@example.net": (ActorRole.AGENT, "q1@example.org", "q1@example.org"),
        # the starter after a reply: a follow-up
        "f1@example.org": (ActorRole.CUSTOMER, "q1@example.org", "r1@example.net"),
        # the thread started before the files: named after its earliest ancestor, no request
        "o1@example.com": (ActorRole.AGENT, "older@example.com", "gone@example.com"),
        # In-Reply-To names a message not in the files: the nearest imported one in References
        "r2@example.net": (ActorRole.AGENT, "q1@example.org", "f1@example.org"),
        # References alone, naming nothing imported (a client's habit): a new thread
        "q2@example.com": (ActorRole.CUSTOMER, "q2@example.com", None),
    }
    assert {e.channel_id for e in events.values()} == {"email:list"}
    assert {(e.event_type.value, e.channel_kind.value, e.scope) for e in events.values()} == {
        ("message_sent", "email", Scope.EXTERNAL)
    }
    assert events["q1@example.org"].actor_id == "alice at example.org"
    assert events["q2@example.com"].actor_id == "erin at example.com"


def test_dates_from_the_header_with_fallbacks(archive: MboxArchive) -> None:
    events = events_of(list(archive.records()))
    assert events["r1@example.net"].occurred_at == datetime(2024, 1, 1, 11, 0, tzinfo=UTC)
    assert events["f1@example.org"].occurred_at == datetime(2024, 1, 1, 12, 30, tzinfo=UTC)  # -0000
    # "not a date": the separator line's date, read as UTC, and reported
    assert events["o1@example.com"].occurred_at == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)
    line = line_of(FIRST, "From carol at example.com  Tue Jan  2 09:00:00 2024")
    assert archive.stats.envelope_dates == [f"2024q1.mbox:{line}"]


def test_counts_and_malformed_messages(archive: MboxArchive) -> None:
    records = list(archive.records())
    dave = line_of(FIRST, "From dave at example.com  Tue Jan  2 10:00:00 2024")
    stats = archive.stats
    body_from = [
        line_of(FIRST, "From the docs I could not tell."),
        line_of(FIRST, "From mallory at example.com  Sun Dec 31 09:00:00 2023"),
    ]
    assert stats == MboxStats(
        files=2,
        messages=8,
        duplicates=1,
        threads=3,
        requests=2,
        answered=1,
        threads_started_earlier=1,
        malformed=stats.malformed,
        from_lines=[f"2024q1.mbox:{n}" for n in body_from],
        envelope_dates=stats.envelope_dates,
    )
    assert [str(p) for p in stats.malformed] == [f"2024q1.mbox:{dave}: no Message-ID"]
    # The malformed one first, pointing at its place only; then one record per message, by
    # Date (these files have them in order already). The last one repeats <q2@example.com>:
    # the same event, sent once.
    usable = [n for n in separators(FIRST) if n != dave]
    assert [r.source for r in records] == [f"2024q1.mbox:{n}" for n in [dave, *usable]] + [
        f"2024q2.mbox.gz:{n}" for n in separators(SECOND)[:-1]
    ]
    [bad] = [r for r in records if isinstance(r.data, Rejection)]
    assert bad.data == Rejection(RejectCode.MALFORMED_ROW, "no Message-ID")
    assert bad.raw is not None and orjson.loads(bad.raw) == {
        "importer": "mbox",
        "source": f"2024q1.mbox:{dave}",
        "reason": "no Message-ID",
    }


def test_messages_are_sent_in_the_order_they_were_written_not_archived(tmp_path: Path) -> None:
    def mail(envelope: str, date: str, message_id: str) -> str:
        return (
            f"From someone at example.org  {envelope}\n"
            f"From: someone at example.org\nDate: {date}\nMessage-ID: <{message_id}>\n\nText.\n\n"
        )

    # A list archives messages as they reach it: one held for moderation, one from a sender
    # whose clock is a day behind, and two written in the same second.
    path = tmp_path / "2024q1.mbox"
    path.write_text(
        mail("Mon Jan  1 10:00:00 2024", "Mon, 1 Jan 2024 10:00:00 +0000", "a@x")
        + mail("Mon Jan  1 15:00:00 2024", "Mon, 1 Jan 2024 15:00:00 +0000", "b@x")
        + mail("Mon Jan  1 15:05:00 2024", "Mon, 1 Jan 2024 09:30:00 +0000", "held@x")
        + mail("Mon Jan  1 16:00:00 2024", "Sun, 31 Dec 2023 16:00:00 +0000", "clock@x")
        + mail("Mon Jan  1 17:00:00 2024", "Mon, 1 Jan 2024 17:00:00 +0000", "same-1@x")
        + mail("Mon Jan  1 17:00:01 2024", "Mon, 1 Jan 2024 18:00:00 +0100", "same-2@x")
    )
    source = MboxArchive([path], channel="email:list")
    source.open()
    events = [r.data for r in source.records()]
    assert all(isinstance(e, Event) for e in events)
    assert [e.message_id for e in events if isinstance(e, Event)] == [
        "clock@x", "held@x", "a@x", "b@x", "same-1@x", "same-2@x"
    ]  # fmt: skip


def test_a_repeated_message_id_is_sent_once(archive: MboxArchive) -> None:
    events = [r.data for r in archive.records() if isinstance(r.data, Event)]
    assert len(events) == len({e.event_id for e in events}) == 6
    assert archive.stats.duplicates == 1
    assert [e for e in events if e.message_id == "q2@example.com"] == [events[-1]]


def test_event_ids_are_uuid5_of_channel_and_message_id(archive: MboxArchive) -> None:
    first = [r.data for r in archive.records()]
    again = [r.data for r in archive.records()]
    assert first == again
    q1 = events_of([Record(e) for e in first])["q1@example.org"]
    assert q1.event_id == uuid.uuid5(IMPORT_NAMESPACE, "mbox\x1femail:list\x1fq1@example.org")


def test_no_subject_body_name_or_address_leaves_pseudonymised(archive: MboxArchive) -> None:
    pseudonymiser = Pseudonymiser(b"k" * 32)
    values = [
        pseudonymiser.apply(r.data).model_dump_json() if isinstance(r.data, Event) else repr(r)
        for r in archive.records()
    ]
    for secret in ("example", "Alice", "Bob", "Dave", "Secret", "package", "Question", "docs"):
        assert not any(secret in value for value in values), secret


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Tue, 1 Jan 2013 10:00:00 +0100", datetime(2013, 1, 1, 9, tzinfo=UTC)),  # history
        ("Tue, 1 Jan 13 10:00:00 +0000", datetime(2013, 1, 1, 10, tzinfo=UTC)),  # two digits
        ("Mon, 1 Jan 1985 10:00:00 +0000", None),  # before 1990
        # Years before 100 as email.utils.format_datetime writes them: the parser read
        # "0013" as 2013 and "0001" as 2001, so these were imported with made-up dates.
        ("Sun, 01 Jan 0013 10:00:00 +0000", None),
        ("Mon, 01 Jan 0001 00:00:00 +0500", None),
        ("Mon, 1 Jan 0099 10:00:00 -0000", None),
        ("1 Jan 2024 10:00 0000", datetime(2024, 1, 1, 10, tzinfo=UTC)),  # a zone, not a year
    ],
)
def test_header_dates_before_1990_are_not_used(
    tmp_path: Path, date: str, expected: datetime | None
) -> None:
    path = tmp_path / "dates.mbox"
    path.write_text(
        "From a at example.org  Mon Jan  1 10:00:00 2024\n"
        f"From: a at example.org\nDate: {date}\nMessage-ID: <d@x>\n\nbody\n"
    )
    source = MboxArchive([path], channel="email:list")
    [event] = [r.data for r in source.records()]
    assert isinstance(event, Event)
    # unusable: the separator line's date instead, and listed
    assert event.occurred_at == (expected or datetime(2024, 1, 1, 10, tzinfo=UTC))
    assert source.stats.envelope_dates == ([] if expected else ["dates.mbox:1"])


def test_a_rejected_event_is_dead_lettered_redacted(tmp_path: Path) -> None:
    path = tmp_path / "future.mbox"
    path.write_text(
        FIRST.split("\n\n")[0].replace("Mon, 1 Jan 2024", "Mon, 1 Jan 2999") + "\n\nx\n"
    )
    source = MboxArchive([path], channel="email:list")
    source.open()
    [record] = list(source.records())
    assert isinstance(record.data, Event)
    rejection = Validator(clock=lambda: NOW).check_time(record.data)
    assert isinstance(rejection, Rejection) and rejection.code is RejectCode.FUTURE_TIME
    assert record.raw is not None
    raw = orjson.loads(record.raw)
    assert raw["actor_id"] == raw["message_id"] == raw["conversation_id"] == "<redacted>"
    assert b"example" not in record.raw


def test_reply_loops_are_cut_without_a_request(tmp_path: Path) -> None:
    text = "".join(
        f"From x at example.org  Mon Jan  1 1{n}:00:00 2024\n"
        f"From: {who} at example.org\nDate: Mon, 1 Jan 2024 1{n}:00:00 +0000\n"
        f"Message-ID: <{me}@x>\nIn-Reply-To: <{other}@x>\n\nbody\n"
        for n, (who, me, other) in enumerate([("a", "A", "B"), ("b", "B", "A")])
    )
    path = tmp_path / "loop.mbox"
    path.write_text(text)
    source = MboxArchive([path], channel="email:list")
    events = [r.data for r in source.records() if isinstance(r.data, Event)]
    assert {e.conversation_id for e in events} == {"B@x"}
    assert all(e.in_reply_to is not None for e in events)
    assert source.stats.requests == 0 and source.stats.threads == 1


def test_splitter_unfolds_headers_and_keeps_from_lines_in_bodies() -> None:
    items = list(split_mbox(line.encode() + b"\r\n" for line in ["junk", "", *FIRST.splitlines()]))
    assert isinstance(items[0], Preamble) and items[0].line == 1
    messages = [item for item in items if isinstance(item, RawMessage)]
    assert [m.line - 2 for m in messages] == separators(FIRST)
    assert messages[1].headers["message-id"] == "<r1@example.net>"
    assert messages[2].headers["references"] == "<q1@example.org> <r1@example.net>"
    assert len(messages[0].from_lines) == 2


def test_open_checks_the_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        MboxArchive([tmp_path / "missing.mbox"], channel="email:x").open()
    with pytest.raises(InputError, match="is a directory"):
        MboxArchive([tmp_path], channel="email:x").open()
    (tmp_path / "notes.txt").write_text("Dear diary\n")
    with pytest.raises(InputError, match="not an mbox archive"):
        MboxArchive([tmp_path / "notes.txt"], channel="email:x").open()


def test_a_truncated_file_fails_before_anything_is_emitted(tmp_path: Path) -> None:
    path = tmp_path / "cut.mbox.gz"
    path.write_bytes(gzip.compress(FIRST.encode())[:-8])  # without the gzip trailer
    source = MboxArchive([path], channel="email:list")
    source.open()
    with pytest.raises(InputError, match="cut.mbox.gz: unreadable"):
        next(source.records())


def test_channels(tmp_path: Path) -> None:
    (tmp_path / "r package devel").mkdir()
    (tmp_path / "other").mkdir()
    assert default_channel([tmp_path / "r package devel" / "a.mbox"]) == "email:r-package-devel"
    with pytest.raises(ConfigurationError, match="give --channel"):
        default_channel([tmp_path / "r package devel" / "a.mbox", tmp_path / "other" / "b.mbox"])
    with pytest.raises(ConfigurationError, match="not valid"):
        MboxArchive([], channel="list@example.org")


# -- the real r-package-devel archive --------------------------------------


@dataclass(frozen=True)
class Mail:
    message_id: str
    in_reply_to: list[str]
    references: list[str]
    sender: str


def real_files() -> list[Path]:
    paths = sorted(DATA.glob("*.mbox"))
    if len(paths) != 8:
        pytest.skip(f"the shared real data is not at {DATA.resolve()} (8 r-package-devel quarters)")
    return paths


def real_mails(paths: list[Path]) -> Iterator[Mail]:
    """Messages read another way: a looser separator regex, the ``email`` package."""
    separator = re.compile(r"From .+  \w{3} \w{3} [ \d]\d [\d:]{8} \d{4}")
    ids = re.compile(r"<([^>]*)>")
    for path in paths:
        lines = path.read_bytes().split(b"\n")
        starts = [
            n
            for n, line in enumerate(lines)
            if separator.fullmatch(line.decode("utf-8", "replace")) and lines[n + 1][:5] == b"From:"
        ]
        for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):
            message = email.message_from_bytes(
                b"\n".join(lines[start + 1 : end]), policy=email.policy.compat32
            )

            def named(header: str, message: email.message.Message = message) -> list[str]:
                return ["".join(i.split()) for i in ids.findall(str(message.get(header, "")))]

            sender = re.sub(r"\([^()]*\)$", "", " ".join(str(message["From"]).split()))
            yield Mail(
                named("Message-ID")[0],
                named("In-Reply-To")[:1],
                named("References"),
                sender.strip().lower(),
            )


@pytest.fixture(scope="module")
def real() -> tuple[MboxArchive, list[Record]]:
    paths = real_files()
    source = MboxArchive(paths, channel=default_channel(paths))
    source.open()
    return source, list(source.records())


def test_real_archive_counts_match_an_independent_reading(
    real: tuple[MboxArchive, list[Record]],
) -> None:
    source, records = real
    mails = list(real_mails(source.paths))
    known: dict[str, Mail] = {}
    for mail in mails:
        known.setdefault(mail.message_id, mail)

    def parent(mail: Mail) -> str | None:
        named = mail.in_reply_to + mail.references[::-1]
        return next((m for m in named if m in known and m != mail.message_id), None)

    def top(message_id: str) -> str:
        while (up := parent(known[message_id])) is not None:
            message_id = up
        return message_id

    threads: dict[str, set[str]] = {}  # thread id -> senders
    starters: dict[str, str] = {}  # thread id -> the starter's sender
    for message_id, mail in known.items():
        head = known[top(message_id)]
        started = not head.in_reply_to
        thread = head.message_id if started else (head.references or head.in_reply_to)[0]
        threads.setdefault(thread, set()).add(mail.sender)
        if started and head is mail:
            starters[thread] = mail.sender
    answered = [t for t, sender in starters.items() if threads[t] - {sender}]

    assert (len(mails), len(known)) == (2013, 2012)
    assert (len(threads), len(starters), len(answered)) == (425, 376, 341)
    stats = source.stats
    assert (stats.messages, stats.messages - stats.duplicates) == (len(mails), len(known))
    assert (stats.threads, stats.requests, stats.answered) == (
        len(threads),
        len(starters),
        len(answered),
    )
    assert stats.threads_started_earlier == len(threads) - len(starters) == 49
    assert stats.malformed == [] and stats.envelope_dates == []
    # mailbox.mbox splits at every "From " line; the importer keeps those in their message.
    naive = 0
    for path in source.paths:
        box = mailbox.mbox(path, create=False)
        try:
            naive += len(box)
        finally:
            box.close()
    assert naive - len(mails) == len(stats.from_lines) == 6

    events = {r.data.event_id: r.data for r in records if isinstance(r.data, Event)}
    assert len(records) == len(events) == 2012  # one Message-ID comes twice: sent once
    assert len({e.conversation_id for e in events.values()}) == 425
    assert sum(e.in_reply_to is None for e in events.values()) == 376


def test_real_archive_first_responses(real: tuple[MboxArchive, list[Record]]) -> None:
    """The request rules applied to the events: the expectation for the warehouse."""
    _, records = real
    events = {r.data.event_id: r.data for r in records if isinstance(r.data, Event)}.values()
    opened = {e.conversation_id or "": e.occurred_at for e in events if e.in_reply_to is None}
    first: dict[str, datetime] = {}
    for e in events:
        thread = e.conversation_id or ""
        if e.actor_role is ActorRole.AGENT and thread in opened:
            first[thread] = min(first.get(thread, e.occurred_at), e.occurred_at)
    waits = sorted((first[c] - opened[c]).total_seconds() for c in first)

    assert (len(opened), len(first)) == (376, 341)  # 90.7 % of the threads get a first response
    assert len(first) / len(opened) > 0.5
    assert waits[0] > 0  # nobody answers before the question
    median = statistics.median(waits)
    assert 60 < median < 7 * 86400  # between minutes and days
    assert median == 5217.0  # 1 h 27 min
