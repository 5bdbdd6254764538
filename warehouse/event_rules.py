"""The event model's rules as polars expressions, for :mod:`warehouse.decode`'s fast path.

:func:`model_rules` reads each field's rule from ``ingest.events.Event`` (its type, pattern,
lengths, range, enum values, whether it is required), and returns None when the model has
something this module does not restate: a validator it does not know, a setting, a type or a
constraint. The expressions then judge a whole batch of candidate rows at once.

Why they agree with pydantic:

- strings: the model's own patterns, which polars and pydantic-core both match with Rust's
  ``regex`` crate (``\\s`` is Unicode whitespace in both); lengths in characters, as both count;
- ``event_id``: only the canonical lowercase form, which ``model_dump`` writes back unchanged;
- ``occurred_at``: only ``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`` between 1700 and 2200, every
  part range-checked (leap years included). Its instant is computed in integer microseconds;
  ``event.occurred_at.timestamp()`` is those microseconds divided by 10**6 and correctly
  rounded (CPython's ``timedelta.total_seconds``), and below 2**53 µs (285 years from 1970)
  numpy's IEEE division of the two exact doubles gives the same float;
- numbers: the model's bounds, on values whose JSON type the decoder has already checked;
- the fields each event type requires (:data:`ingest.events.REQUIRED_FIELDS`, the model's
  one model validator).
"""

from __future__ import annotations

import logging
import re
import types
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

import annotated_types
import polars as pl
from pydantic import AwareDatetime

from ingest.events import REQUIRED_FIELDS, Event

__all__ = ["EventRules", "FieldRule", "field_rule", "model_rules"]

log = logging.getLogger(__name__)

#: The model's validators and settings the fast path restates; any other one turns it off.
_KNOWN_FIELD_VALIDATORS: Final = frozenset({"_version_from_text", "_pseudonymise", "_to_utc"})
_KNOWN_MODEL_VALIDATORS: Final = frozenset({"_type_specific_fields"})
_KNOWN_CONFIG: Final = {"frozen": True, "extra": "forbid", "use_enum_values": False}

_UUID: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
#: occurred_at as ingest writes it (and a few forms around it): date, time, 1-6 fraction
#: digits, Z or an offset. pydantic accepts more (other separators, more digits, no
#: seconds, ...): those go to the model.
_TIME: Final = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,6}))?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
#: Years whose instants are below 2**53 µs from the epoch, whatever the offset.
_YEARS: Final = (1700, 2200)

_Kind = Literal["uuid", "version", "enum", "datetime", "string", "int", "float"]


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What the model requires of one field."""

    kind: _Kind
    #: no default: the object must have it
    required: bool
    values: tuple[str, ...] = ()
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    ge: float | None = None
    le: float | None = None

    def json_types(self) -> frozenset[type]:
        """The Python types (as orjson reads JSON) the fast path takes for this field."""
        if self.kind == "float":
            found: set[type] = {int, float}
        elif self.kind in ("version", "int"):
            found = {int}
        else:
            found = {str}
        if not self.required and self.kind != "version":  # schema_version: null is wrong
            found.add(type(None))
        return frozenset(found)

    @property
    def numeric(self) -> bool:
        return self.kind in ("version", "int", "float")


class EventRules:
    """The model's rules over frames of candidate rows, one column per field.

    Candidates come in the columns of :attr:`parse_schema` (numbers as floats, whatever their
    JSON type; the decoder has checked that) or :attr:`json_schema` (integers as integers).
    """

    def __init__(self, rules: Mapping[str, FieldRule], dtypes: Mapping[str, Any]) -> None:
        self.rules = dict(rules)
        self.parse_schema = {
            name: pl.Float64 if rule.numeric else pl.String for name, rule in self.rules.items()
        }
        self.json_schema = {
            name: pl.Int64 if rule.kind in ("version", "int") else schema
            for (name, rule), schema in zip(self.rules.items(), self.parse_schema.values())
        }
        #: fields read as integers in :attr:`json_schema` (floats in :attr:`parse_schema`)
        self.integers = [n for n, rule in self.rules.items() if rule.kind in ("version", "int")]
        self._datetimes = [name for name, rule in self.rules.items() if rule.kind == "datetime"]
        self._valid = _valid_expression(self.rules).fill_null(False).alias("_valid")
        self._output = _output_columns(self.rules, dtypes)
        self._compact = _compact_json(self.rules)

    def judge(self, candidates: pl.DataFrame) -> pl.DataFrame:
        """``_valid`` (whether the model accepts each row) and the fields as ``dtypes`` has
        them (meaningful where ``_valid``), beside the candidates' other columns."""
        frame = candidates
        for name in self._datetimes:
            instants = _instants(frame[name])
            frame = frame.with_columns(
                instants["ok"].alias(f"_{name}_ok"), instants["seconds"].alias(f"_{name}_seconds")
            )
        others = [name for name in candidates.columns if name not in self.rules]
        return frame.select(self._valid, *self._output, *others)

    def compact(self, values: pl.Series) -> pl.Series:
        """Whether each value (bytes) is compact JSON as ingest writes it: the fields in
        model order, each at most once, no whitespace, strings without escapes or control
        characters, integers and numbers in JSON's syntax, ``schema_version`` 1 if there. A
        JSON parser can read such a text one way only."""
        return values.cast(pl.String, strict=False).str.contains(self._compact).fill_null(False)


