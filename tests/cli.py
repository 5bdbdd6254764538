"""Running the ``commpulse`` command line in the test process."""

from __future__ import annotations

import pytest

from commpulse.cli import main
from commpulse.cli.console import err, out


def run_main(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    columns: int = 200,
) -> tuple[int, str, str]:
    """``commpulse *args`` at a terminal ``columns`` wide: (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", str(columns))
    # rich reads COLUMNS when a console is made; ours are made at import, in whichever
    # test imports them first (with pytest-xdist, in no set order)
    for console in (out, err):
        monkeypatch.setattr(console, "_width", columns)
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err
