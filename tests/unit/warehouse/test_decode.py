"""The batch decoder gives exactly what the event model gives, record by record.

The reference is :func:`warehouse.decode.decode_record` (``Event.model_validate_json``, then
``model_dump``): a batch of raw record values (valid events of every type, written in odd but
valid ways, and events with one thing wrong) must give the same rows, column by column and in
the same order, and the same dead letters with the same reasons.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from ingest import REQUIRED_FIELDS, Event, EventType, encode
from ingest.deadletter import DeadLetter
from ingest.events import ActorRole, ChannelKind, Decision, RequestCategory, Scope, Visibility
from tests.hostile import JSON, batches, channel_ids, identifiers, json_values
from warehouse.decode import COLUMNS, BatchDecoder, DecodedBatch, decode_record

TOPIC = "events"
examples = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- valid events, written in odd but valid ways -----------------------------------------

#: whitespace and controls at the edge of an identifier: all of them make it invalid
_EDGES = [" ", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\u0085", "\u1680", "\x00", "\x7f"]
#: characters that are not whitespace though they look empty: valid at the edge
_NOT_SPACE = ["\u200b", "\u180e", "\ufeff", "\u2060"]
_unicode_ids = st.one_of(
    identifiers,
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=20),
    st.builds(lambda a, b: a + b, st.sampled_from(_NOT_SPACE), identifiers),
    st.sampled_from(['a"b', "back\\slash", "é", "日本語", "a b", "😀", "x" * 256]),
)
_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def times(draw: st.DrawFn, years: tuple[int, int] = (1990, 2100)) -> str:
    """An aware time as text: any offset (Z, z, +00:00, -00:00 for UTC), 0 to 9 fraction
    digits, T, t or a space between date and time."""
    instant = draw(
        st.datetimes(datetime(years[0], 1, 2), datetime(years[1], 12, 30), timezones=st.just(UTC))
    )
    local = instant.astimezone(draw(_offsets))
    spec = draw(st.sampled_from(["seconds", "milliseconds", "microseconds"]))
    text = local.replace(tzinfo=None).isoformat(timespec=spec)
    if "." in text:
        text += draw(st.sampled_from(["", "", "7", "123"]))
    offset = local.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        zone = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00"]))
    else:
        zone = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return text.replace("T", draw(st.sampled_from(["T", "T", "t", " "])), 1) + zone


_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "conversation_id": _unicode_ids,
    "message_id": _unicode_ids,
    "in_reply_to": _unicode_ids,
    "recipient_count": st.one_of(st.integers(0, 10_000_000), st.sampled_from([0, 10_000_000])),
    "duration_s": st.one_of(
        st.floats(0, 31 * 86400.0), st.integers(0, 31 * 86400), st.just(31 * 86400.0)
    ),
    "planned_duration_s": st.floats(0, 31 * 86400.0),
    "score": st.integers(1, 5),
    "decision": st.sampled_from([m.value for m in Decision]),
    "category": st.sampled_from([m.value for m in RequestCategory]),
    "visibility": st.sampled_from([m.value for m in Visibility]),
    "department": st.one_of(identifiers.map(lambda s: s.replace("@", "-")), st.just("ops")),
}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event as JSON-ready data, in model order (ingest's order) or not."""
    event_type = draw(st.sampled_from(EventType))
    data: dict[str, Any] = {
        "event_id": str(draw(st.uuids())),
        "event_type": event_type.value,
        "occurred_at": draw(st.one_of(times(), times((1700, 2200)), times((1, 9999)))),
        "channel_id": draw(channel_ids),
        "channel_kind": draw(st.sampled_from([m.value for m in ChannelKind])),
        "scope": draw(st.sampled_from([m.value for m in Scope])),
        "actor_id": draw(_unicode_ids),
        "actor_role": draw(st.sampled_from([m.value for m in ActorRole])),
    }
    if draw(st.booleans()):
        data["schema_version"] = 1
    for name, values in _OPTIONAL.items():
        if name in REQUIRED_FIELDS[event_type] or draw(st.integers(0, 3)) == 0:
            data[name] = draw(values)
        elif draw(st.integers(0, 9)) == 0:
            data[name] = None  # explicit null: as if absent
    if draw(st.booleans()):
        data = dict(draw(st.permutations(list(data.items()))))
    return data