def model_rules() -> dict[str, FieldRule] | None:
    """The model's field rules, or None when the model has something this module does not know."""
    decorators = Event.__pydantic_decorators__
    unknown = [
        set(decorators.field_validators) - _KNOWN_FIELD_VALIDATORS,
        set(decorators.model_validators) - _KNOWN_MODEL_VALIDATORS,
        decorators.validators,
        decorators.root_validators,
        {
            key: value
            for key, value in Event.model_config.items()
            if _KNOWN_CONFIG.get(key) != value
        },
    ]
    if any(unknown):
        log.warning("the event model has rules the fast decoder does not know: %s", unknown)
        return None
    rules: dict[str, FieldRule] = {}
    for name, field in Event.model_fields.items():
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):  # written into regular expressions
            log.warning("the fast decoder does not know the field name %r", name)
            return None
        rule = field_rule(field.annotation, list(field.metadata), required=field.is_required())
        renamed = field.alias or field.validation_alias or field.serialization_alias
        # an absent optional field is null in a row (schema_version: 1)
        default = 1 if rule is not None and rule.kind == "version" else None
        if (
            rule is None
            or renamed
            or field.default_factory is not None
            or (not rule.required and field.default != default)
        ):
            log.warning("the fast decoder does not know the field %s: %s", name, field)
            return None
        rules[name] = rule
    return rules


