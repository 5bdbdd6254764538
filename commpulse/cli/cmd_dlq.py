"""``commpulse dlq``: the dead-letter topic, read, counted, shown, exported and replayed."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from commpulse.cli.cmd_ingest import run_ingest
from commpulse.cli.console import err, invocation, number, out
from commpulse.cli.root import State, app, fail
from commpulse.deadletters import Letter, count, export, matching, read_letters
from ingest.importers import open_file
from ingest.validation import RejectCode


@app.command()
def dlq(
    ctx: typer.Context,
    error: Annotated[
        RejectCode | None,
        typer.Option(help="Only letters of this class (the commpulse.error header)."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="Only letters whose source contains this, e.g. events.csv or http."),
    ] = None,
    counts: Annotated[
        bool, typer.Option("--count", help="Count letters per class and kind of source.")
    ] = False,
    show: Annotated[
        str | None,
        typer.Option(metavar="PARTITION:OFFSET", help="Show one letter in full, its input too."),
    ] = None,
    export_to: Annotated[
        Path | None,
        typer.Option(
            "--export", metavar="FILE", help="Write the letters' inputs to FILE, one per line."
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Send the fixed inputs in FILE again, through ingest's checks (exit codes "
            "as `commpulse ingest`).",
        ),
    ] = None,
    fmt: Annotated[
        Literal["jsonl", "csv", "parquet"] | None,
        typer.Option("--format", help="Format of the --replay file (default: from its name)."),
    ] = None,
) -> None:
    """Read, count, export and replay dead letters.

    Every input that could not be used is there, with the reason. Without options: one line per letter (partition:offset, when, class, source, reason),
    oldest first. To repair: --export the inputs to a file, fix it, then --replay it
    (valid events go to the events topic, what is still wrong to the dead-letter topic
    again). The letters hold inputs as they came, names included: see docs/ops.md.
    """
    settings = ctx.ensure_object(State).settings()
    modes = [name for name, on in (("--count", counts), ("--show", show), ("--export",
             export_to), ("--replay", replay)) if on]  # fmt: skip
    if len(modes) > 1:
        fail(f"choose one of {', '.join(modes)}", code=2)
    if replay is not None:
        sources = [open_file(replay, fmt)]
        run_ingest(settings, sources, unit="bytes", what=str(replay))
        return
    letters = read_letters(settings)
    chosen = list(matching(letters, error=error.value if error else None, source=source))
    if show is not None:
        _show(chosen, show)
    elif counts:
        _count(chosen)
    elif export_to is not None:
        _export(chosen, export_to)
    else:
        for item in chosen:
            letter = item.letter
            out.print(
                f"{item.place}  {letter.received_at:%Y-%m-%d %H:%M:%S %Z}  "
                f"{letter.rejection.code.value}  {letter.source}: {letter.rejection.reason}",
                markup=False,
            )
    filtered = "" if len(chosen) == len(letters) else f" ({number(len(chosen))} chosen)"
    err.print(f"{number(len(letters))} dead letters in {settings.topics.dlq}{filtered}",
              markup=False)  # fmt: skip


def _show(letters: list[Letter], place: str) -> None:
    found = [item for item in letters if item.place == place.strip()]
    if not found:
        fail(f"no dead letter at {place} (places are partition:offset, as the list shows them)")
    item = found[0]
    letter = item.letter
    try:
        text = letter.raw.decode("utf-8")
    except UnicodeDecodeError:
        text = repr(letter.raw)
    size = f"{number(letter.raw_size)} bytes" + (
        f", only the first {number(len(letter.raw))} kept" if letter.truncated else ""
    )
    for name, value in (
        ("place", item.place),
        ("error", letter.rejection.code.value),
        ("reason", letter.rejection.reason),
        ("source", letter.source),
        ("received_at", letter.received_at.isoformat()),
        ("input", size),
    ):
        out.print(f"{name}: {value}", markup=False)
    out.print(text, markup=False, highlight=False)


def _count(letters: list[Letter]) -> None:
    table = Table("error", "source", "letters", "first", "last", box=None, pad_edge=False)
    for row in count(letters):
        table.add_row(
            row.error,
            row.source,
            number(row.letters),
            f"{row.first:%Y-%m-%d %H:%M:%S %Z}",
            f"{row.last:%Y-%m-%d %H:%M:%S %Z}",
        )
    out.print(table)


def _export(letters: list[Letter], path: Path) -> None:
    written, left_out = export(letters, path)
    out.print(
        f"{number(written)} inputs written to {path}; fix them, then: "
        f"{invocation()} dlq --replay {shlex.quote(str(path))}",
        markup=False,
    )
    for item in left_out:
        err.print(
            f"  left out {item.place} ({item.letter.source}): cut at the size limit, not "
            "UTF-8, or more than one line; see it with --show",
            markup=False,
        )
