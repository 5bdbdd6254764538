"""great-expectations takes seconds to import: only a quality run may load it."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_and_the_sink_do_not_import_great_expectations() -> None:
    code = (
        "import sys, commpulse.cli, commpulse.warehousing, warehouse.sink, quality; "
        "from quality import BatchGate, suites; BatchGate(); suites(); "
        "print('great_expectations' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "False", done.stderr