# -- one thing wrong ----------------------------------------------------------------------

_WRONG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(
        st.uuids().map(lambda u: str(u).upper()),
        st.uuids().map(lambda u: u.hex),
        st.uuids().map(lambda u: f"{{{u}}}"),
        st.uuids().map(lambda u: f"urn:uuid:{u}"),
        st.uuids().map(lambda u: f" {u}"),
        st.text(max_size=40),
        st.integers(),
    ),
    "schema_version": st.sampled_from([2, 0, "1", 1.0, True, None, [1], 1.5]),
    "event_type": st.one_of(
        st.sampled_from(EventType).map(lambda m: m.value.upper()), st.text(max_size=15)
    ),
    "occurred_at": st.one_of(
        st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)).map(datetime.isoformat),
        st.sampled_from(
            [
                "2023-02-29T00:00:00Z",
                "2024-02-30T00:00:00Z",
                "2024-13-01T00:00:00Z",
                "2024-01-01T24:00:00Z",
                "2024-01-01T23:59:60Z",
                "2024-01-01T00:00:00+24:00",
                "2024-01-01T00:00:00+05:60",
                "2024-01-01T00:00:00+0530",
                "2024-01-01T00:00:00+05",
                "2024-01-01T00:00Z",
                "2024-01-01T00:00:00.Z",
                "0001-01-01T00:00:00+05:00",
                "9999-12-31T23:59:59-05:00",
                "0000-01-01T00:00:00Z",
                "2024-01-01",
                "２０２４-01-01T00:00:00Z",
                "",
            ]
        ),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    "channel_id": st.one_of(
        st.sampled_from(["a b", "bob@example.com", "-x", "", "x" * 129, "é"]), st.integers()
    ),
    "channel_kind": st.sampled_from(["Email", "sms", "", "EMAIL"]),
    "scope": st.sampled_from(["Internal", "both"]),
    "actor_role": st.sampled_from(["robot", "Agent"]),
    "actor_id": st.one_of(
        st.tuples(identifiers, st.sampled_from(_EDGES), st.booleans()).map(
            lambda p: p[1] + p[0] if p[2] else p[0] + p[1]
        ),
        st.just(""),
        st.just("x" * 257),
        st.integers(),
        st.booleans(),
    ),
    "recipient_count": st.one_of(
        st.sampled_from([-1, 10_000_001, 2**63, 2**64 - 1, -(2**63), 3.0, 3.5, True, "3"]),
        st.integers(),
    ),
    "duration_s": st.sampled_from([-0.1, 31 * 86400.0 + 0.001, 1e308, True, "5", 2**64 - 1]),
    "score": st.sampled_from([0, 6, 5.0, False, "5", None]),
    "decision": st.sampled_from(["Approved", "maybe", 1]),
    "department": st.sampled_from(["a@b", " ops", "ops ", "x" * 129, "\x00"]),
    "visibility": st.sampled_from(["private", None]),
}