def field_rule(annotation: Any, metadata: list[Any], *, required: bool) -> FieldRule | None:
    """One field's rule from its annotation (``X | None``, ``Annotated``) and constraints."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) != 1 or required:
            return None
        annotation = members[0]
    if get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        for item in extra:
            metadata.extend(getattr(item, "metadata", [item]))
    limits: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            limits["ge"] = item.ge
        elif isinstance(item, annotated_types.Le):
            limits["le"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            limits["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            limits["max_length"] = item.max_length
        elif set(getattr(item, "__dict__", {})) == {"pattern"}:  # pydantic's Field(pattern=)
            limits["pattern"] = item.pattern
        else:
            return None
    if annotation is str:
        return FieldRule("string", required, **limits)
    if annotation in (int, float):
        return FieldRule("int" if annotation is int else "float", required, **limits)
    if limits:
        return None
    if annotation is uuid.UUID:
        return FieldRule("uuid", required)
    if annotation is AwareDatetime:
        return FieldRule("datetime", required)
    if get_origin(annotation) is Literal and get_args(annotation) == (1,) and not required:
        return FieldRule("version", required)
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return FieldRule("enum", required, values=tuple(member.value for member in annotation))
    return None


def _valid_expression(rules: Mapping[str, FieldRule]) -> pl.Expr:
    """True for a candidate row the model accepts (null counts as false)."""
    checks: list[pl.Expr] = []
    for name, rule in rules.items():
        column = pl.col(name)
        check = _field_check(column, rule)
        checks.append(check if rule.required else column.is_null() | check)
    event_type = pl.col("event_type")
    for kind, needed in REQUIRED_FIELDS.items():
        if needed:
            missing = pl.any_horizontal(*(pl.col(name).is_null() for name in needed))
            checks.append(~((event_type == kind.value) & missing))
    return pl.all_horizontal(checks)


def _field_check(column: pl.Expr, rule: FieldRule) -> pl.Expr:
    if rule.kind == "uuid":
        return column.str.contains(_UUID)
    if rule.kind == "version":
        return column == 1.0
    if rule.kind == "enum":
        return column.is_in(rule.values)
    if rule.kind == "datetime":
        return pl.col(f"_{column.meta.output_name()}_ok")
    check = pl.lit(True)
    if rule.kind == "string":
        length = column.str.len_chars()
        if rule.pattern is not None:
            check &= column.str.contains(rule.pattern)
        if rule.min_length is not None:
            check &= length >= rule.min_length
        if rule.max_length is not None:
            check &= length <= rule.max_length
        return check
    if rule.kind == "int":  # an int (the decoder checked), maybe parsed as a float
        check &= column.abs() < 2**53
    if rule.ge is not None:
        check &= column >= rule.ge
    if rule.le is not None:
        check &= column <= rule.le
    return check


def _instants(texts: pl.Series) -> pl.DataFrame:
    """Per text: ``ok``, whether it is a valid time of the accepted form (:data:`_TIME`),
    and ``seconds``, its instant in epoch seconds exactly as ``datetime.timestamp()`` has it.

    Where the text has that form its parts sit at fixed places (the zone at the end); the
    parts read elsewhere mean nothing, and ``ok`` is false there.
    """
    text = pl.col("text")
    size = text.str.len_bytes()
    utc = text.str.ends_with("Z")
    zone_size = pl.when(utc).then(1).otherwise(6)

    def number(start: int | pl.Expr, length: int | pl.Expr) -> pl.Expr:
        return text.str.slice(start, length).cast(pl.Int64, strict=False)

    names = ("year", "month", "day", "hour", "minute", "second", "zone_hours", "zone_minutes")
    year, month, day, hour, minute, second, zone_hours, zone_minutes = map(pl.col, names)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = (
        pl.when(month == 2)
        .then(pl.when(leap).then(29).otherwise(28))
        .when(month.is_in([4, 6, 9, 11]))
        .then(30)
        .otherwise(31)
    )
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    shifted = year - (month <= 2).cast(pl.Int64)
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    sign = pl.when(pl.col("negative")).then(-1).otherwise(1)
    offset = pl.when(pl.col("utc")).then(0).otherwise(sign * (zone_hours * 60 + zone_minutes))
    parts = (
        texts.alias("text")
        .to_frame()
        .lazy()
        .select(
            text.str.contains(_TIME).fill_null(False).alias("form"),
            utc.alias("utc"),
            text.str.slice(-6, 1).eq("-").alias("negative"),
            *(
                number(start, length).alias(name)
                for name, (start, length) in zip(
                    names, [(0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2), (-5, 2), (-2, 2)]
                )
            ),
            pl.when(size > 19 + zone_size)
            .then(text.str.slice(20, (size - 20 - zone_size).clip(0)))
            .otherwise(pl.lit("0"))
            .str.pad_end(6, "0")
            .cast(pl.Int64, strict=False)
            .alias("micros"),
        )
        .select(
            (
                pl.col("form")
                & year.is_between(*_YEARS)
                & month.is_between(1, 12)
                & day.is_between(1, month_days)
                & (hour <= 23)
                & (minute <= 59)
                & (second <= 59)
                & (pl.col("utc") | ((zone_hours <= 23) & (zone_minutes <= 59)))
            )
            .fill_null(False)
            .alias("ok"),
            (
                ((era * 146_097 + day_of_era - 719_468) * 1440 + hour * 60 + minute - offset) * 60
                + second
            ).alias("seconds"),
            pl.col("micros").fill_null(0),
        )
        .collect()
    )
    # Integer microseconds over 10**6 with numpy's true division (both exact doubles below
    # 2**53): polars' division by a constant multiplies by its inverse, which can round
    # differently. Where ``ok`` is false the parts may be anything (small numbers, or null).
    micros = (parts["seconds"] * 1_000_000 + parts["micros"]).fill_null(0)
    seconds = pl.Series("seconds", micros.to_numpy() / 1_000_000.0, dtype=pl.Float64)
    return pl.DataFrame([parts["ok"], seconds])


def _output_columns(rules: Mapping[str, FieldRule], dtypes: Mapping[str, Any]) -> list[pl.Expr]:
    """The fields in ``dtypes`` (for the rows the model accepts; elsewhere a cast may give null)."""
    out: list[pl.Expr] = []
    for name, rule in rules.items():
        column, dtype = pl.col(name), dtypes[name]
        if rule.kind == "datetime":
            out.append(pl.col(f"_{name}_seconds").alias(name))
        elif rule.kind == "version":
            out.append(column.fill_null(1.0).cast(dtype, strict=False))
        else:
            out.append(column.cast(dtype, strict=False))
    return out


_JSON_STRING: Final = r'"[^"\\\x00-\x1f]*"'
_JSON_INTEGER: Final = r"-?(?:0|[1-9][0-9]*)"
_JSON_NUMBER: Final = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"


def _compact_json(rules: Mapping[str, FieldRule]) -> str:
    """The regular expression of :meth:`EventRules.compact` (the first field is required)."""
    pieces = []
    for name, rule in rules.items():
        key = f'"{name}"'  # a plain name (model_rules checks)
        if rule.kind == "version":
            pieces.append(f"(?:,{key}:1)?")
            continue
        value = {"int": _JSON_INTEGER, "float": _JSON_NUMBER}.get(rule.kind, _JSON_STRING)
        pieces.append(f",{key}:{value}" if rule.required else f"(?:,{key}:{value})?")
    if not pieces or not pieces[0].startswith(","):
        raise ValueError("the model's first field must be required")
    return "^\\{" + "".join(pieces)[1:] + "\\}$"
