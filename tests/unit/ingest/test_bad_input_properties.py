"""Properties of ingest on hostile input, without Kafka: every input gets its outcome, none crash.

The strategies (``tests/hostile.py``) build each bad input with exactly one
problem and the class it must be dead-lettered with; valid events (real history
from 2013, the first instant of 1990, a time a day ahead included) must pass.
Every kind of input of every format is tried (the tests are parametrised by
kind), against a validator whose clock is the now the times were written for,
so the boundaries are exact. Arbitrary bytes and mappings must never raise:
ingest turns everything into an event or a rejection with a reason.
"""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ingest import Event, Pseudonymiser, RejectCode, Rejection, Validator, encode
from ingest.http import split_body
from ingest.importers import EVENT_FIELDS, CsvFile, JsonLinesFile
from ingest.pseudonym import PSEUDONYM_PATTERN
from tests.hostile import (
    CSV,
    CSV_FIELD_LIMIT,
    JSON,
    ROWS,
    Format,
    Input,
    batches,
    csv_bytes,
    json_values,
    valid_events,
)

validator = Validator()
pseudonymiser = Pseudonymiser(b"unit-test-key-0123456789")
#: Per kind: every kind is tried, whatever the draws.
per_kind = settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _at_now(item: Input) -> tuple[Input, Validator]:
    """``item`` with its times resolved, and a validator whose clock is that now."""
    now = datetime.now(UTC)
    return item.at(now), Validator(clock=lambda: now)


def _check(outcome: Event | Rejection, item: Input) -> None:
    if item.expected is None:
        assert isinstance(outcome, Event), f"{item.kind} {item.raw[:300]!r} rejected: {outcome}"
        assert str(outcome.event_id) == item.event_id
        assert PSEUDONYM_PATTERN.fullmatch(outcome.actor_id)
    else:
        assert isinstance(outcome, Rejection), f"{item.kind} {item.raw[:300]!r} accepted"
        assert outcome.code is item.expected, f"{item.kind} {item.raw[:300]!r}: {outcome}"
        assert outcome.reason.strip()


@pytest.mark.parametrize("kind", list(JSON.kinds))
@per_kind
@given(data=st.data())
def test_every_kind_of_json_input_is_accepted_or_rejected_with_its_class(
    kind: str, data: st.DataObject
) -> None:
    item, clocked = _at_now(data.draw(JSON.inputs(kind)))
    _check(clocked.from_json(item.raw, pseudonymiser.context), item)


@pytest.mark.parametrize("kind", list(ROWS.kinds))
@per_kind
@given(data=st.data())
def test_every_kind_of_row_is_accepted_or_rejected_with_its_class(
    kind: str, data: st.DataObject
) -> None:
    item, clocked = _at_now(data.draw(ROWS.inputs(kind)))
    assert item.cells is not None
    cells = {name: value for name, value in item.cells.items() if value is not None}
    _check(clocked.from_mapping(cells, pseudonymiser.context), item)


@pytest.mark.parametrize("fmt", [JSON, ROWS, CSV], ids=lambda fmt: fmt.name)
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_a_tour_holds_every_kind_a_repeated_event_and_one_heavy_input(
    fmt: Format, data: st.DataObject
) -> None:
    batch = data.draw(batches(fmt, tour=True, max_size=10))
    assert {item.kind for item in batch} == set(fmt.kinds)
    assert all(item.expected == fmt.kinds[item.kind].expected for item in batch)
    assert sum(item.kind in fmt.heavy for item in batch) == 1
    ids = [item.event_id for item in batch if item.valid]
    assert len(set(ids)) < len(ids)  # a duplicate id


@settings(max_examples=50, deadline=None)
@given(valid_events())
def test_valid_events_survive_the_round_trip_through_the_log(data: dict[str, Any]) -> None:
    event = validator.from_json(orjson.dumps(data), pseudonymiser.context)
    assert isinstance(event, Event)
    again = validator.from_json(encode(event), pseudonymiser.context)  # pseudonyms stay as they are
    assert again == event


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash_the_validator(raw: bytes) -> None:
    outcome = validator.from_json(raw, pseudonymiser.context)
    assert isinstance(outcome, Event | Rejection)
    if isinstance(outcome, Rejection):
        assert outcome.reason.strip()


