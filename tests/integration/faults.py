"""Faults while inputs flow: a running sink to kill, a graceful broker restart, the kill loop.

``kills_while_sending`` sends inputs (valid events with invalid lines among them,
tests/integration/flow.py) from a background thread while it alternately ``kill -9``s
a stream worker and the sink and starts each again, and, between two rounds, can stop
the broker gracefully and start it again (``restart_broker``). Each fault is in the
flow's :class:`~tests.integration.flow.FaultLog`, with how many inputs had been handed
over when it came. The 200,000-event acceptance run (test_stream_reference.py) and the
broker restart test (test_faults.py) use these.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import httpx

from commpulse.settings import Settings
from infra import EmbeddedBroker
from ingest import IngestCounts
from tests.integration.flow import FaultLog, Flow, Inputs
from tests.integration.stream_support import Worker, worker
from tests.integration.support import COMMPULSE, wait_for

#: kill -9s of the stream worker, and as many of the sink
KILLS = 5


@dataclass
class SinkProcess:
    """``commpulse -v sink`` (a running sink), its log in a file; killed with SIGKILL."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, env: dict[str, str]) -> SinkProcess:
        log = Path(tempfile.mkdtemp(prefix="commpulse-sink-")) / "sink.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [COMMPULSE, "-v", "sink"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return cls(process, log)

    def batches(self) -> int:
        if self.process.poll() is not None and self.process.returncode != -signal.SIGKILL:
            raise AssertionError(f"the sink exited with {self.process.returncode}:\n{self.tail()}")
        return self.log.read_text(errors="replace").count("batch committed")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def kill_if_running(self) -> None:
        if self.process.poll() is None:
            self.kill()

    def stop(self) -> int:
        """Ctrl-C: the sink finishes its batch and exits."""
        if self.process.poll() is not None:
            return self.process.returncode
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=120)


def sink_env(env: dict[str, str]) -> dict[str, str]:
    """Small batches (many commits to land a kill between), no rebuild while loading."""
    return env | {
        "COMMPULSE_WAREHOUSE__BATCH_EVENTS": "2000",
        "COMMPULSE_WAREHOUSE__BATCH_WITHIN_S": "0.5",
        "COMMPULSE_WAREHOUSE__BUILD_INTERVAL_S": "3600",
        "COMMPULSE_WAREHOUSE__PUBLISH_AFTER_BUILD": "false",
    }


