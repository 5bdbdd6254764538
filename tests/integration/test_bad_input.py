"""Hostile input through the real HTTP ingest and the file importers, into the real broker.

Property-based (``tests/hostile.py``): every generated input is either a valid
event, which must arrive on the events topic (pseudonymised, once per batch), or
an input with one problem, which must arrive on the dead-letter topic with its
class, a reason and its raw bytes (the first 512 KiB of a huge one, with its
size); so must a valid event whose id came earlier in its batch
(``duplicate_event_id``). Per batch, ``received = accepted + dead-lettered``;
over the whole test, the topics hold exactly what the responses and results
said. The server stays up throughout.

Coverage does not depend on hypothesis's draws: each test first sends a few
*tours*, batches that hold every kind of input of their format, then batches
whose inputs' kinds are drawn evenly; at the end it asserts that its format
gave every class it can carry (below) and every kind of input, and that the
valid ones (2013, the first instant of 1990, a day ahead) were accepted.
"""

from __future__ import annotations

import functools
import gzip
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from commpulse.settings import Settings
from ingest import DeadLetter, Producer, RejectCode, Validator, decode
from ingest.deadletter import MAX_RAW_BYTES
from ingest.importers import EVENT_FIELDS, open_file
from ingest.pseudonym import PSEUDONYM_PATTERN
from tests.hostile import CSV, JSON, ROWS, Format, Input, Outcome, batches, csv_bytes, outcome
from tests.integration.support import (
    IngestServer,
    consume_all,
    producer_for,
    run_cli,
    serve_ingest,
)

TOKEN = "hostile-input-token-0123456789"
EXIT_DEAD_LETTERED = 3

#: A JSON input (a line of an HTTP body or a JSONL file) can carry every class but
#: ``malformed_row``, which is a table's.
JSON_CLASSES: Final = frozenset(RejectCode) - {RejectCode.MALFORMED_ROW}
#: A CSV row is text cells under a header: not JSON (no ``malformed_json``,
#: ``not_an_object``); a column that is no event field refuses the whole file before
#: anything is sent (no ``unexpected_field``); every field has a length limit far below
#: the event size limit, so a row is never ``oversized`` — a huge cell is an
#: ``invalid_value``, or a ``malformed_row`` when it is over the CSV field limit.
CSV_CLASSES: Final = frozenset(RejectCode) - {
    RejectCode.MALFORMED_JSON,
    RejectCode.NOT_AN_OBJECT,
    RejectCode.UNEXPECTED_FIELD,
    RejectCode.OVERSIZED,
}
#: Parquet, as CSV, but in columns: no row can be ragged or unparsable (a file that
#: cannot be read is refused whole, before anything is sent), and a string column is
#: UTF-8 by definition (the writer and reader check it), so no text is invalid UTF-8
#: (bytes in a binary column are no text: ingest rejects them as an ``invalid_value``).
PARQUET_CLASSES: Final = CSV_CLASSES - {RejectCode.MALFORMED_ROW, RejectCode.INVALID_ENCODING}
#: Valid in every format: history (2013), 1990-01-01T00:00:00Z, now + 23 h, now + 1 day.
MUST_ACCEPT: Final = frozenset(
    {"valid", "valid_2013", "valid_at_1990", "valid_in_23h", "valid_in_1_day"}
)
#: ``commpulse ingest`` validates a while after the test wrote the times (it starts up
#: first): its now + 1 day + 1 s is written this much later, to stay beyond its tolerance.
CLI_SLACK: Final = timedelta(seconds=60)

