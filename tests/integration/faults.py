"""Faults while events flow: a running sink to kill, a paced sender, and the kill loop.

``kills_while_sending`` sends events from a background thread while it
alternately ``kill -9``s a stream worker and the sink and starts each again.
The 200,000-event acceptance run (test_stream_reference.py) and the broker
restart test (test_faults.py) use these.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import httpx

from commpulse.settings import Settings
from ingest import IngestCounts, Record
from tests.integration.stream_support import Worker, worker
from tests.integration.support import COMMPULSE, producer_for, wait_for

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


def send_gradually(
    settings: Settings,
    events: Sequence[dict[str, Any]],
    *,
    chunk: int,
    pause: float,
    sent: list[int] | None = None,
) -> IngestCounts:
    """Send in chunks with a pause between, through one producer (it retries across outages)."""
    with producer_for(settings) as producer:
        for start in range(0, len(events), chunk):
            result = producer.send_many([Record(event) for event in events[start : start + chunk]])
            assert result.dead_lettered == 0, result.rejections
            if sent is not None:
                sent.append(min(start + chunk, len(events)))
            time.sleep(pause)
        return producer.flush()


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


@dataclass
class KillLog:
    started: float = field(default_factory=time.monotonic)
    entries: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.entries.append(f"{time.monotonic() - self.started:6.1f} s  {what}")

    def __str__(self) -> str:
        return "\n".join(self.entries)


@dataclass
class Killed:
    """What ``kills_while_sending`` leaves: the killed app's running worker, what was sent."""

    worker: Worker
    sent: int
    log: KillLog


@contextmanager
def kills_while_sending(
    settings: Settings,
    events: Sequence[dict[str, Any]],
    *,
    worker_env: dict[str, str],
    app_id: str,
    sink: dict[str, str],
    chunk: int,
    pause: float,
    kills: int = KILLS,
) -> Iterator[Killed]:
    """Send ``events`` gradually while the app ``app_id``'s worker and a sink are killed.

    Alternately: kill -9 the worker once it is working, then the sink once it has
    committed a batch since its start, each after a further random delay, and start
    each again; ``kills`` times. Then, once everything is sent, kill the last sink too
    (the caller loads the rest). Yields the worker running now; stops it at the end.
    """
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    log = KillLog()
    log.note(f"random seed {seed}")
    sent_so_far: list[int] = [0]
    with ExitStack() as processes, ThreadPoolExecutor(1) as pool:
        current = processes.enter_context(worker(worker_env, app_id=app_id))
        running_sink = SinkProcess.start(sink)
        processes.callback(lambda: running_sink.kill_if_running())
        sending: Future[IngestCounts] = pool.submit(
            send_gradually, settings, events, chunk=chunk, pause=pause, sent=sent_so_far
        )
        for round_ in range(kills):
            assert wait_for(partial(_working, current), timeout=90, interval=0.5), (
                f"the restarted worker applied nothing:\n{current.tail()}"
            )
            time.sleep(rng.uniform(0.0, 3.0))
            done = applied(current)
            current.kill()
            log.note(f"kill -9 stream worker #{round_ + 1} (it had applied {done} events)")
            current = processes.enter_context(worker(worker_env, app_id=app_id))

            before = running_sink.batches()
            if not sending.done():  # mid-load: once it has committed a batch since its start
                wait_for(partial(_committed_since, running_sink, before), timeout=10, interval=0.2)
            time.sleep(rng.uniform(0.0, 1.5))
            batches = running_sink.batches()
            running_sink.kill()
            log.note(f"kill -9 sink #{round_ + 1} (after {batches} batches)")
            running_sink = SinkProcess.start(sink)
            log.note(f"{sent_so_far[-1]} of {len(events)} events sent so far")

        counts = sending.result(timeout=600)
        assert (counts.sent, counts.failed) == (len(events), 0)
        log.note(f"all {counts.sent} events sent")
        running_sink.kill()
        log.note(f"kill -9 sink #{kills + 1}, the last")
        yield Killed(current, counts.sent, log)