def warehouse_counts(path: Path) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """(rows, distinct ids), ops.loads sums (received, stored, duplicates, invalid), the next
    offsets summed."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("SELECT count(*), count(DISTINCT event_id) FROM raw.events").fetchall()
        loads = con.execute(
            "SELECT sum(received), sum(stored), sum(duplicates), sum(invalid) FROM ops.loads"
        ).fetchall()
        offsets = con.execute("SELECT sum(next_offset) FROM ops.offsets").fetchall()
    finally:
        con.close()
    return rows[0], loads[0], offsets[0]


def applied(running: Worker) -> int:
    """Events the worker applied since it started (0 while it waits for its partitions)."""
    try:
        return int(running.health()["events"])
    except httpx.TimeoutException:
        return 0  # busy evaluating: ask again


def _working(running: Worker) -> bool:
    return applied(running) > 0


def _committed_since(sink: SinkProcess, batches: int) -> bool:
    return sink.batches() > batches


def restart_broker(
    broker: EmbeddedBroker, flow: Flow, log: FaultLog, *, down_s: float = 2.0
) -> None:
    """Stop the broker gracefully (it saves what it acknowledged), leave it down for
    ``down_s`` seconds, and start it again on the same port with the same data."""
    started = time.monotonic()
    code = broker.stop()
    assert code == 0, f"the broker exited with {code}:\n{broker.log_tail()}"
    log.fault("broker stopped", flow, f" (in {time.monotonic() - started:.1f} s)")
    time.sleep(down_s)  # producer, workers and sink all find nobody there
    started = time.monotonic()
    broker.start()
    log.note(f"broker started again (in {time.monotonic() - started:.1f} s)")
    flow.fault_done()


@dataclass
class Killed:
    """What ``kills_while_sending`` leaves: the killed app's running worker, what the
    producer counted, and the faults."""

    worker: Worker
    counts: IngestCounts
    log: FaultLog


@contextmanager
def kills_while_sending(
    settings: Settings,
    inputs: Inputs,
    *,
    worker_env: dict[str, str],
    app_id: str,
    sink: dict[str, str],
    chunk: int,
    pause: float,
    kills: int = KILLS,
    broker: EmbeddedBroker | None = None,
    broker_after: int = KILLS // 2,
) -> Iterator[Killed]:
    """Send ``inputs`` gradually while the app ``app_id``'s worker and a sink are killed.

    Alternately: kill -9 the worker once it is working, then the sink once it has
    committed a batch since its start, each after a further random delay, and start
    each again; ``kills`` times. With a ``broker``, restart it gracefully after round
    ``broker_after``. Before each fault, wait until more inputs have been handed over
    since the one before; after each, let the flow's next part go. Then, once everything
    is sent, kill the last sink too (the caller loads the rest). Yields the worker
    running now; stops it at the end.
    """
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    faults = 2 * kills + (broker is not None)
    log = FaultLog(len(inputs))
    log.note(f"random seed {seed}")

    def timeline_on_error(
        kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            print(f"timeline of the faults so far:\n{log}")

    with ExitStack() as processes:
        processes.push(timeline_on_error)
        current = processes.enter_context(worker(worker_env, app_id=app_id))
        running_sink = SinkProcess.start(sink)
        processes.callback(lambda: running_sink.kill_if_running())
        flow = processes.enter_context(
            Flow(settings, inputs, chunk=chunk, pause=pause, faults=faults)
        )
        for round_ in range(kills):
            if broker is not None and round_ == broker_after:
                # a restart of running processes: the worker and the sink of the round before
                # have started, and work
                assert wait_for(partial(_working, current), timeout=90, interval=0.5), (
                    f"the restarted worker applied nothing:\n{current.tail()}"
                )
                assert wait_for(running_sink.batches, timeout=60, interval=0.2), (
                    f"the restarted sink committed nothing:\n{running_sink.tail()}"
                )
                flow.wait_for_more(log.handed_over)
                restart_broker(broker, flow, log)

            assert wait_for(partial(_working, current), timeout=90, interval=0.5), (
                f"the restarted worker applied nothing:\n{current.tail()}"
            )
            flow.wait_for_more(log.handed_over)
            time.sleep(rng.uniform(0.0, 3.0))
            done = applied(current)
            current.kill()
            log.fault(
                f"kill -9 stream worker #{round_ + 1}", flow, f" (it had applied {done} events)"
            )
            flow.fault_done()
            current = processes.enter_context(worker(worker_env, app_id=app_id))

            before = running_sink.batches()
            committed = wait_for(
                partial(_committed_since, running_sink, before), timeout=10, interval=0.2
            )
            flow.wait_for_more(log.handed_over)
            time.sleep(rng.uniform(0.0, 1.5))
            batches = running_sink.batches()
            running_sink.kill()
            idle = "" if committed else ", none in the 10 s before"
            log.fault(f"kill -9 sink #{round_ + 1}", flow, f" (after {batches} batches{idle})")
            flow.fault_done()
            running_sink = SinkProcess.start(sink)

        counts = flow.result(timeout=600)
        assert (counts.received, counts.sent, counts.dead_lettered, counts.failed) == (
            len(inputs),
            inputs.valid,
            inputs.invalid,
            0,
        ), counts
        log.note(
            f"all {len(inputs)} inputs sent: {counts.sent} events, {counts.dead_lettered} dead-lettered"
        )
        running_sink.kill()
        log.note(f"kill -9 sink #{kills + 1}, the last")
        yield Killed(current, counts, log)