examples = hypothesis_settings(
    deadline=None,
    database=None,  # no examples saved between runs: CI sees what a developer sees
    # The same examples every run (the unit properties in tests/unit/ingest/ explore at
    # random); coverage comes from the tours, whatever the examples.
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def explore(
    check: Callable[..., None],
    fmt: Format,
    *more: st.SearchStrategy[Any],
    tours: int,
    mixed: int,
    max_size: int = 30,
) -> None:
    """``check`` on ``tours`` batches holding every kind of ``fmt``, then ``mixed`` others."""
    for tour, count in ((True, tours), (False, mixed)):
        strategy = batches(fmt, tour=tour, max_size=10 if tour else max_size)
        hypothesis_settings(examples, max_examples=count)(given(strategy, *more)(check))()


@dataclass
class Tally:
    """What the responses and results said, over every batch: the topics must agree."""

    accepted: Counter[str] = field(default_factory=Counter)
    #: each dead letter's value (the raw input, cut at MAX_RAW_BYTES) and the raw size
    letters: Counter[tuple[bytes, int]] = field(default_factory=Counter)
    rejected: defaultdict[str, Counter[RejectCode]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    kinds: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    accepted_kinds: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sources: set[str] = field(default_factory=set)
    batches: int = 0

    def add(self, fmt: str, batch: Sequence[Input], expected: Outcome) -> None:
        self.batches += 1
        self.accepted.update(expected.accepted)
        self.rejected[fmt].update(code for _, code in expected.rejections)
        self.letters.update(
            (batch[index].raw[:MAX_RAW_BYTES], len(batch[index].raw))
            for index, _ in expected.rejections
        )
        self.kinds[fmt].update(item.kind for item in batch)
        rejected = {index for index, _ in expected.rejections}
        self.accepted_kinds[fmt].update(
            item.kind for index, item in enumerate(batch) if index not in rejected
        )

    def verify(self, settings: Settings) -> None:
        bootstrap = settings.kafka.bootstrap_servers
        events = [decode(r.value) for r in consume_all(bootstrap, settings.topics.events)]
        assert Counter(str(event.event_id) for event in events) == self.accepted
        assert all(PSEUDONYM_PATTERN.fullmatch(event.actor_id) for event in events)
        letters = [
            DeadLetter.from_record(r.value, r.headers)
            for r in consume_all(bootstrap, settings.topics.dlq)
        ]
        rejected = sum(self.rejected.values(), Counter[RejectCode]())
        assert Counter(letter.rejection.code for letter in letters) == rejected
        # Nothing lost, byte for byte; a huge input's first MAX_RAW_BYTES, with its size.
        assert Counter((letter.raw, letter.raw_size) for letter in letters) == self.letters
        assert all(letter.truncated == (letter.raw_size > MAX_RAW_BYTES) for letter in letters)
        assert all(letter.rejection.reason.strip() for letter in letters)
        self.sources.update(letter.source for letter in letters)
        print(
            f"{self.batches} batches: {self.accepted.total()} accepted, "
            f"{rejected.total()} dead-lettered "
            f"({', '.join(f'{code} {n}' for code, n in rejected.most_common())})"
        )

    def assert_covers(self, name: str, fmt: Format, classes: frozenset[RejectCode]) -> None:
        """``name`` gave exactly the classes it can carry, every kind, and accepted the valid."""
        rejected = set(self.rejected[name])
        assert rejected == classes, (
            f"{name}: missing {sorted(classes - rejected)}, unexpected {sorted(rejected - classes)}"
        )
        assert RejectCode.DUPLICATE_EVENT_ID in rejected
        assert set(self.kinds[name]) == set(fmt.kinds)
        missing = MUST_ACCEPT - self.accepted_kinds[name]
        assert not missing, f"{name}: no valid {sorted(missing)} accepted"


# -- HTTP ------------------------------------------------------------------------------


@pytest.fixture
def ingest_server(cli_env: dict[str, str]) -> Iterator[IngestServer]:
    with serve_ingest(cli_env, TOKEN) as server:
        yield server


blank_lines = st.lists(st.tuples(st.integers(0, 40), st.sampled_from([b"", b"  ", b"\t", b"\r"])))


def test_http_ingest_answers_every_hostile_batch_exactly_and_stays_up(
    ingest_server: IngestServer, settings: Settings
) -> None:
    tally = Tally()

    def post_batch(drawn: list[Input], blanks: list[tuple[int, bytes]]) -> None:
        # The server's now is a moment later than this one: now + 1 day is within its
        # tolerance, now + 1 day + 1 s beyond it, unless the request takes over a second.
        now = datetime.now(UTC)
        batch = [item.at(now) for item in drawn]
        lines = [item.raw for item in batch]
        for at, blank in blanks:  # blank lines are not inputs
            lines.insert(min(at, len(lines)), blank)
        response = ingest_server.post(b"\n".join(lines))
        expected = outcome(batch)
        payload = response.json()
        assert response.status_code == (400 if expected.rejections else 202), payload
        counts = (payload["received"], payload["accepted"], payload["dead_lettered"])
        assert counts == (len(batch), len(expected.accepted), len(expected.rejections))
        assert (payload["duplicates"], payload["failed"]) == (expected.duplicates, 0)
        assert payload["received"] == payload["accepted"] + payload["dead_lettered"]
        errors = payload["errors"]
        assert [(e["index"], e["code"]) for e in errors] == [
            (index, code.value) for index, code in expected.rejections
        ], [(batch[e["index"]].kind, e["code"], e["reason"][:200]) for e in errors]
        assert all(error["reason"].strip() for error in errors)
        assert ingest_server.alive()
        tally.add("http", batch, expected)

    explore(post_batch, JSON, blank_lines, tours=5, mixed=50)
    assert httpx.get(f"{ingest_server.url}/healthz", timeout=5).json() == {
        "status": "ok",
        "kafka": True,
    }
    tally.verify(settings)
    tally.assert_covers("http", JSON, JSON_CLASSES)
    assert all(source.startswith("http:") for source in tally.sources)


# -- files ------------------------------------------------------------------------------


@dataclass
class Clock:
    """The validator's clock in the file tests: the now the batch's times were written for."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def producer(settings: Settings, clock: Clock) -> Iterator[Producer]:
    # The real validator with its default limits; only its clock is pinned, so that the
    # time boundaries (now + 1 day accepted, + 1 s more rejected) are exact.
    with producer_for(settings, validator=Validator(clock=clock)) as running:
        yield running


def write_jsonl(path: Path, batch: Sequence[Input], blanks: Sequence[int]) -> Path:
    lines = [item.raw for item in batch]
    for at in sorted(blanks, reverse=True):
        lines.insert(min(at, len(lines)), b"")
    data = b"\n".join(lines) + b"\n"
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_csv(path: Path, batch: Sequence[Input], blanks: Sequence[int]) -> Path:
    data = csv_bytes(batch, blanks)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_parquet(path: Path, batch: Sequence[Input]) -> Path:
    cells = [item.cells for item in batch]
    assert all(row is not None for row in cells)
    pl.DataFrame(cells, schema=dict.fromkeys(EVENT_FIELDS, pl.String)).write_parquet(path)
    return path


def _ingest_file(
    producer: Producer,
    clock: Clock,
    write: Callable[[list[Input]], Path],
    drawn: Sequence[Input],
    tally: Tally,
    fmt: str,
) -> None:
    clock.now = datetime.now(UTC)
    batch = [item.at(clock.now) for item in drawn]
    path = write(batch)
    result = producer.send_many(open_file(path).records(), wait=True, keep_rejections=10_000)
    expected = outcome(batch)
    assert (result.received, result.accepted, result.dead_lettered) == (
        len(batch),
        len(expected.accepted),
        len(expected.rejections),
    )
    assert (result.duplicates, result.failed) == (expected.duplicates, 0)
    assert [(index, rejection.code) for index, _, rejection in result.rejections] == (
        expected.rejections
    ), [(batch[index].kind, str(rejection)[:200]) for index, _, rejection in result.rejections]
    assert all(rejection.reason.strip() for _, _, rejection in result.rejections)
    tally.add(fmt, batch, expected)


def test_jsonl_files_of_hostile_lines(
    producer: Producer, clock: Clock, settings: Settings, tmp_path: Path
) -> None:
    tally = Tally()
    names = itertools.count()

    def ingest_file(batch: list[Input], blanks: list[int], gzipped: bool) -> None:
        path = tmp_path / (f"lines-{next(names)}.jsonl" + (".gz" if gzipped else ""))
        write = functools.partial(write_jsonl, path, blanks=blanks)
        _ingest_file(producer, clock, write, batch, tally, "jsonl")

    blanks = st.lists(st.integers(0, 40), max_size=5)
    explore(ingest_file, JSON, blanks, st.booleans(), tours=4, mixed=32)
    tally.verify(settings)
    tally.assert_covers("jsonl", JSON, JSON_CLASSES)


def test_csv_files_of_hostile_rows(
    producer: Producer, clock: Clock, settings: Settings, tmp_path: Path
) -> None:
    tally = Tally()
    names = itertools.count()

    def ingest_file(batch: list[Input], blanks: list[int]) -> None:
        path = tmp_path / (f"rows-{next(names)}.csv" + (".gz" if len(batch) % 2 else ""))
        write = functools.partial(write_csv, path, blanks=blanks)
        _ingest_file(producer, clock, write, batch, tally, "csv")

    blanks = st.lists(st.integers(0, 20), max_size=5)
    explore(ingest_file, CSV, blanks, tours=4, mixed=32, max_size=20)
    tally.verify(settings)
    tally.assert_covers("csv", CSV, CSV_CLASSES)


def test_parquet_files_of_hostile_rows(
    producer: Producer, clock: Clock, settings: Settings, tmp_path: Path
) -> None:
    tally = Tally()
    names = itertools.count()

    def ingest_file(batch: list[Input]) -> None:
        path = tmp_path / f"rows-{next(names)}.parquet"
        _ingest_file(
            producer, clock, functools.partial(write_parquet, path), batch, tally, "parquet"
        )

    explore(ingest_file, ROWS, tours=4, mixed=32, max_size=20)
    tally.verify(settings)
    tally.assert_covers("parquet", ROWS, PARQUET_CLASSES)


def test_the_ingest_command_counts_every_hostile_input_of_every_format(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tally = Tally()
    runs = itertools.count()

    @hypothesis_settings(examples, max_examples=4)
    @given(
        batches(JSON, tour=True, max_size=20),
        batches(CSV, tour=True, max_size=20),
        batches(ROWS, tour=True, max_size=20),
    )
    def ingest_files(json_lines: list[Input], csv_rows: list[Input], rows: list[Input]) -> None:
        now = datetime.now(UTC)
        jsonl, csv, parquet = (
            [item.at(now, slack=CLI_SLACK) for item in batch]
            for batch in (json_lines, csv_rows, rows)
        )
        folder = tmp_path / f"run-{next(runs)}"
        folder.mkdir()
        paths = [
            write_jsonl(folder / "events.jsonl", jsonl, []),
            write_csv(folder / "events.csv.gz", csv, []),
            write_parquet(folder / "events.parquet", parquet),
        ]
        result = run_cli("ingest", *map(str, paths), env=cli_env)
        expected = [outcome(batch) for batch in (jsonl, csv, parquet)]
        received = sum(e.received for e in expected)
        sent = sum(len(e.accepted) for e in expected)
        rejected = Counter(code for e in expected for _, code in e.rejections)
        assert result.returncode == (EXIT_DEAD_LETTERED if rejected else 0), result.stderr
        assert "Traceback" not in result.stderr
        summary = result.stdout.strip().splitlines()[-1]
        assert summary.startswith(
            f"ingested {received:,} inputs from 3 files · {sent:,} sent · "
            f"{rejected.total():,} dead-lettered"
        ), summary
        for code, count in rejected.items():
            assert f"{code.value} {count:,}" in summary
        for name, batch, batch_outcome in zip(
            ("jsonl", "csv", "parquet"), (jsonl, csv, parquet), expected, strict=True
        ):
            tally.add(name, batch, batch_outcome)

    ingest_files()
    tally.verify(settings)
    tally.assert_covers("jsonl", JSON, JSON_CLASSES)
    tally.assert_covers("csv", CSV, CSV_CLASSES)
    tally.assert_covers("parquet", ROWS, PARQUET_CLASSES)
