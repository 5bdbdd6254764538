"""``commpulse ingest`` and ``commpulse serve-ingest``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import typer

from commpulse.cli.console import err, number, out, progress_bar
from commpulse.cli.root import EXIT_DEAD_LETTERED, EXIT_UNDELIVERED, State, app, fail
from commpulse.ingesting import IngestSummary, Source, ingest_sources
from commpulse.listening import listeners, require_free
from commpulse.settings import Settings
from ingest.importers import open_file
from ingest.order import describe_late

_SHOWN = 10


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE",
            help="JSONL, CSV or Parquet files of canonical events (.gz for JSONL/CSV).",
        ),
    ],
    fmt: Annotated[
        Literal["jsonl", "csv", "parquet"] | None,
        typer.Option("--format", help="File format (default: from the file name)."),
    ] = None,
) -> None:
    """Ingest event files; bad input goes to the DLQ.

    Valid events go to the events topic, every invalid line or row to the
    dead-letter topic with its reason. Exit code 3 if anything was
    dead-lettered, 4 if Kafka did not acknowledge everything.
    """
    settings = ctx.ensure_object(State).settings()
    sources = [open_file(path, fmt) for path in files]  # every file checked before anything is sent
    what = f"{len(sources)} file{'s' if len(sources) != 1 else ''}"
    summary = run_ingest(settings, sources, unit="bytes", what=what)
    if not summary.counts.received:  # a compressed file or a Parquet file of no events
        fail(f"{what} held no events: nothing was sent")


def run_ingest(
    settings: Settings, sources: Sequence[Source], *, unit: str, what: str
) -> IngestSummary:
    """Ingest with a progress bar, report rejections and a summary line, set the exit code."""
    with progress_bar(unit) as progress:
        tasks = {
            id(source): progress.add_task(source.label, total=source.total or None)
            for source in sources
        }

        def update(source: Source) -> None:
            progress.update(tasks[id(source)], completed=source.done)

        summary = ingest_sources(settings, sources, on_progress=update)

    rejections = [
        (where, rejection)
        for _, result in summary.results
        for _, where, rejection in result.rejections
    ]
    for where, rejection in rejections[:_SHOWN]:
        err.print(f"  dead-lettered {where}: {rejection}", markup=False)
    if summary.counts.dead_lettered > _SHOWN:
        err.print(
            f"  ... {summary.counts.dead_lettered - _SHOWN} more in {settings.topics.dlq}",
            markup=False,
        )
    for failure in summary.failures[:_SHOWN]:
        err.print(
            f"  NOT delivered {failure.source} to {failure.topic}: {failure.error}", markup=False
        )

    out.print(summary_line(summary, what), markup=False)
    order = summary.order
    if order.behind:
        err.print(
            f"warning: {describe_late(order.behind, order.first, order.tolerance_s)}, the "
            "warehouse keeps them; send each channel's events in time order (docs/streams.md, "
            "'Late events and final windows')",
            markup=False,
        )
    if summary.counts.failed:
        raise typer.Exit(EXIT_UNDELIVERED)
    if summary.counts.dead_lettered:
        raise typer.Exit(EXIT_DEAD_LETTERED)
    return summary


def summary_line(summary: IngestSummary, what: str) -> str:
    counts, seconds = summary.counts, summary.seconds
    rate = counts.received / seconds if seconds > 0 else 0.0
    reasons = ", ".join(f"{code} {number(n)}" for code, n in counts.by_reason.most_common())
    parts = [
        f"ingested {number(counts.received)} inputs from {what}",
        f"{number(counts.sent)} sent",
        f"{number(counts.dead_lettered)} dead-lettered" + (f" ({reasons})" if reasons else ""),
    ]
    if counts.failed:
        parts.append(f"{number(counts.failed)} NOT delivered")
    parts.append(f"{seconds:.1f} s ({number(rate)}/s)")
    return " · ".join(parts)


@app.command("serve-ingest")
def serve_ingest(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (default 8400).")] = None,
) -> None:
    """Serve HTTP ingest with a bearer token until Ctrl-C.

    POST /v1/events takes one event, a JSON array or NDJSON. The token is
    COMMPULSE_INGEST__TOKEN, or generated into <data dir>/secrets/ingest.token.
    """
    state = ctx.ensure_object(State)
    settings = state.settings()
    changes = {
        key: value for key, value in {"host": host, "port": port}.items() if value is not None
    }
    if changes:
        settings = state.settings(ingest=settings.ingest.model_copy(update=changes))
    from commpulse.http_ingest import serve  # FastAPI and uvicorn load only here

    require_free(listeners(settings, stream=False))
    serve(settings, on_ready=lambda line: out.print(line, markup=False))
