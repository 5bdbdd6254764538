"""``commpulse quality``: the great-expectations suites against the warehouse."""

from __future__ import annotations

from typing import Annotated, Final

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from commpulse.cli.console import err, out
from commpulse.cli.root import State, app, fail
from commpulse.reading import read_from
from quality import (
    SUITE_NAMES,
    CheckResult,
    QualityOptions,
    QualityReport,
    check_snapshot,
    check_warehouse,
)

_SAMPLE_CHARS: Final = 120


def _known(names: list[str] | None) -> list[str] | None:
    for name in names or ():
        if name not in SUITE_NAMES:
            raise typer.BadParameter(
                f"unknown suite {name!r}: choose from {', '.join(SUITE_NAMES)}"
            )
    return names


@app.command()
def quality(
    ctx: typer.Context,
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite",
            "-s",
            metavar="NAME",
            callback=_known,
            help=f"Run only this suite (repeat for more): {', '.join(SUITE_NAMES)}.",
        ),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Record the run in ops.quality_runs (--no-record opens the file read-only).",
        ),
    ] = True,
) -> None:
    """Check the warehouse with the data-quality suites.

    Suites: events (raw.events, the checks the sink's quality gate runs on each
    batch), one per core table, and metrics. Prints every expectation's outcome
    with a few offending rows; exits 1 when a critical expectation fails. While a
    running sink holds the warehouse, the checks run on its published snapshot
    (those that need raw or ops are left out, and named). See docs/quality.md.
    """
    settings = ctx.ensure_object(State).settings()
    options = QualityOptions(
        future_tolerance_s=settings.ingest.future_tolerance_s,
        timezone=settings.metrics.timezone,
    )
    source = read_from(settings)
    if source.note:
        err.print(source.note, markup=False)
    with err.status("checking the warehouse…"):
        if source.snapshot:
            report = check_snapshot(source.path, suite, options=options)
        else:
            report = check_warehouse(settings.warehouse_path, suite, options=options, record=record)
    show(report)
    if not report.success:
        failed = [
            f"{result.check} ({result.suite})"
            for result in report.results
            if result.critical and not result.success
        ]
        fail(f"{report.critical_failures} critical expectation(s) failed: {', '.join(failed)}")


def show(report: QualityReport) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("suite", "expectation", "column(s)", "critical", "passed", "failed", "sample"):
        table.add_column(name, justify="right" if name == "failed" else "left")
    for result in report.results:
        table.add_row(
            result.suite,
            result.check,
            ", ".join(result.columns),
            "critical" if result.critical else "warning",
            _passed(result),
            "" if result.unexpected_count is None else f"{result.unexpected_count:,}",
            escape(_sample(result)),
        )
    out.print(table)
    checks = len(report.results)
    where = (
        f"recorded as run {report.run_id} in ops.quality_runs"
        if report.recorded
        else "not recorded"
    )
    if report.snapshot:
        where += " (the snapshot is read-only)"
    out.print(
        f"{checks} expectations in {len(report.suites)} "
        f"suite{'' if len(report.suites) == 1 else 's'}: "
        f"{checks - report.critical_failures - report.warnings} passed, "
        f"{report.critical_failures} critical failed, {report.warnings} warnings "
        f"in {report.seconds:.1f} s; {where}",
        markup=False,
    )
    if report.skipped:
        out.print(
            f"not checked on the snapshot (they read raw or ops; run again once the sink "
            f"stops): {', '.join(report.skipped)}",
            markup=False,
        )


def _passed(result: CheckResult) -> str:
    if result.success:
        return "[green]yes[/]"
    return "[bold red]NO[/]" if result.critical else "[yellow]no[/]"


def _sample(result: CheckResult) -> str:
    if not result.sample:
        return ""
    text = ", ".join(
        item if isinstance(item, str) else orjson.dumps(item).decode() for item in result.sample
    )
    return text if len(text) <= _SAMPLE_CHARS else text[: _SAMPLE_CHARS - 1] + "…"
