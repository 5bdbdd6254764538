"""Record values → rows of ``raw.events``, column-wise, with exactly the event model's verdict.

The contract (what :func:`decode_record`, the per-record path, does): a record is a row iff
``Event.model_validate_json`` accepts it, and the row holds ``event.model_dump(mode="json")``
with ``occurred_at`` as ``event.occurred_at.timestamp()``; any other record becomes a
:class:`DeadLetter` with the model's reason. :class:`BatchDecoder` keeps that contract for a
whole batch at a fraction of the cost: a fast path *accepts* only records it can prove valid,
and hands every other record to :func:`decode_record` for the verdict and the reason. The
fast path never rejects anything.

The fast path first proves that each record is exactly the JSON object it parses to, with
the JSON types the model's fields take, in one of two ways:

1. For the whole batch at once (polars, no Python per record): each value matched against
   one regular expression of the compact JSON ingest writes (the model's fields in model
   order, each at most once, no whitespace, strings without escapes or control
   characters, integers and numbers in JSON's own syntax, ``schema_version`` 1), and the
   values joined as NDJSON and parsed with the fields' types. For a record of that form
   the parse cannot be anything but the text's (no escape to read, no key twice). A batch
   polars cannot parse (one malformed record, a wrong JSON type) is proven record by
   record instead, and so is a record not in that form (another key order, escapes).
2. Record by record (orjson): ``orjson.dumps(orjson.loads(value)) == value``, so the value is
   compact canonical JSON (no repeated key, no whitespace, no escape or number form two
   parsers could read differently); then its keys and the Python types of their values,
   one tuple looked up in a cache: every key a field, every required field there, strings
   ``str``, integers ``int`` (not ``bool``), floats ``int`` or ``float``, null only in
   optional fields.

Then :class:`warehouse.event_rules.EventRules` judges the proven rows column by column
(patterns, lengths, enums, ranges, times, the fields each type requires); a row it does not
accept goes to the model too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import polars as pl
from pydantic import ValidationError

from ingest.deadletter import DeadLetter
from ingest.events import Event
from ingest.validation import rejection_from
from warehouse.event_rules import EventRules, model_rules

__all__ = ["COLUMNS", "BatchDecoder", "DecodedBatch", "decode_record"]

log = logging.getLogger(__name__)

#: The rows of ``raw.events`` as the sink builds them (``occurred_at`` in epoch seconds, UTC).
COLUMNS: Final = {
    "event_id": pl.String,
    "schema_version": pl.Int16,
    "event_type": pl.String,
    "occurred_at": pl.Float64,
    "channel_id": pl.String,
    "channel_kind": pl.String,
    "scope": pl.String,
    "actor_id": pl.String,
    "actor_role": pl.String,
    "conversation_id": pl.String,
    "message_id": pl.String,
    "in_reply_to": pl.String,
    "recipient_count": pl.Int32,
    "duration_s": pl.Float64,
    "planned_duration_s": pl.Float64,
    "score": pl.Int16,
    "decision": pl.String,
    "category": pl.String,
    "visibility": pl.String,
    "department": pl.String,
    "topic": pl.String,
    "partition": pl.Int32,
    "offset": pl.Int64,
}
_TRANSPORT: Final = ("topic", "partition", "offset")
#: rows as the decoder builds them: the columns, and each row's place in the batch
_ROWS: Final = {**COLUMNS, "_index": pl.Int64}
#: Signatures (keys and value types) remembered; hostile keys cannot grow the cache further.
_MAX_SIGNATURES: Final = 4096


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch decoded: valid events in record order, invalid ones as dead letters."""

    #: columns and dtypes of :data:`COLUMNS`
    rows: pl.DataFrame
    #: in record order
    invalid: list[DeadLetter]
    #: how many rows the fast path proved valid (the rest went through the model)
    fast: int


def decode_record(
    value: bytes | None, topic: str, partition: int, offset: int
) -> dict[str, Any] | DeadLetter:
    """One record through the event model: its row, or its dead letter."""
    try:
        event = Event.model_validate_json(value or b"")
    except ValidationError as exc:
        return DeadLetter.of(
            value or b"",
            rejection_from(exc),
            source=f"sink:{topic}/{partition}@{offset}",
            received_at=datetime.now(UTC),
        )
    row = event.model_dump(mode="json")
    row["occurred_at"] = event.occurred_at.timestamp()
    row["topic"], row["partition"], row["offset"] = topic, partition, offset
    return row