def _dumps(data: Any) -> bytes:
    """Compact JSON like orjson's, also for integers beyond 64 bits."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _duplicate_key(data: dict[str, Any], draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(list(data)))
    again = orjson.dumps({name: draw(st.one_of(st.just(data[name]), json_values))})
    return b"{" + again[1:-1] + b"," + orjson.dumps(data)[1:]


def _invalid_utf8(data: dict[str, Any], draw: st.DrawFn) -> bytes:
    marked = orjson.dumps({**data, "actor_id": "\x01BAD\x01"})
    return marked.replace(
        b"\\u0001BAD\\u0001", draw(st.sampled_from([b"\xff", b"a\xc3", b"\xed\xa0\x80"]))
    )


@st.composite
def broken(draw: st.DrawFn) -> bytes | None:
    """An event with one thing wrong (or written so that only the model can judge it)."""
    data = draw(events())
    how = draw(
        st.sampled_from(
            [
                "value", "value", "value", "extra", "missing", "missing_for_type", "null",
                "duplicate", "utf8", "truncated", "garbage", "not_object", "spaces",
                "escapes", "lone_surrogate", "control", "none", "empty", "nan",
            ]
        )
    )  # fmt: skip
    if how == "value":
        name = draw(st.sampled_from(list(_WRONG_VALUES)))
        return _dumps({**data, name: draw(_WRONG_VALUES[name])})
    if how == "extra":
        name = draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in Event.model_fields))
        return orjson.dumps({**data, name: draw(json_values)})
    if how == "missing":
        name = draw(st.sampled_from(["event_id", "event_type", "occurred_at", "actor_id", "scope"]))
        return orjson.dumps({k: v for k, v in data.items() if k != name})
    if how == "missing_for_type":
        needed = REQUIRED_FIELDS[EventType(data["event_type"])]
        return orjson.dumps({k: v for k, v in data.items() if k not in needed})
    if how == "null":
        return orjson.dumps({**data, draw(st.sampled_from(list(data))): None})
    if how == "duplicate":
        return _duplicate_key(data, draw)
    if how == "utf8":
        return _invalid_utf8(data, draw)
    raw = orjson.dumps(data)
    if how == "truncated":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "garbage":
        return raw + draw(st.sampled_from([b"x", b"}", b",", b"{}", b" \n"]))
    if how == "not_object":
        return orjson.dumps(draw(st.one_of(st.lists(json_values, max_size=3), json_values)))
    if how == "spaces":  # valid, but not in the compact form: the model decides
        return json.dumps(data, indent=draw(st.sampled_from([None, 1]))).encode()
    if how == "escapes":  # valid: non-ASCII written as \\u escapes
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode()
    if how == "lone_surrogate":
        return raw.replace(b'"actor_id":"', b'"actor_id":"\\ud800', 1)
    if how == "control":  # a raw control character inside a string (not valid JSON)
        return raw.replace(b'"actor_id":"', b'"actor_id":"\x01', 1)
    if how == "nan":
        return raw[:-1] + b',"duration_s":NaN}'
    return None if how == "none" else b""


def canonical(data: dict[str, Any]) -> bytes | None:
    """As ingest writes it (model order, no nulls, UTC with Z); None if it is not valid."""
    try:
        return encode(Event.model_validate_json(orjson.dumps(data)))
    except ValidationError:
        return None


canonical_values = events().map(canonical).filter(lambda value: value is not None)
values = st.one_of(events().map(orjson.dumps), canonical_values, broken())


# -- the comparison -----------------------------------------------------------------------


def _reference(
    raw: Sequence[bytes | None], partitions: list[int], offsets: list[int]
) -> tuple[pl.DataFrame, list[DeadLetter]]:
    rows: list[dict[str, Any]] = []
    letters: list[DeadLetter] = []
    for value, partition, offset in zip(raw, partitions, offsets, strict=True):
        outcome = decode_record(value, TOPIC, partition, offset)
        if isinstance(outcome, DeadLetter):
            letters.append(outcome)
        else:
            rows.append(outcome)
    return pl.DataFrame(rows, schema=COLUMNS), letters


def _letter(letter: DeadLetter) -> tuple[Any, ...]:
    return (letter.raw, letter.rejection, letter.source, letter.raw_size, letter.truncated)


def check_same(raw: Sequence[bytes | None], decoder: BatchDecoder | None = None) -> DecodedBatch:
    partitions = [index % 3 for index in range(len(raw))]
    offsets = [1000 + index for index in range(len(raw))]
    decoded = (decoder or BatchDecoder()).decode(TOPIC, raw, partitions, offsets)
    rows, letters = _reference(raw, partitions, offsets)
    assert_frame_equal(decoded.rows, rows, check_exact=True)
    assert [_letter(letter) for letter in decoded.invalid] == [_letter(x) for x in letters]
    return decoded


# -- the properties -----------------------------------------------------------------------


@examples
@given(st.lists(values, min_size=1, max_size=25))
def test_a_batch_decodes_exactly_as_the_model_decides_each_record(raw: list[bytes | None]) -> None:
    check_same(raw)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_hostile_inputs_decode_as_the_model_decides(data: st.DataObject) -> None:
    """Every kind of bad JSON input ingest knows (tests/hostile.py), as if it reached Kafka."""
    now = datetime.now(UTC)
    check_same([item.at(now).raw for item in data.draw(batches(JSON, max_size=12))])


@examples
@given(st.lists(canonical_values, min_size=1, max_size=25))
def test_events_as_ingest_writes_them_take_the_fast_path(raw: list[bytes]) -> None:
    """All of them, but for times before 1700 or after 2200 (UTC)."""
    decoded = check_same(raw)
    years = [int(orjson.loads(value)["occurred_at"][:4]) for value in raw]
    assert decoded.fast == sum(1700 <= year <= 2200 for year in years)


def test_a_batch_as_ingest_writes_it_is_proven_whole_with_no_python_per_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = [canonical(data) for data in _two_events()] * 50
    one_by_one: list[int] = []
    original = BatchDecoder._one_by_one

    def counting(self: BatchDecoder, rules: Any, values: Any, which: Sequence[int]) -> Any:
        one_by_one.extend(which)
        return original(self, rules, values, which)

    monkeypatch.setattr(BatchDecoder, "_one_by_one", counting)
    assert check_same(raw).fast == len(raw)
    assert one_by_one == []
    # one record polars cannot read as an event sends the batch record by record
    assert check_same([*raw, b'{"score": "5"}']).fast == len(raw)
    assert len(one_by_one) == len(raw) + 1


def test_rows_keep_the_order_of_their_records_whichever_path_decoded_them() -> None:
    first, second = (canonical(data) for data in _two_events())
    assert first is not None and second is not None
    spaced = json.dumps(orjson.loads(second), indent=1).encode()  # valid: only the model decides
    decoded = check_same([first, spaced, b"{}", first, None, second])
    assert decoded.fast == 3 and len(decoded.invalid) == 2
    assert decoded.rows["offset"].to_list() == [1000, 1001, 1003, 1005]
    assert [letter.source for letter in decoded.invalid] == [
        f"sink:{TOPIC}/2@1002",
        f"sink:{TOPIC}/1@1004",
    ]


def test_a_model_the_decoder_does_not_know_goes_to_the_model_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("warehouse.decode.model_rules", lambda: None)
    decoder = BatchDecoder()
    assert not decoder.enabled
    raw = [canonical(data) for data in _two_events()]
    assert check_same([*raw, b"[]"], decoder).fast == 0


def test_field_types_and_constraints_it_does_not_know_turn_the_fast_path_off() -> None:
    from annotated_types import Gt, MultipleOf

    from warehouse.event_rules import field_rule as _rule
    from warehouse.event_rules import model_rules as _model_rules

    assert _model_rules() is not None
    assert _rule(list[int], [], required=True) is None
    assert _rule(int, [Gt(0)], required=True) is None
    assert _rule(float, [MultipleOf(2)], required=False) is None
    assert _rule(int | str, [], required=False) is None


def _two_events() -> list[dict[str, Any]]:
    base = {
        "event_type": "ticket_opened",
        "occurred_at": "2025-11-17T09:00:00.5+01:00",
        "channel_id": "tk",
        "channel_kind": "ticket",
        "scope": "external",
        "actor_id": "cust-1",
        "actor_role": "customer",
        "conversation_id": "T-1",
    }
    return [
        {"event_id": "00000000-0000-4000-8000-000000000001", **base},
        {"event_id": "00000000-0000-4000-8000-000000000002", **base, "score": None},
    ]