extreme_offsets = st.integers(-(24 * 60) + 1, 24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
odd_values = st.one_of(
    json_values,
    st.datetimes(timezones=st.one_of(st.none(), extreme_offsets)),  # year 1 .. 9999
    st.dates(),
    st.binary(max_size=20),
    st.floats(),  # NaN and infinities too
    st.integers(-(2**80), 2**80),
    st.decimals(allow_nan=True),
    st.text(max_size=300),
)


@settings(max_examples=100, deadline=None)
@given(valid_events(), st.dictionaries(st.sampled_from(EVENT_FIELDS), odd_values, max_size=4))
def test_rows_with_any_values_never_crash_the_validator(
    data: dict[str, Any], changes: dict[str, Any]
) -> None:
    outcome = validator.from_mapping({**data, **changes}, pseudonymiser.context)
    assert isinstance(outcome, Event | Rejection)
    if isinstance(outcome, Event):
        assert encode(outcome)  # what the producer sends
    else:
        assert outcome.reason.strip()


def test_times_without_a_utc_instant_are_rejected_not_raised() -> None:
    # datetime cannot hold these in UTC: astimezone() overflows (it crashed ingest before).
    earliest = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    latest = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    for when, code in ((earliest, RejectCode.TOO_OLD), (latest, RejectCode.FUTURE_TIME)):
        data = {**_event(), "occurred_at": when}
        for outcome in (
            validator.from_mapping(data),
            validator.from_json(orjson.dumps({**data, "occurred_at": when.isoformat()})),
        ):
            assert isinstance(outcome, Rejection) and outcome.code is code, outcome


def test_control_characters_at_either_end_of_an_identifier_are_rejected() -> None:
    for value in ("\x00m-1", "m-1\x1b", "\x7fm-1", "m\x07"):
        outcome = validator.from_json(orjson.dumps({**_event(), "message_id": value}))
        assert isinstance(outcome, Rejection) and outcome.code is RejectCode.INVALID_VALUE
        assert value not in outcome.reason


def _event() -> dict[str, Any]:
    return {
        "event_id": "0b6f8e52-6c1e-4b8e-9d51-3f0a3b9c7d21",
        "event_type": "message_read",
        "occurred_at": datetime(2013, 5, 17, 8, tzinfo=UTC).isoformat(),
        "channel_id": "im-1",
        "channel_kind": "im",
        "scope": "internal",
        "actor_id": "alice@corp.example",
        "actor_role": "employee",
        "message_id": "m-1",
    }


blank = st.sampled_from([b"", b"   ", b"\t", b"\r"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(JSON.inputs().map(lambda item: item.raw), blank), max_size=10))
def test_ndjson_bodies_are_split_into_their_non_blank_lines(lines: list[bytes]) -> None:
    records = split_body(b"\n".join(lines), "application/x-ndjson")
    expected = [
        (line.rstrip(b"\r"), f"http:{number}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]
    assert [(record.data, record.source) for record in records] == expected


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["application/json", "application/x-ndjson"]))
def test_any_body_splits_without_crashing(body: bytes, content_type: str) -> None:
    assume(body.strip())  # the app answers an empty body with 400 before splitting it
    records = split_body(body, content_type)
    assert all(isinstance(record.data, bytes) and record.data.strip() for record in records)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(JSON.inputs().map(lambda item: item.raw), blank), max_size=10))
def test_jsonl_files_give_every_non_blank_line_byte_for_byte(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.jsonl"
        path.write_bytes(b"\n".join(lines))
        source = JsonLinesFile(path)
        source.open()
        got = [(record.data, record.source) for record in source.records()]
    assert got == [
        (line.rstrip(b"\r"), f"in.jsonl:{number}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]


@settings(
    max_examples=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.booleans().flatmap(lambda tour: batches(CSV, tour=tour, max_size=10)),
    st.sets(st.integers(0, 9)),
)
def test_csv_rows_are_each_accepted_or_rejected_with_their_class(
    batch: list[Input], blanks: set[int]
) -> None:
    now = datetime.now(UTC)
    clocked = Validator(clock=lambda: now)
    records = [item.at(now) for item in batch]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.csv"
        path.write_bytes(csv_bytes(records, blanks))
        source = CsvFile(path)
        source.open()
        got = list(source.records())
    assert len(got) == len(records)  # one input per row; blank lines are none
    for record, item in zip(got, records, strict=True):
        if isinstance(record.data, Rejection):
            outcome: Event | Rejection = record.data
        else:
            assert isinstance(record.data, dict)
            outcome = clocked.from_mapping(record.data, pseudonymiser.context)
        _check(outcome, item)
        if isinstance(outcome, Rejection):
            assert record.raw == item.raw  # the dead letter keeps the row as it was


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_csv_files_with_any_body_never_crash_the_reader(body: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.csv"
        path.write_bytes(b",".join(name.encode() for name in EVENT_FIELDS) + b"\n" + body)
        source = CsvFile(path)
        source.open()
        for record in source.records():
            assert isinstance(record.data, dict | Rejection)
            outcome = (
                validator.from_mapping(record.data)
                if isinstance(record.data, dict)
                else record.data
            )
            assert isinstance(outcome, Event | Rejection)


def _csv_line(cells: dict[str, Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([cells.get(name, "") for name in EVENT_FIELDS])
    return buffer.getvalue().removesuffix("\r\n")


def test_a_quoted_cell_over_the_csv_field_limit_is_one_malformed_row_whatever_it_holds() -> None:
    event = _event()
    inside = _csv_line({**event, "event_id": "5f0c1a8e-2d4b-4c1e-9a7f-1b2c3d4e5f60"})
    cell = "y" * (CSV_FIELD_LIMIT + 10) + "\n" + inside + "\nz"  # e.g. a pasted mail body
    record = _csv_line({**event, "department": cell})
    after = _csv_line({**event, "event_id": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.csv"
        lines = [_csv_line({name: name for name in EVENT_FIELDS}), record, after]
        path.write_bytes("\r\n".join([*lines, ""]).encode())
        source = CsvFile(path)
        source.open()
        got = list(source.records())
    assert [type(record.data) for record in got] == [Rejection, dict]
    assert isinstance(got[0].data, Rejection) and got[0].data.code is RejectCode.MALFORMED_ROW
    assert got[0].raw == record.encode()  # the dead letter keeps the record as it was
    assert [record.source for record in got] == ["in.csv:2", "in.csv:5"]  # 3 lines, then 1
