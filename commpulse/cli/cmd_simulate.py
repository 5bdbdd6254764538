"""``commpulse simulate`` and ``commpulse demo``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from commpulse.cli.cmd_ingest import run_ingest
from commpulse.cli.console import number, progress_bar
from commpulse.cli.console import out as out_console
from commpulse.cli.root import State, app, fail
from commpulse.simulation import SimulatedEvents
from ingest.simulator import SimulationConfig
from ingest.simulator import simulate as simulated_events


def _parse_end(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        end = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from None
    return end if end.tzinfo else end.replace(tzinfo=UTC)


@app.command()
def simulate(
    ctx: typer.Context,
    events: Annotated[
        int, typer.Option("--events", "-n", min=0, help="How many events, exactly.")
    ] = 100_000,
    days: Annotated[
        int, typer.Option(min=1, help="Days of history, ending now (or at --end).")
    ] = 90,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same events.")
    ] = 0,
    end: Annotated[
        str | None, typer.Option(help="End of the history, ISO 8601 (default: now).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write to a file (.jsonl, .csv, .parquet; .gz for text)."),
    ] = None,
    send: Annotated[
        bool, typer.Option("--send", help="Send to Kafka through ingest instead of writing.")
    ] = False,
) -> None:
    """Simulate channel activity; write or send it.

    A mid-size organisation over --days ending now: hundreds of channels of
    every kind, business hours, bots, reopens, late reads, SLA breaches, and a
    few channels that go quiet. The same --seed and --end give the same events.
    """
    if send and out is not None:
        fail("choose either --out FILE or --send, not both", code=2)
    config = SimulationConfig(events=events, days=days, seed=seed, end=_parse_end(end))
    from ingest.eventfiles import write_events  # polars and pyarrow load only here

    if send:
        settings = ctx.ensure_object(State).settings()
        run_ingest(settings, [SimulatedEvents(config)], unit="events", what="the simulator")
        return
    if out is None:
        write_events(simulated_events(config), None)
        return
    with progress_bar("events") as progress:
        task = progress.add_task(out.name, total=events)
        written = write_events(
            simulated_events(config), out, on_written=lambda n: progress.update(task, completed=n)
        )
    out_console.print(f"wrote {number(written)} events to {out}", markup=False)
