"""The ``commpulse`` command line. Each command parses, calls one function, prints."""

# isort: skip_file
# Importing a command module registers its commands; `--help` lists them in this order,
# the order of the pipeline (F401 is off for this file).
from commpulse.cli import (
    cmd_broker,
    cmd_ingest,
    cmd_dlq,
    cmd_simulate,
    cmd_demo,
    cmd_up,
    cmd_stream,
)
from commpulse.cli import cmd_warehouse, cmd_bench
from commpulse.cli import cmd_sql, cmd_report, cmd_publish, cmd_quality, cmd_import
from commpulse.cli.root import app, main

__all__ = ["app", "main"]
