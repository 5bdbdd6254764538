"""Hostile GH Archive hours and mbox archives through ``commpulse import``, into the real broker.

Property-based (``tests/hostile_foreign.py``), as tests/integration/test_bad_input.py
is for the canonical formats: every generated file is imported by the real CLI,
each run into topics of its own, and every run must give exactly what the
importer's rules (docs/importers.md) say:

* the exit code (0, or 3 if anything was dead-lettered; 1 and nothing sent when a
  file is unusable), never a traceback;
* the summary line: received = sent + dead-lettered, by reason;
* the events topic holds exactly the accepted events (by event id, pseudonymised);
* the dead-letter topic exactly the rejected inputs, each with a reason and its
  ``file:line``: unusable items as pointers only, mapped events the producer
  rejected (times far in the future or before 1990, unusable ids) redacted;
* the importer's own counts, and that they add up: for GH Archive
  read = imported + skipped + repeated + malformed, for mbox
  messages = sent + dead-lettered + repeated (once a stray text is left out);
* no login, name, address, subject, body or Message-ID of the input in any
  record, header or line of output.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings

from commpulse.settings import TopicSettings
from infra import EmbeddedBroker, ensure_topics
from ingest import DeadLetter, Event, Pseudonymiser, RejectCode, decode
from ingest.pseudonym import PSEUDONYM_PATTERN
from tests.hostile_foreign import (
    CHANNEL,
    GH_TROUBLES,
    MAIL_FAULTS,
    SECRET_LETTERS,
    GhFile,
    Malformed,
    MboxFile,
    Sent,
    Skipped,
    gh_hours,
    mbox_archives,
)
from tests.integration.support import PSEUDONYM_KEY, consume_all, run_cli

EXIT_ERROR, EXIT_DEAD_LETTERED = 1, 3
STRAY = "text before the first separator line"
#: Ten letters in a row of those the inputs' secrets are made of: none may leave an importer.
SECRET = re.compile(f"[{SECRET_LETTERS}]{{10,}}".encode())
SUMMARY = re.compile(
    r"ingested (\S+) inputs from (\d+) files? · (\S+) sent · (\S+) dead-lettered(?: \((.*)\))? · "
)
GH_LINE = re.compile(
    r"gharchive: (\S+) GitHub events in \d+ files? · (\S+) imported from (\S+) repositories"
    r" \((\S+) requests opened\) · (\S+) skipped · (\S+) malformed(?: · (\S+) repeated \(sent once\))?"
)
MBOX_LINE = re.compile(
    r"mbox: (\S+) messages in \d+ files?(?: \((\S+) repeated Message-IDs?, sent once\))?"
    r" · (\S+) threads: (\S+) requests opened, (\S+) answered, (\S+) started before these files"
    r" · (\S+) malformed · (\S+) body lines starting with 'From ' kept in their message"
    r" · (\S+) dates? from the separator line"
)

examples = hypothesis_settings(
    deadline=None,
    database=None,  # no examples saved between runs: CI sees what a developer sees
    derandomize=True,  # the same examples every run, which cover every kind of trouble
    # No shrinking: each try is a run of the CLI, and hypothesis would shrink for 5 minutes;
    # a failing example is reported as it is (its files' reprs are cut short).
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _int(text: str | None) -> int:
    return int((text or "0").replace(",", ""))


# -- what a run must give ----------------------------------------------------------------


@dataclass
class Expected:
    """What one import must give, in the topics and in the importer's counts."""

    accepted: Counter[str] = field(default_factory=Counter)  # event ids on the events topic
    #: place -> (event id, why): mapped events the producer dead-letters, redacted
    rejected: dict[str, tuple[str, RejectCode]] = field(default_factory=dict)
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (place, reason): pointers
    unusable: bool = False  # a file cannot be read: exit 1, nothing sent
    read: int = 0  # GitHub events (lines), or messages (separator lines)
    repeated: int = 0  # sent once
    # GH Archive
    gh_mapped: Counter[tuple[str, str]] = field(default_factory=Counter)
    gh_skipped: Counter[str] = field(default_factory=Counter)
    repositories: set[str] = field(default_factory=set)
    requests: int = 0
    # mbox
    from_lines: int = 0
    envelope_dates: int = 0
    message_ids: dict[str, str] = field(default_factory=dict)  # event id -> Message-ID
    loops: dict[str, str] = field(default_factory=dict)  # event id -> the id it replies to

    @property
    def dead_lettered(self) -> Counter[RejectCode]:
        codes = [code for _, code in self.rejected.values()]
        return Counter([RejectCode.MALFORMED_ROW] * len(self.malformed) + codes)

    @property
    def exit_code(self) -> int:
        if self.unusable:
            return EXIT_ERROR
        return EXIT_DEAD_LETTERED if self.dead_lettered else 0

    def event(self, place: str, outcome: Sent) -> None:
        if outcome.verdict is None:
            self.accepted[outcome.event_id] += 1
        else:
            self.rejected[place] = (outcome.event_id, outcome.verdict)


