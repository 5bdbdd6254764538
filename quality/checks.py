"""Checks as data: suites, frames, checks and their results.

A :class:`Suite` is a few *frames* (pandas dataframes: a warehouse table read
through DuckDB, or an ingest batch) and the :class:`Check` s that hold for
them. A check names a great-expectations expectation class and its arguments,
so suites can be defined, listed and documented without importing
great-expectations, which takes seconds to load (:mod:`quality.validation`
runs them). Each check is *critical* (the data is wrong: the quality run
fails, the sink's gate quarantines the batch) or a *warning* (worth a look).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.errors import CommpulseError

__all__ = [
    "Check",
    "CheckResult",
    "Frame",
    "QualityError",
    "Suite",
    "When",
    "at_least",
    "between",
    "equal",
    "in_set",
    "not_null",
    "null",
    "unique",
]


class QualityError(CommpulseError):
    """The quality checks cannot run (the warehouse is locked, an unknown suite)."""


@dataclass(frozen=True)
class When:
    """Restrict a check to rows where ``column`` is one of ``values`` (or NULL, if none given)."""

    column: str
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Check:
    """One expectation on one frame: ``expectation`` is a great-expectations class name."""

    name: str
    frame: str
    expectation: str
    columns: tuple[str, ...]
    critical: bool
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    when: When | None = None


@dataclass(frozen=True)
class Frame:
    """A dataframe a suite checks: ``sql`` reads it from the warehouse; ``index`` names a row."""

    name: str
    sql: str
    index: tuple[str, ...]
    #: named parameters of ``sql`` (``$name``)
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    frames: tuple[Frame, ...]
    checks: tuple[Check, ...]

    def __post_init__(self) -> None:
        names = [check.name for check in self.checks]
        if len(set(names)) != len(names):
            raise ValueError(f"suite {self.name}: check names repeat")
        frames = {frame.name for frame in self.frames}
        if unknown := {check.frame for check in self.checks} - frames:
            raise ValueError(f"suite {self.name}: checks on unknown frames {sorted(unknown)}")


@dataclass(frozen=True)
class CheckResult:
    suite: str
    check: str
    columns: tuple[str, ...]
    critical: bool
    success: bool
    #: rows that failed (None when the check could not run)
    unexpected_count: int | None
    #: a few offending values or rows (each a dict naming the row), or the error
    sample: list[Any]


# Builders: a suite reads as a list of these.


def unique(frame: str, column: str, *, name: str | None = None, critical: bool = True) -> Check:
    return Check(
        name or f"{column}_unique",
        frame,
        "ExpectColumnValuesToBeUnique",
        (column,),
        critical,
        {"column": column},
    )


def not_null(
    frame: str,
    column: str,
    *,
    name: str | None = None,
    when: When | None = None,
    critical: bool = True,
) -> Check:
    return Check(
        name or f"{column}_present",
        frame,
        "ExpectColumnValuesToNotBeNull",
        (column,),
        critical,
        {"column": column},
        when,
    )


def null(
    frame: str, column: str, *, name: str, when: When | None = None, critical: bool = False
) -> Check:
    return Check(
        name, frame, "ExpectColumnValuesToBeNull", (column,), critical, {"column": column}, when
    )


def in_set(
    frame: str,
    column: str,
    values: Iterable[Any],
    *,
    name: str | None = None,
    when: When | None = None,
    critical: bool = True,
) -> Check:
    """``column`` holds one of ``values`` (NULL passes: pair with :func:`not_null`)."""
    return Check(
        name or f"{column}_in_set",
        frame,
        "ExpectColumnValuesToBeInSet",
        (column,),
        critical,
        {"column": column, "value_set": sorted(values)},
        when,
    )


def between(
    frame: str,
    column: str,
    low: float | None = None,
    high: float | None = None,
    *,
    name: str,
    when: When | None = None,
    critical: bool = True,
) -> Check:
    """``low <= column <= high`` (either bound may be left open; NULL passes)."""
    return Check(
        name,
        frame,
        "ExpectColumnValuesToBeBetween",
        (column,),
        critical,
        {"column": column, "min_value": low, "max_value": high},
        when,
    )


def at_least(
    frame: str,
    later: str,
    earlier: str,
    *,
    name: str,
    when: When | None = None,
    critical: bool = True,
) -> Check:
    """``later >= earlier`` on every row where both are present."""
    return Check(
        name,
        frame,
        "ExpectColumnPairValuesAToBeGreaterThanB",
        (later, earlier),
        critical,
        {
            "column_A": later,
            "column_B": earlier,
            "or_equal": True,
            "ignore_row_if": "either_value_is_missing",
        },
        when,
    )


def equal(
    frame: str, a: str, b: str, *, name: str, when: When | None = None, critical: bool = True
) -> Check:
    """``a == b`` on every row where both are present."""
    return Check(
        name,
        frame,
        "ExpectColumnPairValuesToBeEqual",
        (a, b),
        critical,
        {"column_A": a, "column_B": b, "ignore_row_if": "either_value_is_missing"},
        when,
    )
