"""The last user of the embedded broker waits for its keeper to stop it, however long."""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path

import pytest

from infra.keeper import STATE_FILE
from infra.lease import _await_shutdown_if_last
from infra.processes import pid_alive, write_json_atomic


def test_the_last_user_waits_for_a_long_save_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "segment").write_bytes(b"x" * 2_500_000)
    # A keeper that has started to stop its broker and takes 5 s (beyond the 1 s
    # given for it to start stopping).
    with subprocess.Popen(["sleep", "5"]) as keeper:
        write_json_atomic(tmp_path / STATE_FILE, {"status": "stopping", "keeper_pid": keeper.pid})
        threading.Thread(target=keeper.wait, daemon=True).start()  # reaped when it exits
        with caplog.at_level(logging.WARNING, logger="infra.lease"):
            _await_shutdown_if_last(tmp_path, keeper.pid, timeout=1.0)
        assert not pid_alive(keeper.pid)  # it returned once the keeper was done, not at 1 s
    assert [record.getMessage() for record in caplog.records] == [
        "waiting for the embedded broker to save its data (2 MB on disk) and stop"
    ]