def expect_gharchive(files: Sequence[GhFile]) -> Expected:
    """docs/importers.md, GH Archive: mapped, skipped, repeated or malformed, line by line."""
    expected, seen = Expected(), set[str]()
    for file in files:
        lines, broken_at = list(file.lines), None
        if file.cut is not None:  # read up to the last whole line; reading stops there
            whole = zlib.decompressobj(wbits=31).decompress(file.data()).count(b"\n")
            lines, broken_at = lines[:whole], whole + 1
            expected.unusable |= whole == 0  # not even a first line: refused before sending
        for number, line in enumerate(lines, start=1):
            place, outcome = f"{file.name}:{number}", line.outcome
            if outcome is None:  # a blank line is no input
                continue
            expected.read += 1
            if isinstance(outcome, Skipped):
                expected.gh_skipped[outcome.kind] += 1
            elif isinstance(outcome, Malformed):
                expected.malformed.append((place, outcome.reason))
            elif outcome.event_id in seen:
                expected.repeated += 1
            else:
                seen.add(outcome.event_id)
                expected.gh_mapped[outcome.kind, outcome.made] += 1
                expected.repositories.add(outcome.channel)
                expected.requests += outcome.opening
                expected.event(place, outcome)
        if broken_at is not None:  # the line it broke in
            expected.read += 1
            expected.malformed.append((f"{file.name}:{broken_at}", "file ends unreadably here"))
    return expected


def expect_mbox(files: Sequence[MboxFile]) -> Expected:
    """docs/importers.md, mbox: malformed, repeated, or an event (by Date or separator line)."""
    expected, seen = Expected(), set[str]()
    for file in files:
        expected.unusable |= file.cut is not None  # read first, the whole run fails unsent
        if file.preamble:
            expected.malformed.append((f"{file.name}:{len(file.preamble)}", STRAY))
        for place, mail in file.placed():
            expected.read += 1
            expected.from_lines += mail.from_lines
            if isinstance(mail.outcome, Malformed):
                expected.malformed.append((place, mail.outcome.reason))
                continue
            expected.envelope_dates += mail.envelope_date
            event_id = mail.outcome.event_id
            if event_id in seen:
                expected.repeated += 1
                continue
            seen.add(event_id)
            assert mail.message_id is not None
            expected.message_ids[event_id] = mail.message_id
            if mail.in_reply_to is not None:
                expected.loops[event_id] = mail.in_reply_to
            expected.event(place, mail.outcome)
    return expected


# -- running an import -----------------------------------------------------------------------


@dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    events: list[tuple[bytes, Event]]  # record value, event
    letters: list[tuple[bytes, DeadLetter]]  # record value and header values, letter

    @property
    def summary(self) -> tuple[int, int, int, Counter[str]]:
        """The ingest summary line: received, sent, dead-lettered and by reason."""
        found = SUMMARY.search(self.result.stdout)
        assert found is not None, self.result.stdout
        reasons = (part.split(" ") for part in (found[5] or "").split(", ") if part)
        by_reason = Counter({code: _int(n) for code, n in reasons})
        return _int(found[1]), _int(found[3]), _int(found[4]), by_reason


