"""Ctrl-C in the middle of a library call is an interruption, not an unexpected error."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from kafka.future import Future

from commpulse import signals
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


@pytest.fixture
def our_handlers() -> Iterator[None]:
    """commpulse's SIGINT and SIGTERM handlers for the test, the test runner's afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    signals.install()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _wait_for_the_interrupt() -> NoReturn:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.001)
    raise AssertionError("the interrupt never came")


def test_sigterm_inside_kafka_python_is_raised_once_the_thread_has_left_it(
    our_handlers: None,
) -> None:
    # kafka-python takes locks without try/finally; an exception raised inside it can
    # leave one held for ever. Here SIGTERM arrives while kafka.future.Future.success
    # runs a callback of ours.
    progress = []

    def callback(value: int) -> None:
        signal.raise_signal(signal.SIGTERM)
        progress.append(value)  # not interrupted: kafka-python is on the stack

    future = Future()
    future.add_callback(callback)
    with pytest.raises(signals.StopRequested) as raised:
        future.success(7)
        _wait_for_the_interrupt()
    assert progress == [7]
    assert future.is_done and future.value == 7
    frames = [entry.frame.f_globals["__name__"] for entry in raised.traceback]
    where = [name for name in frames if name != signals.__name__][-1]
    assert where == __name__  # raised in our code, after kafka-python returned
    assert signals.requested()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no retry left over


def test_a_second_interrupt_is_raised_at_once_even_inside_kafka_python(
    our_handlers: None,
) -> None:
    progress = []

    def callback(_value: int) -> None:
        signal.raise_signal(signal.SIGTERM)
        progress.append("after the first")
        signal.raise_signal(signal.SIGINT)  # the user insists
        progress.append("after the second")

    future = Future()
    future.add_callback(callback)
    with pytest.raises(KeyboardInterrupt):
        future.success(7)
    assert progress == ["after the first"]
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_check_raises_a_postponed_interrupt_at_once(our_handlers: None) -> None:
    future = Future()
    future.add_callback(lambda _value: signal.raise_signal(signal.SIGTERM))
    future.success(7)
    assert signals.requested()
    with pytest.raises(signals.StopRequested):
        signals.check()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_an_interrupt_outside_kafka_python_is_raised_where_it_arrives(
    our_handlers: None,
) -> None:
    progress = []
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        progress.append("went on")
    assert progress == []


def test_a_long_wait_inside_kafka_python_says_why_the_command_has_not_stopped(
    our_handlers: None, capfd: pytest.CaptureFixture[str]
) -> None:
    def callback(_value: int) -> None:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(signals.NOTICE_AFTER_S + 0.5)  # kafka-python blocking, e.g. on metadata

    future = Future()
    future.add_callback(callback)
    with pytest.raises(signals.StopRequested):
        future.success(7)
        _wait_for_the_interrupt()
    assert capfd.readouterr().err == (
        "stopping once the Kafka client returns; press Ctrl-C again to stop now\n"
    )
