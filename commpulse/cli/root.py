"""The ``commpulse`` command: global options, settings, and error handling."""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.logging import RichHandler
from rich.markup import escape

from commpulse import __version__, signals
from commpulse.cli.console import err
from commpulse.settings import Settings, load_settings
from infra import InfraError
from ingest import CommpulseError

__all__ = ["EXIT_DEAD_LETTERED", "EXIT_ERROR", "EXIT_UNDELIVERED", "State", "app", "main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DEAD_LETTERED = 3
EXIT_UNDELIVERED = 4
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="commpulse",
    help="Event-sourced analytics for an organisation's communication channels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class State:
    """What the global options asked for; settings are built on first use."""

    config: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None

    def settings(self, **overrides: Any) -> Settings:
        if overrides:
            return load_settings(self.config, **{**self.overrides, **overrides})
        if self._settings is None:
            self._settings = load_settings(self.config, **self.overrides)
        return self._settings


def _version(value: bool) -> None:
    if value:
        typer.echo(f"commpulse {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML settings file (default: ./commpulse.toml if present)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Data directory (default: ./.commpulse; env COMMPULSE_DATA_DIR)."
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="More log output (-vv for debug).",
        ),
    ] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Event-sourced analytics for an organisation's communication channels."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=verbose > 0)],
    )
    # commpulse reports Kafka problems itself, in one line; kafka-python's own log
    # (connection chatter, tracebacks when Ctrl-C interrupts its I/O) shows with -v.
    logging.getLogger("kafka").setLevel(
        {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    )
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    ctx.obj = State(config=config, overrides=overrides)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """``error: message`` on stderr (``message`` as it is: a path may hold ``[...]``), then
    exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the console script: every error is one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    signals.install()
    try:
        try:
            code = app(args=args, prog_name="commpulse", standalone_mode=False)
        except SystemExit:
            # click exits 1 when whoever reads stdout stopped reading (EPIPE: `| head`); the
            # output was wanted only so far, which is no failure, and there is nothing to say
            if type(sys.stdout).__name__ != "PacifyFlushWrapper":  # what click puts there then
                raise
            code = 0
        if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into this code, after every finally ran
            err.print("interrupted; stopped cleanly")
    except typer.TyperException as exc:  # usage errors: typer shows them with a hint
        show = getattr(exc, "show", None)  # usage errors know how to show themselves
        if show is not None:
            show(file=sys.stderr)
        else:
            err.print(f"error: {exc.format_message()}", markup=False)
        code = getattr(exc, "exit_code", EXIT_USAGE)
    except (typer.Abort, KeyboardInterrupt, signals.StopRequested):
        err.print("interrupted; stopped cleanly")
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the user
        if signals.requested():  # what the interrupt broke off, e.g. DuckDB's "Query interrupted"
            err.print("interrupted; stopped cleanly")
            code = EXIT_INTERRUPTED
        elif isinstance(exc, CommpulseError | InfraError):
            _print_error(str(exc), debug)
            code = EXIT_ERROR
        else:
            _print_error(
                f"unexpected {type(exc).__name__}: {exc}"
                + ("" if debug else " (rerun with --debug for details)"),
                debug,
            )
            code = EXIT_ERROR
    sys.exit(code if isinstance(code, int) else 0)


def _print_error(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)
    first, *rest = message.splitlines() or [""]
    err.print(f"[bold red]error:[/] {escape(first)}", markup=True, highlight=False)
    for line in rest:
        err.print(f"  {line}", markup=False, highlight=False)
