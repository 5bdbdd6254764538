"""Every package the application imports is a declared runtime dependency.

`scripts/setup.sh` (the README's first command) installs the runtime dependencies only, the
test extra comes with `scripts/test.sh`. A module that imports a test tool, or a package that
is only there because another one needs it, works in the test environment and fails on a
user's machine: `commpulse` once imported httpx, declared for the tests only, and the README's
first command failed on a fresh Debian 12 (scripts/fresh-debian.sh shows it). deptry reads the
imports of every module outside tests/ and compares them with pyproject.toml.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_outside_the_tests_is_a_declared_runtime_dependency() -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "deptry", "."],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "No dependency issues found" in report
