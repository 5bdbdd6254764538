"""``commpulse up``: everything in the foreground, supervised."""

from __future__ import annotations

from datetime import datetime

import typer

from commpulse.cli.console import err
from commpulse.cli.root import State, app
from commpulse.ownership import sole_owner
from commpulse.signals import StopRequested
from commpulse.supervisor import supervise


@app.command()
def up(ctx: typer.Context) -> None:
    """Run broker, stream worker, sink and ingest, supervised.

    The embedded broker starts unless a cluster is configured. A child that
    exits is logged and restarted (back-off up to a minute); one that fails the
    same way twice as it starts stops everything, with its error. Each writes its
    log to <data dir>/logs/. Ctrl-C stops everything (exit 130), and so does
    SIGTERM (exit 0, as a service manager expects of a clean stop).
    """
    settings = ctx.ensure_object(State).settings()

    def show(line: str) -> None:
        err.print(f"{datetime.now():%H:%M:%S} {line}", markup=False)

    with sole_owner(settings.data_dir, "up", option="--data-dir"):
        try:
            supervise(settings, on_event=show)
        except StopRequested:  # SIGTERM: a service manager's normal stop, done cleanly
            show("stopped on SIGTERM")
