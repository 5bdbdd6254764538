"""Terminal output: results on stdout, progress and diagnostics on stderr.

Output that is not a terminal (a pipe, a file, a CI log) is never cut to fit a width: rich
would lay tables out for 80 columns and cut their cells with "…" (expectation names, KPI
names, paths). There, lines are as long as their content, unless ``COLUMNS`` says otherwise.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Final, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["err", "invocation", "number", "out", "progress_bar"]

#: the width of output that is not a terminal: wider than any line commpulse prints
UNCUT_WIDTH: Final = 10_000


def _width(stream: TextIO) -> int | None:
    """None (rich finds the terminal's width, or reads ``COLUMNS``) on a terminal or with
    ``COLUMNS`` set; else :data:`UNCUT_WIDTH`."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        terminal = False
    return None if terminal or os.environ.get("COLUMNS") else UNCUT_WIDTH


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Whoever read the output stopped reading (``| head``): it was wanted only so far,
        which is no failure. Stop quietly with exit code 0 (rich's own exits 1)."""
        if self.quiet:
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that flushing at exit cannot fail again
        raise SystemExit(0)


out = _Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err = _Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))


def invocation() -> str:
    """How to run commpulse again as this process was run, for commands we suggest: plain
    ``commpulse`` if that is on PATH and is this program, else its path as typed (say
    ``.venv/bin/commpulse``), or ``python -m commpulse`` for a module run."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None or program.name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m commpulse"
    found = shutil.which("commpulse")
    if found is not None and Path(found).resolve() == program.resolve():
        return "commpulse"
    return shlex.quote(str(program))


def number(value: float) -> str:
    return f"{value:,.0f}" if isinstance(value, int) or value >= 100 else f"{value:,.1f}"


def progress_bar(unit: str = "items") -> Progress:
    """A progress display on stderr (silent when stderr is not a terminal)."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn() if unit == "bytes" else MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=err, transient=False)
