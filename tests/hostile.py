"""Hypothesis strategies for hostile ingest input, each with the outcome it must have.

Every generated input has a *kind* (what is wrong with it, or which valid case it
is) and carries what ingest must do with it: accept it (a valid event, with its
``event_id``) or dead-letter it with one :class:`RejectCode`. Each invalid input
has exactly one problem, so its kind determines its class. A :class:`Format`
lists the kinds one input format can carry, with their classes:

* :data:`JSON` — one JSON input (a line of NDJSON / JSONL: no newline inside):
  valid events (real history such as 2013, the first instant of 1990, times up
  to a day ahead, an event of exactly the size limit), malformed or truncated
  JSON, invalid UTF-8, JSON that is not an object, nesting deeper than the
  parser allows, wrong types, unknown event types, missing and unexpected
  fields, events over the size limit and fields of a MiB, times far in the
  future or a second past the tolerance, before 1990 or a second before it;
* :data:`ROWS` — one row of a Parquet file (text cells, lax validation);
* :data:`CSV` — one CSV record as bytes: the row kinds and the CSV-only troubles
  (a wrong number of fields, invalid UTF-8, a field over the CSV field limit).

:func:`batches` draws a batch (one HTTP request, one file): each input's kind
first, evenly, then the input; with ``tour=True`` every kind of the format at
least once, so what a test covers does not depend on hypothesis's draws.
Valid events are repeated (duplicate ids); :func:`outcome` tells what a batch
must give. Times relative to now are tokens until :meth:`Input.at` resolves them,
just before the input is sent.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
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
from ingest.validation import EARLIEST_OCCURRED_AT

__all__ = [
    "CSV",
    "CSV_FIELD_LIMIT",
    "JSON",
    "MAX_EVENT_BYTES",
    "ROWS",
    "Format",
    "Input",
    "Kind",
    "Outcome",
    "batches",
    "csv_bytes",
    "json_values",
    "outcome",
    "valid_events",
]

#: The default ``ingest.max_event_bytes``.
MAX_EVENT_BYTES: Final = 64 * 1024
#: Python's csv module refuses longer fields (``csv.field_size_limit()``).
CSV_FIELD_LIMIT: Final = 131_072
#: Deeper JSON is refused by the parser (pydantic's jiter stops at about 200).
TOO_DEEP: Final = 250
#: Nesting up to this depth keeps an input within the size limit (so: malformed_json).
DEEPEST: Final = 30_000
#: A huge field: a MiB (the dead-letter topic keeps the first 512 KiB of such an input).
HUGE: Final = 1024 * 1024
DAY: Final = 86_400

_PAST = (datetime(1990, 1, 1), datetime(2025, 12, 31))  # valid: real history, always past
_ANCIENT = (datetime(1, 1, 2), datetime(1989, 12, 31, 23, 59, 59, 999_999))  # before 1990
_FUTURE = (datetime(2200, 1, 1), datetime(9999, 12, 30))  # far beyond any clock's tolerance
_PII_FIELDS = ("body", "subject", "from", "email", "name", "address", "text", "display_name")
_TEXT_FIELDS = ("department", "actor_id", "message_id", "channel_id")
#: ``@now+86401s+330m@``: now + 86401 s, written at UTC+05:30 (see :meth:`Input.at`).
_NOW = r"@now([+-]\d+)s([+-]\d+)m@"
_NOW_BYTES: Final = re.compile(_NOW.encode())
_NOW_TEXT: Final = re.compile(_NOW)


@dataclass(frozen=True)
class Input:
    """One input as it is sent (bytes, or a row's cells), its kind and what ingest must do."""

    raw: bytes
    expected: RejectCode | None = None  # None: a valid event
    event_id: str | None = None  # of a valid event
    cells: dict[str, str | None] | None = None  # a row of a tabular file
    kind: str = "valid"

    @property
    def valid(self) -> bool:
        return self.expected is None

    def at(self, now: datetime, *, slack: timedelta = timedelta(0)) -> Input:
        """This input with its times relative to now resolved; in rejected inputs, ``slack`` later.

        ``slack`` is for a process that validates a while after the times were written.
        """
        if b"@now" not in self.raw:
            return self
        base = now + slack if self.expected else now

        def time(seconds: str, minutes: str) -> str:
            zone = timezone(timedelta(minutes=int(minutes)))
            return _iso((base + timedelta(seconds=int(seconds))).astimezone(zone))

        raw = _NOW_BYTES.sub(lambda m: time(m[1].decode(), m[2].decode()).encode(), self.raw)
        cells = None
        if self.cells is not None:
            cells = {
                name: None if value is None else _NOW_TEXT.sub(lambda m: time(m[1], m[2]), value)
                for name, value in self.cells.items()
            }
        return replace(self, raw=raw, cells=cells)


# -- building blocks ----------------------------------------------------------
# Strategies are built once, here: building them per input costs more than drawing.

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
offset_minutes = st.integers(-14 * 60 + 1, 14 * 60 - 1)
offsets = offset_minutes.map(lambda m: timezone(timedelta(minutes=m)))


def _iso(when: datetime) -> str:
    text = when.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def _instants(bounds: tuple[datetime, datetime]) -> st.SearchStrategy[datetime]:
    return st.datetimes(*bounds, timezones=st.just(UTC))


def times(bounds: tuple[datetime, datetime] = _PAST) -> st.SearchStrategy[str]:
    """ISO 8601 times with an offset, whose instant lies within ``bounds`` (UTC)."""
    return st.builds(lambda t, tz: _iso(t.astimezone(tz)), _instants(bounds), offsets)


def _around(instant: datetime) -> st.SearchStrategy[str]:
    """``instant`` written at any offset (1990-01-01T05:30:00+05:30 is 1990 in UTC too)."""
    return offsets.map(lambda tz: _iso(instant.astimezone(tz)))


def _from_now(seconds: int) -> st.SearchStrategy[str]:
    """A token for now + ``seconds``, at UTC or another offset (see :meth:`Input.at`)."""
    return st.one_of(st.just(0), offset_minutes).map(lambda m: f"@now{seconds:+d}s{m:+d}m@")


#: 2013: a real archive's history must be accepted.
history_2013 = times((datetime(2013, 1, 1), datetime(2013, 12, 31)))
#: The first instant that is accepted, and the last that is too old (1990 is the limit).
FIRST_1990: Final = _iso(EARLIEST_OCCURRED_AT)
LAST_1989: Final = _iso(EARLIEST_OCCURRED_AT - timedelta(seconds=1))
_valid_times = st.one_of(times(), history_2013, _around(EARLIEST_OCCURRED_AT))
_far_future = st.one_of(times(_FUTURE), st.just("9999-12-31T23:00:00-05:00"))
# Also: times that have no UTC instant at all, and the last instant of 1989 at any offset.
_before_1990 = st.one_of(
    times(_ANCIENT),
    st.just("0001-01-01T00:00:00+05:00"),
    _around(EARLIEST_OCCURRED_AT - timedelta(microseconds=1)),
)
_in_23h, _in_1_day, _in_1_day_1s = _from_now(23 * 3600), _from_now(DAY), _from_now(DAY + 1)

_event_types = st.sampled_from(EventType)
_channel_kinds = st.sampled_from(ChannelKind).map(str)
_scopes = st.sampled_from(Scope).map(str)
_roles = st.sampled_from(ActorRole).map(str)
_ids = st.uuids(version=4).map(str)
_one_in_five = st.integers(0, 4)
_optional_fields: Final[dict[str, st.SearchStrategy[Any]]] = {
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
    "department": identifiers.map(lambda name: name.replace("@", "-")),  # not an address
}


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event as JSON-ready data (raw actor ids: ingest pseudonymises them)."""
    event_type = draw(_event_types)
    data: dict[str, Any] = {
        "event_id": draw(_ids),
        "event_type": event_type.value,
        "occurred_at": draw(_valid_times),
        "channel_id": draw(channel_ids),
        "channel_kind": draw(_channel_kinds),
        "scope": draw(_scopes),
        "actor_id": draw(identifiers),
        "actor_role": draw(_roles),
    }
    if draw(st.booleans()):
        data["schema_version"] = 1
    required = set(REQUIRED_FIELDS[event_type])
    for name, values in _optional_fields.items():
        if name in required or draw(_one_in_five) == 0:
            data[name] = draw(values)
    return data


def _json(data: Any) -> bytes:
    return orjson.dumps(data)


def _with(data: dict[str, Any], change: tuple[str, Any]) -> dict[str, Any]:
    return {**data, change[0]: change[1]}


def _without(data: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != name}


def _required(data: dict[str, Any]) -> list[str]:
    return [*COMMON_FIELDS, *REQUIRED_FIELDS[EventType(data["event_type"])]]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _nested_field(data: dict[str, Any], depth: int) -> bytes:
    return _json(data)[:-1] + b',"department":' + _nested(depth) + b"}"


def _padded(raw: bytes, size: int) -> bytes:
    """A JSON object padded with spaces to ``size`` bytes: the same event, bigger."""
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def _naive_iso(instant: datetime) -> str:
    return instant.replace(tzinfo=None).isoformat()


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
_invalid_csv_bytes = invalid_bytes.filter(lambda raw: not set(raw) & set(b',"\x00'))
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


def _long(
    min_size: int, max_size: int, seed: st.SearchStrategy[str] = letters
) -> st.SearchStrategy[tuple[str, str]]:
    """(a text field, a text of min_size..max_size characters): a short draw, repeated."""
    return st.tuples(st.sampled_from(_TEXT_FIELDS), seed, st.integers(min_size, max_size)).map(
        lambda p: (p[0], (p[1] * (p[2] // len(p[1]) + 1))[: p[2]])
    )


_huge = _long(HUGE, HUGE + 64 * 1024)
_long_actor_ids = _long(257, 2000, identifiers).map(lambda p: ("actor_id", p[1]))


# -- formats -------------------------------------------------------------------------

#: Makes an input of one kind from a valid event.
Maker = Callable[[st.DrawFn, dict[str, Any]], Input]


@dataclass(frozen=True)
class Kind:
    expected: RejectCode | None  # None: accepted
    make: Maker


@dataclass(frozen=True)
class Format:
    """The kinds of input one format can carry, each with its class."""

    name: str
    kinds: Mapping[str, Kind]
    heavy: frozenset[str] = frozenset({"huge_field"})  # at most one per batch

    def make(self, draw: st.DrawFn, kind: str, data: dict[str, Any]) -> Input:
        """An input of ``kind`` made from the valid event ``data``."""
        expected = self.kinds[kind].expected
        item = self.kinds[kind].make(draw, data)
        return replace(
            item, kind=kind, expected=expected, event_id=None if expected else item.event_id
        )

    def inputs(self, kind: str | None = None) -> st.SearchStrategy[Input]:
        """One input of ``kind``, or of a kind drawn evenly."""

        @st.composite
        def one(draw: st.DrawFn) -> Input:
            return self.make(
                draw, kind or draw(st.sampled_from(list(self.kinds))), draw(valid_events())
            )

        return one()


def _times(make: Callable[[dict[str, Any]], Input]) -> dict[str, Kind]:
    """The kinds that differ in their time only, valid and not."""

    def at(when: st.SearchStrategy[str]) -> Maker:
        return lambda draw, data: make({**data, "occurred_at": draw(when)})

    return {
        "valid": Kind(None, lambda draw, data: make(data)),
        "valid_2013": Kind(None, at(history_2013)),
        "valid_at_1990": Kind(None, at(st.just(FIRST_1990))),
        "valid_in_23h": Kind(None, at(_in_23h)),
        # Exactly the tolerance: ingest's now is at or after the now this is written for.
        "valid_in_1_day": Kind(None, at(_in_1_day)),
        "far_future": Kind(RejectCode.FUTURE_TIME, at(_far_future)),
        "future_boundary": Kind(RejectCode.FUTURE_TIME, at(_in_1_day_1s)),
        "before_1990": Kind(RejectCode.TOO_OLD, at(_before_1990)),
        "too_old_boundary": Kind(RejectCode.TOO_OLD, at(st.just(LAST_1989))),
    }


def _valid(data: dict[str, Any]) -> Input:
    return Input(_json(data), None, data["event_id"])


def _json_change(changes: st.SearchStrategy[tuple[str, Any]]) -> Maker:
    return lambda draw, data: Input(_json(_with(data, draw(changes))))


_trailing = st.sampled_from(["x", "}", ",", "{}", " ]"])
_too_deep = st.integers(TOO_DEEP, DEEPEST)
_json_versions = st.one_of(
    st.integers(-(2**31), 2**31).filter(lambda v: v != 1), st.text(max_size=3)
).map(lambda version: ("schema_version", version))
# Wrong JSON types (JSON is validated strictly: "12" is not a number).
_json_wrong_types = st.one_of(
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
)
_json_invalid_values = st.one_of(
    st.tuples(st.just("channel_kind"), letters),
    st.tuples(st.just("actor_role"), letters),
    st.tuples(st.just("score"), st.integers(6, 1000)),
    st.tuples(st.just("recipient_count"), st.integers(-1000, -1)),
    st.tuples(st.just("channel_id"), st.sampled_from(["a b", "bob@example.com", "-x"])),
    _long_actor_ids,
    st.tuples(
        st.just("actor_id"),
        st.tuples(identifiers, controls, st.booleans()).map(
            lambda p: p[1] + p[0] if p[2] else p[0] + p[1]
        ),
    ),
    st.tuples(st.just("occurred_at"), _instants(_PAST).map(_naive_iso)),
)


def _truncated(draw: st.DrawFn, data: dict[str, Any]) -> Input:
    text = _json(data).decode()  # cut at a character boundary
    return Input(text[: draw(st.integers(1, len(text) - 1))].encode())


def _not_utf8_inside(draw: st.DrawFn, data: dict[str, Any]) -> Input:
    marked = _json({**data, "actor_id": "\x01BAD\x01"})
    return Input(marked.replace(b"\\u0001BAD\\u0001", draw(invalid_bytes)))


JSON: Final = Format(
    "json",
    {
        **_times(_valid),
        "valid_at_size_limit": Kind(
            None,
            lambda draw, data: replace(_valid(data), raw=_padded(_json(data), MAX_EVENT_BYTES)),
        ),
        # Not JSON: cut short, or with something after the object.
        "truncated_json": Kind(RejectCode.MALFORMED_JSON, _truncated),
        "trailing_garbage": Kind(
            RejectCode.MALFORMED_JSON,
            lambda draw, data: Input(_json(data) + draw(_trailing).encode()),
        ),
        "invalid_utf8": Kind(RejectCode.INVALID_ENCODING, _not_utf8_inside),  # in a string value
        "not_an_object": Kind(
            RejectCode.NOT_AN_OBJECT, lambda draw, data: Input(_json(draw(not_objects)))
        ),
        # Deeper than the parser allows (within the size limit): as a field, or the whole input.
        "too_deep_field": Kind(
            RejectCode.MALFORMED_JSON,
            lambda draw, data: Input(_nested_field(data, draw(_too_deep))),
        ),
        "too_deep_document": Kind(
            RejectCode.MALFORMED_JSON, lambda draw, data: Input(_nested(draw(_too_deep)))
        ),
        # Nested, but within the parser's limit: a field that should be text.
        "nested_field": Kind(
            RejectCode.WRONG_TYPE,
            lambda draw, data: Input(_nested_field(data, draw(st.integers(1, 150)))),
        ),
        "bad_schema_version": Kind(
            RejectCode.UNSUPPORTED_SCHEMA_VERSION, _json_change(_json_versions)
        ),
        "unknown_event_type": Kind(
            RejectCode.UNKNOWN_EVENT_TYPE,
            _json_change(unknown_event_types.map(lambda kind: ("event_type", kind))),
        ),
        # Missing and unexpected fields (names, bodies, addresses have no field).
        "missing_field": Kind(
            RejectCode.MISSING_FIELD,
            lambda draw, data: Input(_json(_without(data, draw(st.sampled_from(_required(data)))))),
        ),
        "unexpected_field": Kind(
            RejectCode.UNEXPECTED_FIELD, _json_change(st.tuples(unknown_fields, json_values))
        ),
        "wrong_type": Kind(RejectCode.WRONG_TYPE, _json_change(_json_wrong_types)),
        "invalid_value": Kind(RejectCode.INVALID_VALUE, _json_change(_json_invalid_values)),
        # Over the size limit: the same event one byte or more too big, or with a MiB field.
        "over_size_limit": Kind(
            RejectCode.OVERSIZED,
            lambda draw, data: Input(
                _padded(_json(data), MAX_EVENT_BYTES + draw(st.integers(1, 4096)))
            ),
        ),
        "huge_field": Kind(RejectCode.OVERSIZED, _json_change(_huge)),
    },
)


# -- rows of CSV and Parquet files (text cells, lax validation) ---------------------


def _row(data: dict[str, Any]) -> Input:
    cells = {name: None if data.get(name) is None else str(data[name]) for name in EVENT_FIELDS}
    raw = _json({k: v for k, v in cells.items() if v is not None})
    return Input(raw, None, data["event_id"], cells)


def _row_change(changes: st.SearchStrategy[tuple[str, Any]]) -> Maker:
    return lambda draw, data: _row(_with(data, draw(changes)))


_row_invalid_values = st.one_of(
    st.tuples(st.just("channel_kind"), letters),
    st.tuples(st.just("score"), st.integers(6, 1000)),
    st.tuples(st.just("channel_id"), st.sampled_from(["a b", "bob@example.com"])),
    _long_actor_ids,
    _long(129, 5000).map(lambda p: ("department", p[1])),
    st.tuples(
        st.just("actor_id"),
        st.tuples(identifiers, st.sampled_from(["\x1b", "\x07", "\x7f", "\t"])).map(
            lambda p: p[0] + p[1]
        ),
    ),
    st.tuples(st.just("occurred_at"), _instants(_PAST).map(_naive_iso)),
)

ROWS: Final = Format(
    "rows",
    {
        **_times(_row),
        "bad_schema_version": Kind(
            RejectCode.UNSUPPORTED_SCHEMA_VERSION,
            _row_change(
                st.one_of(st.integers(2, 99), letters).map(lambda v: ("schema_version", v))
            ),
        ),
        "unknown_event_type": Kind(
            RejectCode.UNKNOWN_EVENT_TYPE,
            _row_change(
                letters.filter(lambda text: text not in set(EventType)).map(
                    lambda kind: ("event_type", kind)
                )
            ),
        ),
        "missing_field": Kind(
            RejectCode.MISSING_FIELD,
            lambda draw, data: _row({**data, draw(st.sampled_from(_required(data))): None}),
        ),
        "wrong_type": Kind(
            RejectCode.WRONG_TYPE,
            _row_change(
                st.tuples(
                    st.sampled_from(["recipient_count", "score", "occurred_at", "event_id"]),
                    letters,
                )
            ),
        ),
        "invalid_value": Kind(RejectCode.INVALID_VALUE, _row_change(_row_invalid_values)),
        # Every field has a length limit far below the event size limit: a row is never
        # oversized, a long text is an invalid value. Over the event size limit but within
        # the CSV field limit, and a MiB.
        "long_field": Kind(
            RejectCode.INVALID_VALUE, _row_change(_long(MAX_EVENT_BYTES, CSV_FIELD_LIMIT - 1))
        ),
        "huge_field": Kind(RejectCode.INVALID_VALUE, _row_change(_huge)),
    },
)


def _csv_text(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue().removesuffix("\r\n")


def csv_header() -> bytes:
    return _csv_text(EVENT_FIELDS).encode() + b"\r\n"


def _csv_record(row: Input) -> Input:
    assert row.cells is not None
    text = _csv_text([row.cells[name] or "" for name in EVENT_FIELDS])
    return replace(row, raw=text.encode())


def _as_csv(make: Maker) -> Maker:
    return lambda draw, data: _csv_record(make(draw, data))


def _ragged(draw: st.DrawFn, data: dict[str, Any]) -> Input:
    """A wrong number of fields: too few, or too many."""
    if draw(st.booleans()):
        return Input(_csv_text(["x"] * draw(st.integers(1, len(EVENT_FIELDS) - 1))).encode())
    more = draw(st.lists(letters, min_size=1, max_size=3))
    return Input(b",".join([_csv_record(_row(data)).raw, *(m.encode() for m in more)]))


def _not_utf8_cell(draw: st.DrawFn, data: dict[str, Any]) -> Input:
    marked = _csv_record(_row({**data, "department": "\x01BAD\x01"})).raw
    return Input(marked.replace(b"\x01BAD\x01", draw(_invalid_csv_bytes)))


CSV: Final = Format(
    "csv",
    {
        **{name: Kind(kind.expected, _as_csv(kind.make)) for name, kind in ROWS.kinds.items()},
        # Over the CSV field limit: the reader refuses the row.
        "huge_field": Kind(RejectCode.MALFORMED_ROW, _as_csv(ROWS.kinds["huge_field"].make)),
        "ragged_row": Kind(RejectCode.MALFORMED_ROW, _ragged),
        "invalid_utf8": Kind(RejectCode.INVALID_ENCODING, _not_utf8_cell),  # in a cell
    },
)


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
    draw: st.DrawFn, fmt: Format, *, tour: bool = False, min_size: int = 1, max_size: int = 30
) -> list[Input]:
    """Inputs for one batch, with some of its valid events repeated (duplicate ids).

    Each input's kind is drawn first, evenly; a batch holds at most one heavy input.
    With ``tour``, the batch holds every kind of ``fmt`` (in random order, with up to
    ``max_size`` others) and at least one repeated event. The inputs are made from a
    few valid events, each with an id of its own (a shorter draw than one event each).
    """
    kinds = list(fmt.kinds)
    light = st.sampled_from([kind for kind in kinds if kind not in fmt.heavy])
    chosen = list(kinds) if tour else []
    for kind in draw(
        st.lists(st.sampled_from(kinds), min_size=0 if tour else min_size, max_size=max_size)
    ):
        heavy = kind in fmt.heavy and any(k in fmt.heavy for k in chosen)
        chosen.append(draw(light) if heavy else kind)
    if tour:
        chosen = draw(st.permutations(chosen))
    bases = st.sampled_from(draw(st.lists(valid_events(), min_size=1, max_size=4)))
    batch = [fmt.make(draw, kind, {**draw(bases), "event_id": draw(_ids)}) for kind in chosen]
    valid = [item for item in batch if item.valid]
    if valid:
        for _ in range(draw(st.integers(1 if tour else 0, 3))):
            again = draw(st.sampled_from(valid))
            batch.insert(draw(st.integers(0, len(batch))), again)
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
