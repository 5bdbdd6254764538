"""Hypothesis strategies for hostile ingest input, each with the outcome it must have.

Every generated input carries what ingest must do with it: accept it (a valid
event, with its ``event_id``) or dead-letter it with one :class:`RejectCode`.
Each invalid input has exactly one problem, so its class is determined. Used by
the unit properties (the validator alone) and by the integration tests (HTTP
ingest and the file importers on the real broker).

* :func:`json_lines` — one JSON input (a line of NDJSON / JSONL: no newline
  inside): valid events, malformed or truncated JSON, invalid UTF-8, JSON that
  is not an object, nesting deeper than the parser allows, wrong types, unknown
  event types, missing and unexpected fields, huge fields, times far in the
  future or before 1990 (real history such as 2013 is valid);
* :func:`rows` — one row of a CSV or Parquet file (text cells, lax validation);
* :func:`csv_records` — one CSV record as bytes, with the CSV-only troubles:
  a wrong number of fields, invalid UTF-8, a field over the CSV field limit;
* :func:`batches` — a batch of inputs (one HTTP request, one file) in which
  valid events are repeated, and :func:`outcome` — what the batch must give.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import orjson
from hypothesis import strategies as st

from ingest import REQUIRED_FIELDS, Event, EventType, RejectCode
from ingest.events import (
    COMMON_FIELDS,
    ActorRole,
    ChannelKind,
    Decision,
    RequestCategory,
    Scope,
    Visibility,
)
from ingest.importers import EVENT_FIELDS

__all__ = [
    "MAX_EVENT_BYTES",
    "Input",
    "Outcome",
    "batches",
    "csv_bytes",
    "csv_records",
    "json_lines",
    "outcome",
    "rows",
    "valid_events",
]

#: The default ``ingest.max_event_bytes``.
MAX_EVENT_BYTES: Final = 64 * 1024
#: Python's csv module refuses longer fields (``csv.field_size_limit()``).
CSV_FIELD_LIMIT: Final = 131_072
#: Deeper JSON is refused by the parser (pydantic's jiter stops at about 200).
TOO_DEEP: Final = 250

_PAST = (datetime(1990, 1, 2), datetime(2025, 12, 31))  # valid: real history, always past
_ANCIENT = (datetime(1, 1, 2), datetime(1989, 12, 31, 23, 59, 59))  # before 1990
_FUTURE = (datetime(2200, 1, 1), datetime(9999, 12, 30))  # far beyond any clock's tolerance
_PII_FIELDS = ("body", "subject", "from", "email", "name", "address", "text", "display_name")


@dataclass(frozen=True)
class Input:
    """One input as it is sent (bytes, or a row's cells) and what ingest must do with it."""

    raw: bytes
    expected: RejectCode | None  # None: a valid event
    event_id: str | None = None  # of a valid event
    cells: dict[str, str | None] | None = None  # a row of a tabular file

    @property
    def valid(self) -> bool:
        return self.expected is None


# -- building blocks ----------------------------------------------------------

_printable = st.characters(categories=("L", "N", "P", "S"))
identifiers = st.builds(
    lambda head, tail: head + tail,
    st.text(_printable, min_size=1, max_size=12),
    st.text(st.one_of(_printable, st.just(" ")), max_size=12).filter(
        lambda tail: not tail or not tail[-1].isspace()
    ),
)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
channel_ids = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(_ALNUM),
    st.text(st.sampled_from(_ALNUM + "._:/+-"), max_size=24),
)
offsets = st.integers(-14 * 60 + 1, 14 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


def _instants(bounds: tuple[datetime, datetime]) -> st.SearchStrategy[datetime]:
    return st.datetimes(*bounds, timezones=st.just(UTC))


def times(bounds: tuple[datetime, datetime] = _PAST) -> st.SearchStrategy[str]:
    """ISO 8601 times with an offset, whose instant lies within ``bounds`` (UTC)."""
    return st.builds(lambda t, tz: t.astimezone(tz).isoformat(), _instants(bounds), offsets)


#: 2013: a real archive's history must be accepted.
history_2013 = times((datetime(2013, 1, 1), datetime(2013, 12, 31)))


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event as JSON-ready data (raw actor ids: ingest pseudonymises them)."""
    event_type = draw(st.sampled_from(EventType))
    data: dict[str, Any] = {
        "event_id": str(draw(st.uuids(version=4))),
        "event_type": event_type.value,
        "occurred_at": draw(st.one_of(times(), history_2013)),
        "channel_id": draw(channel_ids),
        "channel_kind": draw(st.sampled_from(ChannelKind)).value,
        "scope": draw(st.sampled_from(Scope)).value,
        "actor_id": draw(identifiers),
        "actor_role": draw(st.sampled_from(ActorRole)).value,
    }
    if draw(st.booleans()):
        data["schema_version"] = 1
    fields: dict[str, st.SearchStrategy[Any]] = {
        "conversation_id": identifiers,
        "message_id": identifiers,
        "in_reply_to": identifiers,
        "recipient_count": st.integers(0, 10_000_000),
        "duration_s": st.floats(0, 86_400),
        "planned_duration_s": st.floats(0, 86_400),
        "score": st.integers(1, 5),
        "decision": st.sampled_from(Decision).map(str),
        "category": st.sampled_from(RequestCategory).map(str),
        "visibility": st.sampled_from(Visibility).map(str),
        "department": st.text(st.one_of(_printable, st.just(" ")), min_size=1, max_size=40),
    }
    required = set(REQUIRED_FIELDS[event_type])
    for name, values in fields.items():
        if name in required or draw(st.integers(0, 4)) == 0:
            data[name] = draw(values)
    return data


def _json(data: Any) -> bytes:
    return orjson.dumps(data)


def _valid(data: dict[str, Any]) -> Input:
    return Input(_json(data), None, data["event_id"])


def _sized(raw: bytes, expected: RejectCode) -> Input:
    """Ingest checks the size first: anything over the limit is ``oversized``."""
    return Input(raw, RejectCode.OVERSIZED if len(raw) > MAX_EVENT_BYTES else expected)


def _replace(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**data, **changes}


def _without(data: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != name}


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


letters = st.text(st.sampled_from("ghijklmnopqrstuvwxyz"), min_size=1, max_size=12)
invalid_bytes = st.binary(min_size=1, max_size=8).filter(
    lambda raw: _not_utf8(raw) and b"\n" not in raw and b"\r" not in raw
)
int64s = st.integers(-(2**63), 2**63 - 1)  # what JSON encoders can write
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    int64s,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
    ),
    max_leaves=8,
)
not_objects = st.recursive(
    json_scalars, lambda children: st.lists(children, max_size=3), max_leaves=8
)
unknown_event_types = st.one_of(
    st.text(max_size=20).filter(lambda text: text not in set(EventType)),
    int64s,
    st.none(),
    st.booleans(),
)
unknown_fields = st.one_of(
    st.sampled_from(_PII_FIELDS),
    st.text(min_size=1, max_size=10),
).filter(lambda name: name not in Event.model_fields)
controls = st.sampled_from([chr(c) for c in (*range(0x20), 0x7F)])


# -- JSON inputs ----------------------------------------------------------------


def _json_invalid(data: dict[str, Any]) -> list[st.SearchStrategy[Input]]:
    """Every kind of bad JSON input, derived from the valid event ``data``."""
    text = _json(data).decode()
    event_type = EventType(data["event_type"])
    required = [*COMMON_FIELDS, *REQUIRED_FIELDS[event_type]]
    return [
        # Not JSON: cut short (at a character boundary), or with something after the object.
        st.integers(1, len(text) - 1).map(
            lambda cut: Input(text[:cut].encode(), RejectCode.MALFORMED_JSON)
        ),
        st.sampled_from(["x", "}", ",", "{}", " ]"]).map(
            lambda tail: Input(text.encode() + tail.encode(), RejectCode.MALFORMED_JSON)
        ),
        # Not UTF-8, inside a string value.
        invalid_bytes.map(
            lambda bad: Input(
                _json(_replace(data, actor_id="\x01BAD\x01")).replace(b"\\u0001BAD\\u0001", bad),
                RejectCode.INVALID_ENCODING,
            )
        ),
        # JSON, but not an object.
        not_objects.map(lambda value: Input(_json(value), RejectCode.NOT_AN_OBJECT)),
        # Deeper than the parser allows: as a field, or the whole input.
        st.integers(TOO_DEEP, 40_000).map(
            lambda depth: _sized(
                _json(data)[:-1] + b',"department":' + _nested(depth) + b"}",
                RejectCode.MALFORMED_JSON,
            )
        ),
        st.integers(TOO_DEEP, 40_000).map(
            lambda depth: _sized(_nested(depth), RejectCode.MALFORMED_JSON)
        ),
        # Nested, but within the parser's limit: a field that should be text.
        st.integers(1, 150).map(
            lambda depth: Input(
                _json(data)[:-1] + b',"department":' + _nested(depth) + b"}",
                RejectCode.WRONG_TYPE,
            )
        ),
        # Schema version, event type.
        st.one_of(st.integers(-(2**31), 2**31).filter(lambda v: v != 1), st.text(max_size=3)).map(
            lambda version: Input(
                _json(_replace(data, schema_version=version)),
                RejectCode.UNSUPPORTED_SCHEMA_VERSION,
            )
        ),
        unknown_event_types.map(
            lambda kind: Input(
                _json(_replace(data, event_type=kind)), RejectCode.UNKNOWN_EVENT_TYPE
            )
        ),
        # Missing and unexpected fields (names, bodies, addresses have no field).
        st.sampled_from(required).map(
            lambda name: Input(_json(_without(data, name)), RejectCode.MISSING_FIELD)
        ),
        st.tuples(unknown_fields, json_values).map(
            lambda pair: Input(
                _json(_replace(data, **{pair[0]: pair[1]})), RejectCode.UNEXPECTED_FIELD
            )
        ),
        # Wrong JSON types (JSON is validated strictly: "12" is not a number).
        st.one_of(
            st.tuples(
                st.sampled_from(["recipient_count", "score"]),
                st.one_of(
                    st.text(max_size=4),
                    st.floats(allow_nan=False, allow_infinity=False),  # orjson: inf -> null
                    st.booleans(),
                ),
            ),
            st.tuples(st.just("actor_id"), st.one_of(int64s, st.booleans())),
            st.tuples(st.just("event_id"), st.one_of(int64s, letters)),
            st.tuples(st.just("occurred_at"), st.one_of(int64s, letters)),
        ).map(
            lambda pair: Input(_json(_replace(data, **{pair[0]: pair[1]})), RejectCode.WRONG_TYPE)
        ),
        # Invalid values.
        st.one_of(
            st.tuples(st.just("channel_kind"), letters),
            st.tuples(st.just("actor_role"), letters),
            st.tuples(st.just("score"), st.integers(6, 1000)),
            st.tuples(st.just("recipient_count"), st.integers(-1000, -1)),
            st.tuples(st.just("channel_id"), st.sampled_from(["a b", "bob@example.com", "-x"])),
            st.tuples(st.just("actor_id"), st.text(_printable, min_size=257, max_size=2000)),
            st.tuples(
                st.just("actor_id"),
                st.tuples(identifiers, controls, st.booleans()).map(
                    lambda p: p[1] + p[0] if p[2] else p[0] + p[1]
                ),
            ),
            st.tuples(st.just("occurred_at"), _instants(_PAST).map(_naive_iso)),
        ).map(
            lambda pair: Input(
                _json(_replace(data, **{pair[0]: pair[1]})), RejectCode.INVALID_VALUE
            )
        ),
        # Huge: over the event size limit.
        st.integers(MAX_EVENT_BYTES, 3 * MAX_EVENT_BYTES).map(
            lambda size: Input(_json(_replace(data, department="x" * size)), RejectCode.OVERSIZED)
        ),
        # Far in the future, or before 1990 (also: times that have no UTC instant at all).
        st.one_of(times(_FUTURE), st.just("9999-12-31T23:00:00-05:00")).map(
            lambda when: Input(_json(_replace(data, occurred_at=when)), RejectCode.FUTURE_TIME)
        ),
        st.one_of(times(_ANCIENT), st.just("0001-01-01T00:00:00+05:00")).map(
            lambda when: Input(_json(_replace(data, occurred_at=when)), RejectCode.TOO_OLD)
        ),
    ]


def _naive_iso(instant: datetime) -> str:
    return instant.replace(tzinfo=None).isoformat()


@st.composite
def json_lines(draw: st.DrawFn, valid_share: float = 0.4) -> Input:
    """One JSON input: valid (about ``valid_share`` of them) or invalid in one way."""
    data = draw(valid_events())
    if draw(st.floats(0, 1)) < valid_share:
        return _valid(data)
    return draw(st.one_of(_json_invalid(data)))


# -- rows of CSV and Parquet files (text cells, lax validation) ---------------------


def _cells(data: dict[str, Any]) -> dict[str, str | None]:
    return {name: None if data.get(name) is None else str(data[name]) for name in EVENT_FIELDS}


def _row(data: dict[str, Any], expected: RejectCode | None) -> Input:
    cells = _cells(data)
    return Input(
        _json({k: v for k, v in cells.items() if v is not None}),
        expected,
        data["event_id"] if expected is None else None,
        cells,
    )


@st.composite
def rows(draw: st.DrawFn, valid_share: float = 0.4) -> Input:
    """One row of a tabular file as text cells: valid, or invalid in one way."""
    data = draw(valid_events())
    if draw(st.floats(0, 1)) < valid_share:
        return _row(data, None)
    event_type = EventType(data["event_type"])
    required = [*COMMON_FIELDS, *REQUIRED_FIELDS[event_type]]
    bad: list[st.SearchStrategy[Input]] = [
        st.one_of(st.integers(2, 99), letters).map(
            lambda v: _row(_replace(data, schema_version=v), RejectCode.UNSUPPORTED_SCHEMA_VERSION)
        ),
        letters.filter(lambda text: text not in set(EventType)).map(
            lambda kind: _row(_replace(data, event_type=kind), RejectCode.UNKNOWN_EVENT_TYPE)
        ),
        st.sampled_from(required).map(
            lambda name: _row(_replace(data, **{name: None}), RejectCode.MISSING_FIELD)
        ),
        st.sampled_from(["recipient_count", "score", "occurred_at", "event_id"]).flatmap(
            lambda name: letters.map(
                lambda text: _row(_replace(data, **{name: text}), RejectCode.WRONG_TYPE)
            )
        ),
        st.one_of(
            st.tuples(st.just("channel_kind"), letters),
            st.tuples(st.just("score"), st.integers(6, 1000)),
            st.tuples(st.just("channel_id"), st.sampled_from(["a b", "bob@example.com"])),
            st.tuples(st.just("actor_id"), st.text(_printable, min_size=257, max_size=2000)),
            st.tuples(st.just("department"), st.text(_printable, min_size=129, max_size=5000)),
            st.tuples(
                st.just("actor_id"),
                st.tuples(identifiers, st.sampled_from(["\x1b", "\x07", "\x7f", "\t"])).map(
                    lambda p: p[0] + p[1]
                ),
            ),
            st.tuples(st.just("occurred_at"), _instants(_PAST).map(_naive_iso)),
        ).map(lambda pair: _row(_replace(data, **{pair[0]: pair[1]}), RejectCode.INVALID_VALUE)),
        st.one_of(times(_FUTURE), st.just("9999-12-31T23:00:00-05:00")).map(
            lambda when: _row(_replace(data, occurred_at=when), RejectCode.FUTURE_TIME)
        ),
        st.one_of(times(_ANCIENT), st.just("0001-01-01T00:00:00+05:00")).map(
            lambda when: _row(_replace(data, occurred_at=when), RejectCode.TOO_OLD)
        ),
    ]
    return draw(st.one_of(bad))


def _csv_text(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue().removesuffix("\r\n")


def csv_header() -> bytes:
    return _csv_text(EVENT_FIELDS).encode() + b"\r\n"


def _csv_record(row: Input) -> Input:
    assert row.cells is not None
    text = _csv_text([row.cells[name] or "" for name in EVENT_FIELDS])
    return Input(text.encode(), row.expected, row.event_id, row.cells)


@st.composite
def csv_records(draw: st.DrawFn) -> Input:
    """One CSV record (bytes, no line terminator): a row, or one with a CSV-only trouble."""
    row = draw(rows())
    record = _csv_record(row)
    trouble = draw(st.integers(0, 9))
    if trouble == 0:  # a wrong number of fields
        extra = draw(st.lists(letters, min_size=1, max_size=3))
        fields = len(EVENT_FIELDS)
        cut = draw(st.integers(1, fields - 1))
        text = (
            _csv_text(["x"] * cut)
            if draw(st.booleans())
            else record.raw.decode() + "," + ",".join(extra)
        )
        return Input(text.encode(), RejectCode.MALFORMED_ROW)
    if trouble == 1:  # not UTF-8, in a cell
        bad = draw(invalid_bytes.filter(lambda raw: not set(raw) & set(b',"\x00')))
        valid = _row(draw(valid_events()), None)
        assert valid.cells is not None
        cells = {**valid.cells, "department": "\x01BAD\x01"}
        raw = _csv_text([cells[name] or "" for name in EVENT_FIELDS]).encode()
        return Input(raw.replace(b"\x01BAD\x01", bad), RejectCode.INVALID_ENCODING)
    if trouble == 2:  # a field over the CSV field limit
        size = draw(st.integers(CSV_FIELD_LIMIT + 1, 2 * CSV_FIELD_LIMIT))
        valid = _row(draw(valid_events()), None)
        assert valid.cells is not None
        cells = {**valid.cells, "department": "y" * size}
        return Input(
            _csv_text([cells[name] or "" for name in EVENT_FIELDS]).encode(),
            RejectCode.MALFORMED_ROW,
        )
    return record


def csv_bytes(records: Iterable[Input], blank_after: Iterable[int] = ()) -> bytes:
    """A CSV file: the header, then the records (and blank lines after the given indexes)."""
    blanks = set(blank_after)
    out = [csv_header()]
    for index, record in enumerate(records):
        out.append(record.raw + b"\r\n")
        if index in blanks:
            out.append(b"\r\n")
    return b"".join(out)


# -- batches -----------------------------------------------------------------------


@st.composite
def batches(
    draw: st.DrawFn, items: st.SearchStrategy[Input], *, min_size: int = 1, max_size: int = 30
) -> list[Input]:
    """Inputs for one batch, with some of its valid events repeated (duplicate ids)."""
    batch = draw(st.lists(items, min_size=min_size, max_size=max_size))
    valid = [item for item in batch if item.valid]
    if valid:
        for _ in range(draw(st.integers(0, 3))):
            again = draw(st.sampled_from(valid))
            at = draw(st.integers(0, len(batch)))
            batch.insert(at, again)
    return batch


@dataclass(frozen=True)
class Outcome:
    """What one batch must give: accepted ids, and the rejections by index (repeated ids too)."""

    accepted: list[str]
    rejections: list[tuple[int, RejectCode]]

    @property
    def duplicates(self) -> int:
        return sum(code is RejectCode.DUPLICATE_EVENT_ID for _, code in self.rejections)

    @property
    def received(self) -> int:
        return len(self.accepted) + len(self.rejections)


def outcome(batch: Sequence[Input]) -> Outcome:
    seen: set[uuid.UUID] = set()
    accepted: list[str] = []
    rejections: list[tuple[int, RejectCode]] = []
    for index, item in enumerate(batch):
        if item.expected is not None:
            rejections.append((index, item.expected))
        else:
            assert item.event_id is not None
            key = uuid.UUID(item.event_id)
            if key in seen:
                rejections.append((index, RejectCode.DUPLICATE_EVENT_ID))
            else:
                seen.add(key)
                accepted.append(item.event_id)
    return Outcome(accepted, rejections)