class BatchDecoder:
    """Decodes batches of record values; keep one per sink (it caches what it learnt)."""

    def __init__(self) -> None:
        rules = model_rules()
        if rules is not None and set(rules) != set(COLUMNS) - set(_TRANSPORT):
            log.warning("the event model's fields are not the columns of raw.events")
            rules = None
        self._rules = EventRules(rules, COLUMNS) if rules is not None else None
        self._signatures: dict[tuple[Any, ...], bool] = {}

    @property
    def enabled(self) -> bool:
        """Whether the fast path is on (off when the model has rules it does not know)."""
        return self._rules is not None

    def decode(
        self,
        topic: str,
        values: Sequence[bytes | None],
        partitions: Sequence[int],
        offsets: Sequence[int],
    ) -> DecodedBatch:
        """Decode records given as parallel sequences of values, partitions and offsets."""
        if not len(values) == len(partitions) == len(offsets):
            raise ValueError(
                f"{len(values)} values, {len(partitions)} partitions, {len(offsets)} offsets"
            )
        rows = pl.DataFrame(schema=_ROWS)
        slow = list(range(len(values)))
        if self._rules is not None and values:
            candidates, slow = self._candidates(self._rules, values)
            judged = self._rules.judge(candidates)
            valid = judged["_valid"]
            accepted = judged
            if not valid.all():
                slow = sorted([*slow, *judged["_index"].filter(~valid).to_list()])
                accepted = judged.filter(valid)
            rows = accepted.with_columns(
                pl.lit(topic, pl.String).alias("topic"),
                pl.Series("partition", partitions, pl.Int32).gather(accepted["_index"]),
                pl.Series("offset", offsets, pl.Int64).gather(accepted["_index"]),
            ).select(*_ROWS)
        fast = rows.height
        invalid: list[DeadLetter] = []
        decoded: list[dict[str, Any]] = []
        for index in slow:
            outcome = decode_record(values[index], topic, partitions[index], offsets[index])
            if isinstance(outcome, DeadLetter):
                invalid.append(outcome)
            else:
                decoded.append(outcome | {"_index": index})
        if decoded:
            rows = pl.concat([rows, pl.DataFrame(decoded, schema=_ROWS)])
        if not rows["_index"].is_sorted():
            rows = rows.sort("_index")
        return DecodedBatch(rows.drop("_index"), invalid, fast)

    def _candidates(
        self, rules: EventRules, values: Sequence[bytes | None]
    ) -> tuple[pl.DataFrame, list[int]]:
        """Records proven to be the objects they parse to, in ``rules.parse_schema`` with
        ``_index``, and the indices of the others."""
        frames: list[pl.DataFrame] = []
        rest: Sequence[int] = range(len(values))
        whole = _parsed_whole(rules, values)
        if whole is not None:
            proven = rules.compact(pl.Series(values, dtype=pl.Binary))
            indexed = whole.with_columns(
                pl.int_range(pl.len(), dtype=pl.Int64).alias("_index"),
                *(pl.col(name).cast(pl.Float64) for name in rules.integers),
            )
            if proven.all():
                frames.append(indexed)
                rest = []
            else:
                frames.append(indexed.filter(proven))
                rest = indexed["_index"].filter(~proven).to_list()
        indices, docs, slow = self._one_by_one(rules, values, rest)
        if docs:
            frames.append(
                pl.DataFrame(docs, schema=rules.parse_schema).with_columns(
                    pl.Series("_index", indices, pl.Int64)
                )
            )
        if not frames:
            return pl.DataFrame(schema={**rules.parse_schema, "_index": pl.Int64}), slow
        return pl.concat(frames), slow

    def _one_by_one(
        self, rules: EventRules, values: Sequence[bytes | None], which: Sequence[int]
    ) -> tuple[list[int], list[dict[str, Any]], list[int]]:
        """Of the records at ``which``: the indices and objects of the proven ones, and the
        indices of the others."""
        indices: list[int] = []
        docs: list[dict[str, Any]] = []
        slow: list[int] = []
        loads, dumps, decode_error = orjson.loads, orjson.dumps, orjson.JSONDecodeError
        known = self._signatures
        for index in which:
            value = values[index]
            if value is None:
                slow.append(index)
                continue
            try:
                doc = loads(value)
                canonical = type(doc) is dict and dumps(doc) == value
            except (decode_error, TypeError):  # not JSON, or nested deeper than orjson writes
                canonical = False
            if not canonical:
                slow.append(index)
                continue
            signature = (*doc, *map(type, doc.values()))
            fits = known.get(signature)
            if fits is None:
                fits = self._learn(rules, signature)
            if fits:
                indices.append(index)
                docs.append(doc)
            else:
                slow.append(index)
        return indices, docs, slow

    def _learn(self, rules: EventRules, signature: tuple[Any, ...]) -> bool:
        """Whether objects with these keys and value types may take the fast path."""
        half = len(signature) // 2
        keys, kinds = signature[:half], signature[half:]
        fields = rules.rules
        fits = all(
            key in fields and kind in fields[key].json_types()
            for key, kind in zip(keys, kinds, strict=True)
        ) and all(key in keys for key, rule in fields.items() if rule.required)
        if len(self._signatures) < _MAX_SIGNATURES:
            self._signatures[signature] = fits
        return fits


def _parsed_whole(rules: EventRules, values: Sequence[bytes | None]) -> pl.DataFrame | None:
    """The batch parsed as NDJSON in ``rules.json_schema``, a row per record; None if polars
    cannot (one record that is not an object of those types spoils the batch)."""
    if None in values:
        return None
    joined = b"\n".join(values)  # type: ignore[arg-type]
    if joined.count(b"\n") != len(values) - 1:  # a newline inside a record
        return None
    try:
        parsed = pl.read_ndjson(joined, schema=rules.json_schema)
    except pl.exceptions.PolarsError:
        return None
    return parsed if parsed.height == len(values) else None
