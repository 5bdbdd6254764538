"""Running suites with great-expectations, imported on first use (it takes seconds).

Validation uses an ephemeral context (in memory, no progress bars, no usage
statistics) with a pandas data source, one great-expectations suite per frame;
each expectation carries its check's name in ``meta`` so results map back.
Warehouse tables reach pandas through DuckDB (great-expectations' SQL data
source does not work with DuckDB).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from quality.checks import Check, CheckResult, Suite, When

if TYPE_CHECKING:
    import duckdb

__all__ = ["SAMPLE_SIZE", "PandasFrame", "Validator", "read_frames", "validate"]

#: A pandas DataFrame (pandas ships no type information).
PandasFrame = Any
#: Offending values or rows kept per failed check.
SAMPLE_SIZE: Final = 5


def read_frames(con: duckdb.DuckDBPyConnection, suite: Suite) -> dict[str, PandasFrame]:
    """Each frame of ``suite`` read from the warehouse into pandas.

    ``TIMESTAMPTZ`` columns arrive as naive UTC times: pandas deprecates comparing
    time-zone-aware columns the way great-expectations does, and DuckDB converts
    them with a keyword pandas 3.1 deprecates. The instants are the same.
    """
    frames = {}
    for frame in suite.frames:
        relation = con.sql(frame.sql, params=dict(frame.params) or None)
        columns = [
            f'timezone(\'UTC\', "{name}") AS "{name}"'
            if str(kind) == "TIMESTAMP WITH TIME ZONE"
            else f'"{name}"'
            for name, kind in zip(relation.columns, relation.types, strict=True)
        ]
        frames[frame.name] = relation.select(", ".join(columns)).df()
    return frames


def validate(suite: Suite, frames: Mapping[str, PandasFrame]) -> list[CheckResult]:
    """Run every check of ``suite`` on ``frames`` (one per frame name); results in check order."""
    return Validator()(suite, frames)


class Validator:
    """Validates suites in one ephemeral great-expectations context, made on first use.

    Reuse one for many validations (the sink's gate checks batch after batch): the
    context, the data source and each suite's expectations are built once.
    """

    def __init__(self) -> None:
        self._definition: Any = None
        self._suites: dict[tuple[str, str], Any] = {}

    def __call__(self, suite: Suite, frames: Mapping[str, PandasFrame]) -> list[CheckResult]:
        if self._definition is None:
            self._definition = (
                _context()
                .data_sources.add_pandas("commpulse")
                .add_dataframe_asset("frame")
                .add_batch_definition_whole_dataframe("whole")
            )
        found: dict[str, CheckResult] = {}
        for frame in suite.frames:
            checks = [check for check in suite.checks if check.frame == frame.name]
            if not checks:
                continue
            data = frames[frame.name]
            batch = self._definition.get_batch(batch_parameters={"dataframe": data})
            outcome = batch.validate(
                self._expectations(suite, frame.name, checks),
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": SAMPLE_SIZE,
                    "unexpected_index_column_names": [
                        column for column in frame.index if column in data.columns
                    ],
                },
            )
            by_name = {check.name: check for check in checks}
            for result in outcome.results:
                check = by_name[result.expectation_config.meta["check"]]
                found[check.name] = _result(suite.name, check, result)
        return [found[check.name] for check in suite.checks if check.name in found]

    def _expectations(self, suite: Suite, frame: str, checks: Sequence[Check]) -> Any:
        key = (suite.name, frame)
        if key not in self._suites:
            import great_expectations as gx
            import great_expectations.expectations as gxe

            expectations = gx.ExpectationSuite(name=f"{suite.name}:{frame}")
            for check in checks:
                kind = getattr(gxe, check.expectation)
                extra = {"row_condition": _condition(check.when)} if check.when else {}
                expectations.add_expectation(
                    kind(
                        **check.kwargs,
                        **extra,
                        meta={"check": check.name, "critical": check.critical},
                    )
                )
            self._suites[key] = expectations
        return self._suites[key]


def _context() -> Any:
    """An ephemeral context: in memory, no progress bars, no usage statistics."""
    with warnings.catch_warnings():
        # great-expectations 1.x imports modules Python deprecates; that is its business,
        # not a warning for commpulse users (and the tests turn warnings into errors).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _result(suite: str, check: Check, result: Any) -> CheckResult:
    error = _error(result.exception_info)
    if error is not None:
        return CheckResult(suite, check.name, check.columns, check.critical, False, None, [error])
    details: Mapping[str, Any] = result.result or {}
    count = details.get("unexpected_count")
    rows = details.get("partial_unexpected_index_list") or details.get("partial_unexpected_list")
    sample = [_plain(row) for row in (rows or [])[:SAMPLE_SIZE]] if not result.success else []
    return CheckResult(
        suite,
        check.name,
        check.columns,
        check.critical,
        bool(result.success),
        None if count is None else int(count),
        sample,
    )


def _error(info: Any) -> str | None:
    """The message of an exception raised while checking, if any (great-expectations keeps
    one per expectation, or one per metric it computed)."""
    if not isinstance(info, Mapping):
        return None
    candidates: Iterable[Any] = [info] if "raised_exception" in info else info.values()
    for entry in candidates:
        if isinstance(entry, Mapping) and entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "unknown error").splitlines()
            return f"could not run: {message[0] if message else 'unknown error'}"
    return None


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready Python (numpy and pandas scalars, timestamps, NaN → None)."""
    if value is None or type(value).__name__ in {"NAType", "NaTType"}:
        return None
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp
        return str(value.isoformat())
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def _condition(when: When) -> Any:
    """The great-expectations row condition for ``when``."""
    from great_expectations.expectations.row_conditions import Column

    if not when.values:
        return Column(when.column).is_null()
    if len(when.values) == 1:
        return Column(when.column) == when.values[0]
    return Column(when.column).is_in(list(when.values))
