"""Hostile input through the real HTTP ingest and the file importers, into the real broker.

Property-based (``tests/hostile.py``): every generated input is either a valid
event, which must arrive on the events topic (pseudonymised, once per batch), or
an input with one problem, which must arrive on the dead-letter topic with its
class, a reason and its raw bytes; so must a valid event whose id came earlier in
its batch (``duplicate_event_id``). Per batch, ``received = accepted +
dead-lettered``; over the whole test, the topics hold exactly what the responses
and results said. The server stays up throughout.
"""

from __future__ import annotations

import gzip
import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from commpulse.settings import Settings
from ingest import DeadLetter, Producer, RejectCode, decode
from ingest.importers import EVENT_FIELDS, open_file
from ingest.pseudonym import PSEUDONYM_PATTERN
from tests.hostile import Input, Outcome, batches, csv_bytes, csv_records, json_lines, outcome, rows
from tests.integration.support import (
    IngestServer,
    consume_all,
    producer_for,
    run_cli,
    serve_ingest,
)

TOKEN = "hostile-input-token-0123456789"
EXIT_DEAD_LETTERED = 3

examples = hypothesis_settings(
    deadline=None,
    database=None,  # no examples saved between runs: CI sees what a developer sees
    # The same examples every run: these tests also assert how many classes the examples
    # cover, which a random draw of 40 batches missed once in a while (the unit properties
    # in tests/unit/ingest/ explore at random).
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Tally:
    """What the responses and results said, over every batch: the topics must agree."""

    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[RejectCode] = field(default_factory=Counter)
    raw: Counter[bytes] = field(default_factory=Counter)
    sources: set[str] = field(default_factory=set)
    batches: int = 0

    def add(self, batch: Sequence[Input], expected: Outcome) -> None:
        self.batches += 1
        self.accepted.update(expected.accepted)
        self.rejected.update(code for _, code in expected.rejections)
        self.raw.update(batch[index].raw for index, _ in expected.rejections)

    def verify(self, settings: Settings) -> None:
        bootstrap = settings.kafka.bootstrap_servers
        events = [decode(r.value) for r in consume_all(bootstrap, settings.topics.events)]
        assert Counter(str(event.event_id) for event in events) == self.accepted
        assert all(PSEUDONYM_PATTERN.fullmatch(event.actor_id) for event in events)
        letters = [
            DeadLetter.from_record(r.value, r.headers)
            for r in consume_all(bootstrap, settings.topics.dlq)
        ]
        assert Counter(letter.rejection.code for letter in letters) == self.rejected
        assert Counter(letter.raw for letter in letters) == self.raw  # nothing lost, byte for byte
        assert all(letter.rejection.reason.strip() for letter in letters)
        assert not any(letter.truncated for letter in letters)
        self.sources.update(letter.source for letter in letters)
        print(
            f"{self.batches} batches: {sum(self.accepted.values())} accepted, "
            f"{sum(self.rejected.values())} dead-lettered "
            f"({', '.join(f'{code} {n}' for code, n in self.rejected.most_common())})"
        )
        assert len(self.rejected) >= 6, "the examples covered too few classes to mean much"


# -- HTTP ------------------------------------------------------------------------------


@pytest.fixture
def ingest_server(cli_env: dict[str, str]) -> Iterator[IngestServer]:
    with serve_ingest(cli_env, TOKEN) as server:
        yield server


blank_lines = st.sampled_from([b"", b"  ", b"\t", b"\r"])


def test_http_ingest_answers_every_hostile_batch_exactly_and_stays_up(
    ingest_server: IngestServer, settings: Settings
) -> None:
    tally = Tally()

    @hypothesis_settings(examples, max_examples=60)
    @given(batches(json_lines()), st.lists(st.tuples(st.integers(0, 40), blank_lines)))
    def post_batch(batch: list[Input], blanks: list[tuple[int, bytes]]) -> None:
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
        ]
        assert all(error["reason"].strip() for error in errors)
        assert ingest_server.alive()
        tally.add(batch, expected)

    post_batch()
    assert httpx.get(f"{ingest_server.url}/healthz", timeout=5).json() == {
        "status": "ok",
        "kafka": True,
    }
    tally.verify(settings)
    assert all(source.startswith("http:") for source in tally.sources)


# -- files ------------------------------------------------------------------------------


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    with producer_for(settings) as running:
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


def _ingest_file(producer: Producer, path: Path, batch: Sequence[Input], tally: Tally) -> None:
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
    )
    assert all(rejection.reason.strip() for _, _, rejection in result.rejections)
    tally.add(batch, expected)


def test_jsonl_files_of_hostile_lines(
    producer: Producer, settings: Settings, tmp_path: Path
) -> None:
    tally = Tally()
    names = itertools.count()

    @hypothesis_settings(examples, max_examples=40)
    @given(batches(json_lines()), st.lists(st.integers(0, 40), max_size=5), st.booleans())
    def ingest_file(batch: list[Input], blanks: list[int], gzipped: bool) -> None:
        name = f"lines-{next(names)}.jsonl" + (".gz" if gzipped else "")
        _ingest_file(producer, write_jsonl(tmp_path / name, batch, blanks), batch, tally)

    ingest_file()
    tally.verify(settings)


def test_csv_files_of_hostile_rows(producer: Producer, settings: Settings, tmp_path: Path) -> None:
    tally = Tally()
    names = itertools.count()

    @hypothesis_settings(examples, max_examples=40)
    @given(batches(csv_records(), max_size=20), st.lists(st.integers(0, 20), max_size=5))
    def ingest_file(batch: list[Input], blanks: list[int]) -> None:
        name = f"rows-{next(names)}.csv" + (".gz" if len(batch) % 2 else "")
        _ingest_file(producer, write_csv(tmp_path / name, batch, blanks), batch, tally)

    ingest_file()
    tally.verify(settings)
    assert RejectCode.MALFORMED_ROW in tally.rejected


def test_parquet_files_of_hostile_rows(
    producer: Producer, settings: Settings, tmp_path: Path
) -> None:
    tally = Tally()
    names = itertools.count()

    @hypothesis_settings(examples, max_examples=40)
    @given(batches(rows(), max_size=20))
    def ingest_file(batch: list[Input]) -> None:
        path = write_parquet(tmp_path / f"rows-{next(names)}.parquet", batch)
        _ingest_file(producer, path, batch, tally)

    ingest_file()
    tally.verify(settings)


def test_the_ingest_command_counts_every_hostile_input_of_every_format(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tally = Tally()
    runs = itertools.count()

    @hypothesis_settings(examples, max_examples=4)
    @given(
        batches(json_lines(), max_size=40),
        batches(csv_records(), max_size=40),
        batches(rows(), max_size=40),
    )
    def ingest_files(jsonl: list[Input], csv: list[Input], parquet: list[Input]) -> None:
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
        for batch, batch_outcome in zip((jsonl, csv, parquet), expected, strict=True):
            tally.add(batch, batch_outcome)

    ingest_files()
    tally.verify(settings)
