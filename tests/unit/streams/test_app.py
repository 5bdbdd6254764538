"""The stream agent's handling of a failed batch: stop the worker, never go on without it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any, cast

import pytest

from streams.app import process_or_stop
from streams.runtime import ProducerLike, StreamRuntime


class _Exited(Exception):
    pass


class _Runtime:
    """Stands in for :class:`StreamRuntime`: its batch raises, or waits until cancelled (and
    with ``swallow``, returns then, as a task awaiting an aiokafka fetch task does)."""

    def __init__(self, error: BaseException | None, *, swallow: bool = False) -> None:
        self.error = error
        self.swallow = swallow

    async def process(
        self, batch: Sequence[tuple[int, int, bytes]], producer: Any, *, newest: float | None
    ) -> None:
        if self.error is None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self.swallow:
                    return
                raise
        raise cast(BaseException, self.error)


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    codes: list[int] = []

    def exit_(code: int) -> None:
        codes.append(code)
        raise _Exited

    monkeypatch.setattr(os, "_exit", exit_)
    return codes


def _process(error: BaseException | None, *, swallow: bool = False) -> Any:
    runtime = cast(StreamRuntime, _Runtime(error, swallow=swallow))
    return process_or_stop(runtime, [(0, 0, b"{}")], cast(ProducerLike, None), None)


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (TypeError("unhashable type: 'list'"), "TypeError(\"unhashable type: 'list'\")"),
        # raised inside the batch by a client library, not by stopping the worker
        (asyncio.CancelledError(), "CancelledError()"),
    ],
)
def test_a_failed_batch_stops_the_worker_with_one_error_line(
    error: BaseException, shown: str, exits: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(_Exited):
        asyncio.run(_process(error))
    assert exits == [1]
    assert capsys.readouterr().err == (
        f"error: the stream worker stopped: a batch failed: {shown} (the log above has the "
        "traceback); start it again to go on from its state in Kafka\n"
    )


@pytest.mark.parametrize("swallowed", [False, True], ids=["raised", "swallowed inside"])
def test_a_worker_that_is_stopping_cancels_its_batch_and_does_not_exit(
    swallowed: bool, exits: list[int]
) -> None:
    async def stop_during_a_batch() -> bool:
        task = asyncio.create_task(_process(None, swallow=swallowed))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(stop_during_a_batch())
    assert exits == []
