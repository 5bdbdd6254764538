"""``commpulse demo``: the whole pipeline on simulated data, with live progress."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress import Progress, TaskID
from rich.table import Table

from commpulse.cli.cmd_ingest import summary_line
from commpulse.cli.console import err, invocation, number, out, progress_bar
from commpulse.cli.root import State, app, fail
from commpulse.demo import LIVE_KPIS, DemoResult, demo_settings, own_workdir, run_demo
from commpulse.ingesting import Source
from warehouse.sink import SinkProgress

_EXAMPLES = (
    (
        "SLA rate per channel kind this quarter, against the target",
        (
            "SELECT channel_kind, round(value, 3) AS sla_rate, target, met "
            "FROM metrics.kpi_quarterly WHERE quarter = '{quarter}' "
            "AND kpi = 'first_response_sla_rate' AND channel_id IS NULL ORDER BY value"
        ),
    ),
    (
        "Channels that went quiet",
        (
            "SELECT channel_id, channel_kind, last_activity_at FROM metrics.channel_health "
            "WHERE idle ORDER BY last_activity_at"
        ),
    ),
    (
        "Daily read rate of the e-mail channels",
        (
            "SELECT day, round(value, 3) AS read_rate FROM metrics.kpi_daily "
            "WHERE kpi = 'read_rate' AND channel_kind = 'email' AND channel_id IS NULL ORDER BY day"
        ),
    ),
)


class _Screen:
    """Steps as lines, progress bars for ingest and sink, a live KPI table while catching up."""

    def __init__(self, events: int) -> None:
        self._events = events
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._live: Live | None = None

    def step(self, text: str) -> None:
        self.close()
        err.print(f"[bold]›[/] {text}")

    def _bar(self, label: str, total: int | None) -> tuple[Progress, TaskID]:
        if self._progress is None or self._task is None:
            self._progress = progress_bar("events")
            self._progress.start()
            self._task = self._progress.add_task(label, total=total)
        return self._progress, self._task

    def ingest(self, source: Source) -> None:
        progress, task = self._bar("ingest", source.total)
        progress.update(task, completed=source.done)

    def sink(self, state: SinkProgress) -> None:
        progress, task = self._bar("sink", self._events)
        progress.update(task, completed=state.received)

    def kpis(self, rows: Sequence[Mapping[str, Any]], health: Mapping[str, Any]) -> None:
        table = Table("kind", "scope", *LIVE_KPIS, title=_title(health), box=None, pad_edge=False)
        latest: dict[tuple[str, str], dict[str, str]] = {}
        for row in rows:
            if row["granularity"] != "day":
                continue
            cells = latest.setdefault((row["channel_kind"], row["scope"]), {})
            cells[row["kpi"]] = _cell(row["kpi"], row["value"])
        for (kind, scope), cells in sorted(latest.items()):
            table.add_row(kind, scope, *(cells.get(kpi, "") for kpi in LIVE_KPIS))
        if self._live is None:
            self._live = Live(table, console=err, refresh_per_second=2, transient=False)
            self._live.start()
        else:
            self._live.update(table)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._live is not None:
            self._live.stop()
            err.print()
        self._progress = self._task = self._live = None


def _title(health: Mapping[str, Any]) -> str:
    events = health.get("events", 0)
    return f"live KPIs of the latest day, per channel kind ({number(events)} events applied)"


def _cell(kpi: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if kpi == "volume" else f"{100 * value:.1f} %"


@app.command()
def demo(
    ctx: typer.Context,
    events: Annotated[
        int, typer.Option("--events", "-n", min=1000, help="How many events to simulate.")
    ] = 60_000,
    workdir: Annotated[
        Path,
        typer.Option(
            help="Where the demo keeps everything (emptied first if an earlier demo made it)."
        ),
    ] = Path("commpulse-demo"),
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 0,
) -> None:
    """Run the whole pipeline on simulated data.

    Starts the embedded broker in --workdir, simulates and ingests a quarter of
    activity, runs a stream worker and the warehouse sink until both caught up
    (live KPIs meanwhile), watches an idle alert fire and resolve, runs the
    quality gate, writes the quarterly report and the BI snapshot, and stops
    everything it started. Ctrl-C at any moment cleans up too.
    """
    base = ctx.ensure_object(State).settings()
    with own_workdir(workdir) as directory:
        settings = demo_settings(base, directory)
        err.print(f"demo in {directory} (an embedded broker, nothing else needed)", markup=False)
        screen = _Screen(events)
        try:
            result = run_demo(settings, events=events, seed=seed, ui=screen)
        finally:
            screen.close()
    _print_result(result)
    if result.quality is not None and not result.quality.success:
        fail("the data-quality gate found critical problems (see above)")


def _print_result(result: DemoResult) -> None:
    print_ = out.print
    print_(summary_line(result.ingest, "the simulator"), markup=False)
    if result.warehouse is not None:
        sunk = result.warehouse.sink
        print_(
            f"warehouse: {number(sunk.stored)} events stored ({number(sunk.duplicates)} "
            f"duplicates, {number(sunk.invalid)} dead-lettered)",
            markup=False,
        )
    print_(
        f"stream: {number(result.stream.get('events', 0))} events applied, "
        f"{number(result.stream.get('late_dropped', 0))} late",
        markup=False,
    )
    if result.alert is not None:
        alert = result.alert
        fired, resolved = (
            f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
            for moment in (alert.fired_at, alert.resolved_at)
        )
        print_(
            f"alert: {alert.channel_id} went idle (firing since {fired}) and resolved at "
            f"{resolved} when activity returned",
            markup=False,
        )
    if result.quality is not None:
        report = result.quality
        verdict = "passed" if report.success else f"FAILED ({report.critical_failures} critical)"
        print_(
            f"quality: {verdict}: {len(report.results)} expectations in {len(report.suites)} "
            f"suites, {report.warnings} warnings, {report.seconds:.1f} s",
            markup=False,
        )
    table = Table("output", "where", box=None, pad_edge=False)
    data = result.workdir / "data"
    table.add_row("warehouse", str(data / "warehouse.duckdb"))
    if result.report is not None:
        for path in result.report.paths:
            table.add_row("report" if path.suffix == ".html" else "report csv", str(path))
    if result.snapshot is not None:
        table.add_row("BI snapshot", str(result.snapshot.path))
        table.add_row("BI parquet", f"{result.snapshot.parquet_dir}/")
    table.add_row("logs", f"{result.logs}/")
    for topic, count in result.topic_records.items():
        table.add_row(f"topic {topic}", f"{number(count)} records")
    print_(table)
    quarter = result.report.quarter if result.report is not None else "2026Q3"
    print_("try:", markup=False)
    command = f"{invocation()} --data-dir {shlex.quote(str(data))} sql"
    for title, sql in _EXAMPLES:
        print_(f"  # {title}", markup=False)
        print_(f"  {command} {_quoted(sql.format(quarter=quarter))}", markup=False)


def _quoted(sql: str) -> str:
    """``sql`` as one shell word: in double quotes where the shell reads it as it is there
    (the SQL keeps its single quotes readable), else as :func:`shlex.quote` makes it."""
    return f'"{sql}"' if not set(sql) & set('"$`\\!') else shlex.quote(sql)
