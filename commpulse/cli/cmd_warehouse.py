"""``commpulse sink``, ``commpulse replay`` and ``commpulse reconcile``."""

from __future__ import annotations

from typing import Annotated

import typer

from commpulse.cli.console import err, number, out
from commpulse.cli.root import EXIT_DEAD_LETTERED, State, app, fail
from commpulse.warehousing import SinkRun, reconcile_with_stream, replay, sink
from warehouse.build import BuildResult
from warehouse.sink import SinkProgress


class _Progress:
    """One status line on stderr, at most every half second; a line for each full build
    (a caught-up sink builds with every batch: those only update the status line)."""

    def __init__(self) -> None:
        self._status = err.status("starting…")
        self._status.start()
        self._built = ""

    def __call__(self, progress: SinkProgress) -> None:
        self._status.update(
            f"{number(progress.received)} events read, {number(progress.stored)} stored "
            f"({number(progress.rate)}/s), lag {number(progress.lag)}{self._built}"
        )

    def build(self, result: BuildResult) -> None:
        if result.mode == "full":
            err.print(
                f"built core and metrics in full: {number(result.requests)} requests, "
                f"{number(result.messages)} messages, {number(result.kpi_rows)} daily KPI rows, "
                f"in {result.seconds:.1f} s",
                markup=False,
            )
        self._built = (
            f"; tables up to date ({number(result.events)} events, last build "
            f"{result.seconds:.2f} s)"
        )

    def stop(self) -> None:
        self._status.stop()


def _summary(run: SinkRun) -> None:
    result = run.sink
    quarantined = (
        f"{number(result.quarantined)} quarantined (see ops.quarantine), "
        if result.quarantined
        else ""
    )
    out.print(
        f"{number(result.received)} events read: {number(result.stored)} stored, "
        f"{number(result.duplicates)} duplicates, {number(result.invalid)} dead-lettered, "
        f"{quarantined}in {result.seconds:.1f} s → {run.path}",
        markup=False,
    )


@app.command(name="sink")
def sink_command(
    ctx: typer.Context,
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="Exit once no lag is left.")
    ] = False,
    full: Annotated[
        bool,
        typer.Option("--full", help="Rebuild every core and metrics table, not only what is new."),
    ] = False,
    reconfigure: Annotated[
        bool,
        typer.Option(
            "--reconfigure",
            help="The channel catalog or reporting time zone changed on purpose: rebuild "
            "everything under the new one.",
        ),
    ] = False,
) -> None:
    """Load the events topic into the warehouse, exactly once.

    Rows and consumed offsets commit together; an event sent twice is stored
    once. Core and metrics tables are then brought up to date: only what the new
    events touch (--full: everything).
    """
    settings = ctx.ensure_object(State).settings()
    progress = _Progress()
    try:
        run = sink(
            settings,
            until_caught_up=until_caught_up,
            on_progress=progress,
            on_build=progress.build,
            full=full,
            reconfigure=reconfigure,
        )
    finally:
        progress.stop()
    _summary(run)
    if run.sink.invalid:
        raise typer.Exit(EXIT_DEAD_LETTERED)


@app.command(name="replay")
def replay_command(ctx: typer.Context) -> None:
    """Rebuild the warehouse from the log and swap it in.

    The new warehouse is built under the current configuration (channel catalog,
    reporting time zone), whatever the old one was built with.
    """
    settings = ctx.ensure_object(State).settings()
    progress = _Progress()
    try:
        run = replay(settings, on_progress=progress, on_build=progress.build)
    finally:
        progress.stop()
    _summary(run)


@app.command(name="reconcile")
def reconcile_command(ctx: typer.Context) -> None:
    """Compare the stream's final windows with the warehouse."""
    settings = ctx.ensure_object(State).settings()
    result = reconcile_with_stream(settings, lambda line: err.print(line, markup=False))
    for difference in result.differences:
        out.print(str(difference), markup=False)
    if result.compared == 0 and result.not_final == 0:
        fail("no day windows in the kpis topic yet: is a stream worker running?")
    if result.compared == 0:
        fail(
            f"none of the {number(result.not_final)} day windows in the kpis topic is final yet: "
            "a window turns final once events of its kind from after its end (plus its settle "
            "time and grace) have arrived, so the last days of imported history stay open "
            "until newer events come (docs/streams.md, 'Late events and final windows')"
        )
    still_open = (
        f"; {number(result.not_final)} not final yet, not compared" if result.not_final else ""
    )
    out.print(
        f"{number(result.compared)} final day windows compared, "
        f"{number(len(result.differences))} different{still_open}",
        markup=False,
    )
    if result.differences:
        raise typer.Exit(1)
