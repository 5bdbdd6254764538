"""``commpulse broker`` and ``commpulse topics``."""

from __future__ import annotations

import signal
from typing import Annotated

import typer
from rich.table import Table

from commpulse.cli.console import out
from commpulse.cli.root import State, app, fail
from commpulse.kafka import connect
from infra import ensure_topics, lease_broker


@app.command()
def broker(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: a free one).")
    ] = None,
) -> None:
    """Run the embedded Kafka broker until Ctrl-C.

    It listens on 127.0.0.1 and keeps its data under the data dir. Other
    commpulse commands with the same data dir use it while it runs.
    """
    settings = ctx.ensure_object(State).settings()
    config = settings.broker
    directory = settings.data_dir / "broker"
    reused = False
    try:
        with lease_broker(
            directory,
            host=config.host,
            port=port or config.port or None,
            start_timeout=config.start_timeout_s,
            stop_timeout=config.stop_timeout_s,
        ) as lease:
            reused = lease.reused
            how = "joined the broker already running" if reused else "started the broker"
            out.print(
                f"{how}: bootstrap servers {lease.bootstrap_servers} (pid {lease.broker_pid}, data in {directory})"
            )
            out.print("other commpulse commands with this data dir use it; press Ctrl-C to stop")
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how this command is meant to end
    out.print("left; the broker stops once its last user is done" if reused else "broker stopped")


@app.command()
def topics(ctx: typer.Context) -> None:
    """Create or verify the Kafka topics.

    Missing topics are created with their partition counts and retention;
    existing ones are checked, and any mismatch is reported (exit 1).
    """
    settings = ctx.ensure_object(State).settings()
    with connect(settings, ensure_topics_exist=False) as target:
        reports = ensure_topics(
            target.bootstrap_servers,
            settings.topics.specs(),
            client_options=target.client_options,
            strict=False,
        )
    table = Table("topic", "status", "partitions", "problems", box=None, pad_edge=False)
    for report in reports:
        style = {"created": "green", "ok": "", "mismatch": "bold red"}[report.status]
        table.add_row(report.name, f"[{style}]{report.status}[/]" if style else report.status,
                      str(report.partitions), "; ".join(report.problems))  # fmt: skip
    out.print(table)
    bad = [report.name for report in reports if report.status == "mismatch"]
    if bad:
        fail(
            f"{len(bad)} topic(s) do not match the settings ({', '.join(bad)}); "
            "fix the settings or recreate the topics"
        )
