"""Ctrl-C in the middle of a library call is an interruption, not an unexpected error."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.cli import run_main


def test_an_error_that_ctrl_c_caused_is_reported_as_an_interruption(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupted_query(*_args: Any, **_kwargs: Any) -> NoReturn:
        # What DuckDB does when Ctrl-C arrives during a query: it swallows the
        # KeyboardInterrupt and raises its own error instead.
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises KeyboardInterrupt here
            raise AssertionError("no KeyboardInterrupt")
        except KeyboardInterrupt:
            raise RuntimeError("Query interrupted") from None

    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("commpulse.cli.cmd_warehouse.sink", interrupted_query)
    code, _, err = run_main(capsys, monkeypatch, "sink", "--until-caught-up")
    assert code == 130
    assert "interrupted; stopped cleanly" in err and "unexpected" not in err


def test_the_same_error_without_ctrl_c_is_still_an_unexpected_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def failing(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise RuntimeError("Query interrupted")

    monkeypatch.setenv("COMMPULSE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("commpulse.cli.cmd_warehouse.sink", failing)
    code, _, err = run_main(capsys, monkeypatch, "sink", "--until-caught-up")
    assert code == 1
    assert err.startswith("error: unexpected RuntimeError: Query interrupted")
