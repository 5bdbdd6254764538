"""``commpulse import mbox`` and ``commpulse import gharchive``: real sources as events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer

from commpulse.cli.cmd_ingest import run_ingest
from commpulse.cli.console import err, number, out
from commpulse.cli.root import State, app
from ingest.events import Scope
from ingest.importers.foreign import Problem
from ingest.importers.gharchive import GhArchive, GhArchiveStats
from ingest.importers.mbox import MboxArchive, MboxStats, default_channel

_SHOWN = 10

import_app = typer.Typer(
    name="import",
    help="Import mailbox archives or GH Archive files as events.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(import_app)


@import_app.command("mbox")
def import_mbox(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="mbox files of one mailing list or mailbox (.gz too)."),
    ],
    channel: Annotated[
        str | None,
        typer.Option(help="Channel id (default: email:<the files' directory name>)."),
    ] = None,
    scope: Annotated[
        Literal["internal", "external"], typer.Option(help="Scope of the channel.")
    ] = "external",
) -> None:
    """Import mbox archives of one list or mailbox as e-mail events.

    Every message becomes a message_sent; threads across all files give the
    requests (thread starters), responses (replies by others) and follow-ups.
    Unusable messages are reported with file:line and dead-lettered as
    pointers, never with their text. Exit code 3 if anything was
    dead-lettered, 4 if Kafka did not acknowledge everything.
    """
    settings = ctx.ensure_object(State).settings()
    archive = MboxArchive(paths, channel=channel or default_channel(paths), scope=Scope(scope))
    archive.open()  # every file checked before anything is sent
    with _reporting(lambda: _mbox_report(archive.stats)):
        run_ingest(settings, [archive], unit="bytes", what=_files(len(paths)))


@import_app.command("gharchive")
def import_gharchive(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="GH Archive hourly files (.json.gz)."),
    ],
) -> None:
    """Import GH Archive hourly files as ticket events.

    Issues, issue comments, pull requests and review comments become ticket
    and post events, one channel per repository (gh:owner/repo); other GitHub
    events are skipped and counted by type. Exit code 3 if anything was
    dead-lettered, 4 if Kafka did not acknowledge everything.
    """
    settings = ctx.ensure_object(State).settings()
    archive = GhArchive(paths)
    archive.open()
    with _reporting(lambda: _gharchive_report(archive.stats)):
        run_ingest(settings, [archive], unit="bytes", what=_files(len(paths)))


@contextmanager
def _reporting(report: Callable[[], None]) -> Iterator[None]:
    """Print the importer's own counts after the ingest summary, whatever its exit code."""
    try:
        yield
    except typer.Exit:
        report()
        raise
    report()


def _plural(count: int, what: str) -> str:
    return f"{number(count)} {what}{'s' if count != 1 else ''}"


def _files(count: int) -> str:
    return _plural(count, "file")


def _mbox_report(stats: MboxStats) -> None:
    repeated = (
        f" ({_plural(stats.duplicates, 'repeated Message-ID')}, sent once)"
        if stats.duplicates
        else ""
    )
    out.print(
        f"mbox: {number(stats.messages)} messages in {_files(stats.files)}{repeated}"
        f" · {number(stats.threads)} threads: {number(stats.requests)} requests opened,"
        f" {number(stats.answered)} answered, {number(stats.threads_started_earlier)}"
        " started before these files"
        f" · {number(len(stats.malformed))} malformed"
        f" · {number(len(stats.from_lines))} body lines starting with 'From ' kept in"
        f" their message · {number(len(stats.envelope_dates))} dates from the separator line",
        markup=False,
    )
    _problems(stats.malformed)
    for source in stats.envelope_dates[:_SHOWN]:
        err.print(
            f"  {source}: no usable Date header, the separator line's date used", markup=False
        )


def _gharchive_report(stats: GhArchiveStats) -> None:
    out.print(
        f"gharchive: {number(stats.events)} GitHub events in {_files(stats.files)}"
        f" · {number(stats.mapped.total())} imported from {number(len(stats.repositories))}"
        f" repositories ({number(stats.requests)} requests opened)"
        f" · {number(stats.skipped.total())} skipped · {number(len(stats.malformed))} malformed"
        + (f" · {number(stats.repeated)} repeated (sent once)" if stats.repeated else ""),
        markup=False,
    )
    for (kind, made), count in sorted(stats.mapped.items()):
        out.print(f"  {kind} → {made}: {number(count)}", markup=False)
    if stats.skipped:
        skipped = " · ".join(f"{kind} {number(n)}" for kind, n in stats.skipped.most_common())
        out.print(f"  skipped: {skipped}", markup=False)
    _problems(stats.malformed)


def _problems(problems: list[Problem]) -> None:
    for problem in problems[:_SHOWN]:
        err.print(f"  malformed {problem}", markup=False)
    if len(problems) > _SHOWN:
        err.print(f"  ... {len(problems) - _SHOWN} more malformed", markup=False)