class Importer:
    """``commpulse import <kind>`` of generated files, each run into topics of its own."""

    def __init__(self, broker: EmbeddedBroker, env: dict[str, str], folder: Path) -> None:
        self.broker, self.env, self.folder = broker, env, folder
        self.runs = itertools.count()

    def __call__(self, kind: str, files: Sequence[GhFile | MboxFile], *options: str) -> Run:
        folder = self.folder / f"run-{next(self.runs)}"
        folder.mkdir()
        paths = [folder / file.name for file in files]
        for path, file in zip(paths, files, strict=True):
            path.write_bytes(file.data())
        # what must not leave the importer is there to leave (unless the input is empty)
        texts = [file.text().strip() for file in files]
        assert any(map(SECRET.search, texts)) or not any(texts)
        topics = TopicSettings().prefixed(f"t{uuid.uuid4().hex[:10]}")
        bootstrap = self.broker.bootstrap_servers
        ensure_topics(bootstrap, topics.specs())
        env = self.env | {
            "COMMPULSE_TOPICS__EVENTS": topics.events,
            "COMMPULSE_TOPICS__DLQ": topics.dlq,
        }
        result = run_cli("import", kind, *map(str, paths), *options, env=env, timeout=120)
        events = [(r.value, decode(r.value)) for r in consume_all(bootstrap, topics.events)]
        letters = [
            (
                r.value + b"\n".join(v for _, v in r.headers),
                DeadLetter.from_record(r.value, r.headers),
            )
            for r in consume_all(bootstrap, topics.dlq)
        ]
        shutil.rmtree(folder)  # up to 20 MB a run
        return Run(result, events, letters)


@pytest.fixture
def importer(broker: EmbeddedBroker, cli_env: dict[str, str], tmp_path: Path) -> Importer:
    return Importer(broker, cli_env, tmp_path)


