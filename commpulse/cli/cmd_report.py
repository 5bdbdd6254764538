"""``commpulse report``: the quarterly evaluation as one HTML page and CSV files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commpulse.cli.console import err, out
from commpulse.cli.root import EXIT_USAGE, State, app, fail
from commpulse.reading import open_for_reading
from metrics.report import ReportError, ReportResult, parse_quarter, write_report


@app.command()
def report(
    ctx: typer.Context,
    quarter: Annotated[
        str,
        typer.Option(
            "--quarter", "-q", metavar="<quarter>", help="The quarter to report, e.g. 2026Q3."
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for the files (default: <data dir>/reports)."),
    ] = None,
) -> None:
    """Write a quarter's evaluation as an HTML page and CSV files.

    The page (report-QUARTER.html, self-contained, works offline) shows the
    KPIs of every channel kind and channel against their targets, the change
    from the previous quarter, grades, idle and low-efficiency channels, and
    the worst SLA breaches, with charts. Beside it: evaluation-QUARTER.csv,
    breaches-QUARTER.csv and idle-QUARTER.csv. Reads the warehouse only.
    """
    try:
        parse_quarter(quarter)
    except ReportError as exc:
        fail(str(exc), code=EXIT_USAGE)
    settings = ctx.ensure_object(State).settings()
    con = open_for_reading(settings, lambda line: err.print(line, markup=False))
    try:
        result = write_report(
            con,
            quarter,
            out_dir or settings.data_dir / "reports",
            timezone=settings.metrics.timezone,
        )
    finally:
        con.close()
    for line in _lines(result):
        out.print(line, markup=False)


def _lines(result: ReportResult) -> list[str]:
    judged = result.targets_evaluated
    share = f"{100 * result.targets_met / judged:.1f} %" if judged else "none"
    summary = (
        f"report {result.quarter}: {result.channels} channels, {share} of {judged} targets met, "
        f"{result.idle} idle, {result.low_efficiency} low-efficiency, "
        f"{result.breaches} SLA breaches"
    )
    return [summary, *(f"  {path}" for path in result.paths)]
