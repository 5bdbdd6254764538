"""Run the suites against the warehouse and record each run in ``ops.quality_runs``.

One run checks the chosen suites one after the other, each against the frames
it reads from the warehouse, and (unless asked not to) writes one row per
suite to ``ops.quality_runs`` and one per check to ``ops.quality_results``, in
one transaction. A run fails when a critical check fails.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import duckdb
import orjson

from ingest.errors import ConfigurationError
from quality.checks import CheckResult, QualityError, Suite
from quality.suites import SUITE_NAMES, QualityOptions, suites
from quality.validation import Validator, read_frames
from warehouse.schema import WarehouseError, lock_conflict, open_warehouse

__all__ = ["QualityReport", "SuiteResult", "check_snapshot", "check_warehouse", "run_suites"]

#: schemas a published snapshot does not have (metrics.snapshot publishes core and metrics)
_NOT_IN_SNAPSHOT: Final = re.compile(r"\b(raw|ops)\.")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    started_at: datetime
    finished_at: datetime
    results: tuple[CheckResult, ...]

    @property
    def critical_failures(self) -> int:
        return sum(1 for r in self.results if r.critical and not r.success)

    @property
    def warnings(self) -> int:
        return sum(1 for r in self.results if not r.critical and not r.success)

    @property
    def success(self) -> bool:
        return self.critical_failures == 0


@dataclass(frozen=True)
class QualityReport:
    run_id: uuid.UUID
    suites: tuple[SuiteResult, ...]
    seconds: float
    #: whether the run was written to ``ops.quality_runs``
    recorded: bool
    path: Path | None = None
    #: checks not run, and why (on a snapshot: those that need raw or ops)
    skipped: tuple[str, ...] = ()
    #: whether the checks ran on the published snapshot instead of the warehouse
    snapshot: bool = False

    @property
    def results(self) -> list[CheckResult]:
        return [result for suite in self.suites for result in suite.results]

    @property
    def critical_failures(self) -> int:
        return sum(suite.critical_failures for suite in self.suites)

    @property
    def warnings(self) -> int:
        return sum(suite.warnings for suite in self.suites)

    @property
    def success(self) -> bool:
        return self.critical_failures == 0


def _chosen(names: Sequence[str] | None, options: QualityOptions) -> list[Suite]:
    unknown = [name for name in names or () if name not in SUITE_NAMES]
    if unknown:
        raise ConfigurationError(
            f"unknown suite {unknown[0]!r}: choose from {', '.join(SUITE_NAMES)}"
        )
    return [suite for suite in suites(options) if not names or suite.name in names]


def run_suites(
    con: duckdb.DuckDBPyConnection,
    names: Sequence[str] | None = None,
    *,
    options: QualityOptions | None = None,
    record: bool = True,
    snapshot: bool = False,
) -> QualityReport:
    """Run the suites named (all by default) on an open warehouse; record the run if asked.

    ``snapshot``: ``con`` is a published snapshot, and the checks whose frames read
    ``raw`` or ``ops`` are left out (named in ``skipped``)."""
    started = time.monotonic()
    validator = Validator()
    done, skipped = [], []
    for chosen in _chosen(names, options or QualityOptions()):
        suite = chosen
        if snapshot:
            suite, left_out = _without_raw(chosen)
            skipped += left_out
            if not suite.checks:
                continue
        began = datetime.now(UTC)
        results = validator(suite, read_frames(con, suite))
        done.append(SuiteResult(suite.name, began, datetime.now(UTC), tuple(results)))
        log.info(
            "quality suite=%s checks=%s failed=%s",
            suite.name,
            len(results),
            sum(not r.success for r in results),
        )
    report = QualityReport(
        uuid.uuid4(), tuple(done), time.monotonic() - started, record,
        skipped=tuple(skipped), snapshot=snapshot,
    )  # fmt: skip
    if record:
        _record(con, report)
    return report


def _without_raw(suite: Suite) -> tuple[Suite, list[str]]:
    """``suite`` without the frames (and their checks) that read ``raw`` or ``ops``, and the
    names of the checks left out."""
    kept = tuple(frame for frame in suite.frames if not _NOT_IN_SNAPSHOT.search(frame.sql))
    names = {frame.name for frame in kept}
    checks = tuple(check for check in suite.checks if check.frame in names)
    left_out = [
        f"{check.name} ({suite.name})" for check in suite.checks if check.frame not in names
    ]
    return replace(suite, frames=kept, checks=checks), left_out


def _record(con: duckdb.DuckDBPyConnection, report: QualityReport) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        con.executemany(
            "INSERT INTO ops.quality_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    report.run_id,
                    suite.suite,
                    suite.started_at,
                    suite.finished_at,
                    suite.success,
                    suite.critical_failures,
                    suite.warnings,
                ]
                for suite in report.suites
            ],
        )
        rows = [
            [
                report.run_id,
                r.suite,
                r.check,
                list(r.columns),
                r.critical,
                r.success,
                r.unexpected_count,
                orjson.dumps(r.sample).decode() if r.sample else None,
            ]
            for r in report.results
        ]
        if rows:
            con.executemany("INSERT INTO ops.quality_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def check_warehouse(
    path: Path,
    names: Sequence[str] | None = None,
    *,
    options: QualityOptions | None = None,
    record: bool = True,
) -> QualityReport:
    """Open the warehouse at ``path`` (read-only unless the run is recorded) and check it."""
    names = list(names or ())
    _chosen(names, options or QualityOptions())  # an unknown suite fails before the file opens
    if not path.exists():  # opening it to record the run would create an empty one
        raise QualityError(f"no warehouse at {path}: run `commpulse sink` first")
    try:
        con = open_warehouse(path, read_only=not record)
    except WarehouseError as exc:
        locked = _locked(path, exc)
        if locked is None:
            raise
        raise locked from exc
    try:
        report = run_suites(con, names, options=options, record=record)
    finally:
        con.close()
    return QualityReport(report.run_id, report.suites, report.seconds, report.recorded, path)


def check_snapshot(
    path: Path, names: Sequence[str] | None = None, *, options: QualityOptions | None = None
) -> QualityReport:
    """The checks that a published snapshot can answer (not recorded: it is read-only)."""
    names = list(names or ())
    _chosen(names, options or QualityOptions())
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise QualityError(f"cannot open the snapshot {path}: {exc}") from exc
    try:
        report = run_suites(con, names, options=options, record=False, snapshot=True)
    finally:
        con.close()
    return replace(report, path=path)


def _locked(path: Path, exc: WarehouseError) -> QualityError | None:
    """One line for a warehouse another process holds (a running sink), else None."""
    conflict = lock_conflict(exc.__cause__)
    if conflict is None:
        return None
    holder = f" (PID {conflict.pid})" if conflict.pid is not None else ""
    return QualityError(
        f"the warehouse {path} is locked by another process{holder}, most likely a running "
        "`commpulse sink`: stop it first, or let the sink check each batch "
        '(warehouse.quality_gate = "quarantine")'
    )