def check_run(run: Run, expected: Expected, importer: str) -> None:
    """What every import must give: exit code, summary, both topics exactly, no leak."""
    result = run.result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == expected.exit_code, (result.stdout, result.stderr[-3000:])
    assert "\x1b" not in result.stdout + result.stderr  # no terminal escape from the input
    outputs = [result.stdout.encode(), result.stderr.encode()]
    outputs += [value for value, _ in [*run.events, *run.letters]]
    leaks = [found for output in outputs for found in SECRET.findall(output)]
    assert not leaks, leaks[:5]
    if expected.unusable:  # one line (after the progress bar's), and nothing sent
        [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert re.fullmatch(r"error: \S+\.gz: (unreadable|cannot read): .+", error), error
        assert result.stderr.endswith(error + "\n") and result.stdout == ""
        assert run.events == [] and run.letters == []
        return

    received, sent, dead_lettered, by_reason = run.summary
    accepted, rejected = sum(expected.accepted.values()), expected.dead_lettered
    assert (received, sent, dead_lettered) == (
        accepted + rejected.total(),
        accepted,
        rejected.total(),
    )
    assert by_reason == Counter({code.value: n for code, n in rejected.items()})

    assert Counter(str(event.event_id) for _, event in run.events) == expected.accepted
    assert all(PSEUDONYM_PATTERN.fullmatch(event.actor_id) for _, event in run.events)
    places = Counter((letter.source, letter.rejection.code) for _, letter in run.letters)
    assert places == Counter(
        [(place, RejectCode.MALFORMED_ROW) for place, _ in expected.malformed]
        + [(place, code) for place, (_, code) in expected.rejected.items()]
    )
    pointers = dict(expected.malformed)
    for _, letter in run.letters:
        reason, raw = letter.rejection.reason, orjson.loads(letter.raw)
        assert reason.strip()
        if letter.rejection.code is RejectCode.MALFORMED_ROW:  # a pointer, nothing of the input
            assert reason == pointers[letter.source]
            assert raw == {"importer": importer, "source": letter.source, "reason": reason}
        else:  # the mapped event, redacted
            assert raw["event_id"] == expected.rejected[letter.source][0]
            assert raw["actor_id"] == raw["conversation_id"] == "<redacted>"
            assert {raw.get(key) for key in ("message_id", "in_reply_to")} <= {None, "<redacted>"}


def test_gharchive_files_of_hostile_lines(importer: Importer) -> None:
    covered: Counter[str] = Counter()

    @hypothesis_settings(examples, max_examples=12)
    @given(gh_hours())
    @example([GhFile("cut.json.gz", (), cut=5)])  # unusable whatever the draws: exit 1
    def import_hours(files: list[GhFile]) -> None:
        expected = expect_gharchive(files)
        run = importer("gharchive", files)
        check_run(run, expected, "gharchive")
        covered.update(gh_coverage(files, expected))
        if expected.unusable:
            return
        found = GH_LINE.search(run.result.stdout)
        assert found is not None, run.result.stdout
        read, imported, repositories, requests, skipped, malformed, repeated = map(
            _int, found.groups()
        )
        mapped, skips = expected.gh_mapped, expected.gh_skipped
        assert (read, imported, skipped, malformed, repeated) == (
            expected.read,
            mapped.total(),
            skips.total(),
            len(expected.malformed),
            expected.repeated,
        )
        assert read == imported + skipped + repeated + malformed  # every line accounted for
        assert imported == run.summary[1] + len(expected.rejected)  # sent, or dead-lettered
        assert (repositories, requests) == (len(expected.repositories), expected.requests)
        lines = re.findall(r"^  (\S+) → (\S+): (\S+)$", run.result.stdout, re.MULTILINE)
        assert Counter({(kind, made): _int(n) for kind, made, n in lines}) == mapped
        if skips:
            [line] = re.findall(r"^  skipped: (.*)$", run.result.stdout, re.MULTILINE)
            parts = (part.rsplit(" ", 1) for part in line.split(" · "))
            assert Counter({kind: _int(n) for kind, n in parts}) == skips

    import_hours()
    print(f"covered: {dict(covered)}")
    assert set(GH_TROUBLES) | {"2013", "future", "before 1990", "skipped", "repeated",
                               "blank line", "cut .gz", "unusable .gz"} <= set(covered)  # fmt: skip


def gh_coverage(files: Sequence[GhFile], expected: Expected) -> set[str]:
    covered = {line.trouble for file in files for line in file.lines if line.trouble}
    covered |= (
        {"blank line"} if any(line.outcome is None for f in files for line in f.lines) else set()
    )
    covered |= {"skipped"} if expected.gh_skipped else set()
    covered |= {"repeated"} if expected.repeated else set()
    covered |= {"cut .gz"} if any(f.cut is not None for f in files) else set()
    covered |= {"unusable .gz"} if expected.unusable else set()
    return covered


def test_mbox_archives_of_hostile_messages(importer: Importer) -> None:
    covered: Counter[str] = Counter()
    pseudonym: Callable[[str], str] = Pseudonymiser(PSEUDONYM_KEY.encode()).pseudonym

    @hypothesis_settings(examples, max_examples=12)
    @given(mbox_archives())
    @example([MboxFile("cut.mbox.gz", (), cut=5)])  # unusable whatever the draws: exit 1
    def import_archive(files: list[MboxFile]) -> None:
        expected = expect_mbox(files)
        run = importer("mbox", files, "--channel", CHANNEL)
        check_run(run, expected, "mbox")
        covered.update(mbox_coverage(files, expected))
        if expected.unusable:
            return
        found = MBOX_LINE.search(run.result.stdout)
        assert found is not None, run.result.stdout
        messages, repeated, threads, requests, answered, earlier, malformed, from_lines, dates = (
            map(_int, found.groups())
        )
        assert (messages, repeated, malformed, from_lines, dates) == (
            expected.read,
            expected.repeated,
            len(expected.malformed),
            expected.from_lines,
            expected.envelope_dates,
        )
        # Every message accounted for: sent, dead-lettered or repeated. A stray text before
        # the first message is no message, but malformed and dead-lettered.
        strays = sum(letter.rejection.reason == STRAY for _, letter in run.letters)
        assert messages + strays == run.summary[0] + repeated
        assert requests + earlier == threads and answered <= requests
        for _, event in run.events:
            event_id = str(event.event_id)
            assert event.message_id == pseudonym(expected.message_ids[event_id])
            assert event.conversation_id and PSEUDONYM_PATTERN.fullmatch(event.conversation_id)
            if event_id in expected.loops:  # a reply loop, cut: each still names its parent
                assert event.in_reply_to == pseudonym(expected.loops[event_id])

    import_archive()
    print(f"covered: {dict(covered)}")
    assert {*(f for f in MAIL_FAULTS if f), "reply loop", "repeated", "From lines", "stray text",
            ".gz", "CRLF", "unusable .gz"} <= set(covered)  # fmt: skip


def mbox_coverage(files: Sequence[MboxFile], expected: Expected) -> set[str]:
    mails = [mail for file in files for mail in file.mails]
    covered = {mail.fault for mail in mails if mail.fault}
    covered |= {"reply loop"} if expected.loops else set()
    covered |= {"repeated"} if expected.repeated else set()
    covered |= {"From lines"} if expected.from_lines else set()
    covered |= {"stray text"} if any(file.preamble for file in files) else set()
    covered |= {".gz"} if any(file.name.endswith(".gz") for file in files) else set()
    covered |= {"CRLF"} if any(file.crlf for file in files) else set()
    covered |= {"unusable .gz"} if expected.unusable else set()
    return covered
