"""The ``commpulse`` command line. Each command parses, calls one function, prints."""

from commpulse.cli import cmd_broker, cmd_import, cmd_ingest, cmd_simulate, cmd_stream  # noqa: F401  (register commands)
from commpulse.cli.root import app, main

__all__ = ["app", "main"]
