"""A stream worker whose shutdown hangs still ends, with one error line, after the timeout."""

from __future__ import annotations

import subprocess
import sys
import time

from commpulse.streaming import arm_stop_watchdog


def test_a_process_still_running_at_the_timeout_stops_hard_with_one_error_line() -> None:
    hanging = "import time; from commpulse.streaming import arm_stop_watchdog; " \
              "arm_stop_watchdog(0.3); time.sleep(30)"  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", hanging], check=False, capture_output=True, text=True, timeout=20
    )
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "error: the stream worker did not stop within 0.3 s of the signal and stopped hard; "
        "its state in Kafka is as after a kill -9, which the next start recovers from"
    )


def test_a_process_that_ends_in_time_is_left_alone() -> None:
    ended = "from commpulse.streaming import arm_stop_watchdog; arm_stop_watchdog(5.0)"
    done = subprocess.run(
        [sys.executable, "-c", ended], check=False, capture_output=True, text=True, timeout=20
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_the_timer_calls_what_it_is_given() -> None:
    called: list[float] = []
    timer = arm_stop_watchdog(0.05, lambda: called.append(time.monotonic()))
    timer.join(5)
    assert len(called) == 1
