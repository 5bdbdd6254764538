"""Run real ``commpulse stream`` workers and read what they wrote."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition

from commpulse.settings import Settings
from infra import free_port
from ingest import Record
from streams.records import KpiRecord
from tests.integration.support import COMMPULSE, consume_all, producer_for, wait_for


def send(settings: Settings, events: Iterable[dict[str, Any]]) -> int:
    with producer_for(settings) as producer:
        result = producer.send_many([Record(event) for event in events])
        counts = producer.flush()
    assert result.dead_lettered == 0 and counts.failed == 0, result.rejections
    return result.accepted


@dataclass
class Worker:
    process: subprocess.Popen[str]
    url: str
    log: Path

    def health(self) -> dict[str, Any]:
        if self.process.poll() is not None:
            raise AssertionError(
                f"the worker exited with {self.process.returncode}:\n{self.tail()}"
            )
        return httpx.get(f"{self.url}/healthz", timeout=10).json()  # type: ignore[no-any-return]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Ctrl-C, as in a terminal."""
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.communicate(timeout=60)
        assert self.process.returncode == 0, self.tail()

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=30)


@contextmanager
def worker(env: dict[str, str], *, app_id: str, **settings: str) -> Iterator[Worker]:
    """A stream worker process with its own web port; stopped with Ctrl-C at the end."""
    port = free_port()
    overrides = {
        "COMMPULSE_STREAM__APP_ID": app_id,
        "COMMPULSE_STREAM__BATCH_WITHIN_S": "0.2",
        "COMMPULSE_STREAM__TICK_INTERVAL_S": "1",
        "COMMPULSE_STREAM__SESSION_TIMEOUT_S": "10",  # a worker that left holds nobody up long
        **{f"COMMPULSE_{key.upper()}": value for key, value in settings.items()},
    }
    log = Path(tempfile.mkdtemp(prefix="commpulse-worker-")) / "worker.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [COMMPULSE, "-v", "stream", "--web-port", str(port)],
            env=env | overrides,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    running = Worker(process, f"http://127.0.0.1:{port}", log)
    try:
        assert wait_for(lambda: _answers(running), timeout=60), "the worker did not start"
        yield running
    finally:
        if process.poll() is None:
            running.stop()


def _answers(running: Worker) -> bool:
    if running.process.poll() is not None:
        raise AssertionError(f"the worker exited:\n{running.tail()}")
    try:
        return httpx.get(f"{running.url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def caught_up(
    running: Worker, settings: Settings, app_id: str, events: int, timeout: float = 120.0
) -> dict[str, Any]:
    """Until the worker has applied ``events`` events and sent every KPI record they caused.

    The count of applied events is not enough: the worker counts events as it applies them,
    and only then evaluates and sends the windows they made final, which after a long
    catch-up takes seconds (while its web server may not answer). So: once every event is
    applied and packed, and the source partitions have had time to go idle, note the end of
    the packed topic, and wait until the worker's consumer group has committed it. faust
    commits a batch only after it is processed and the producer flushed, so every KPI record
    is in the topic by then. Returns the health.
    """
    deadline = time.monotonic() + timeout
    health: dict[str, Any] = {}
    packed: dict[TopicPartition, int] | None = None
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=app_id,
        enable_auto_commit=False,
    )
    try:
        while time.monotonic() < deadline:
            if packed is None:
                try:
                    health = running.health()
                except httpx.TimeoutException:
                    continue  # busy evaluating (the request waited 10 s)
                if health["events"] >= events and not any(health["packer_lag"].values()):
                    # A partition is idle once two ticks in a row found it caught up; ticks
                    # come every second here, so the packed topic holds the second after 3 s.
                    time.sleep(3.0)
                    topic = f"{app_id}.packed"
                    found = sorted(consumer.partitions_for_topic(topic) or ())
                    packed = consumer.end_offsets([TopicPartition(topic, p) for p in found])
                    continue
            else:
                committed = {tp: consumer.committed(tp) or 0 for tp in packed}
                if all(committed[tp] >= end for tp, end in packed.items()):
                    with contextlib.suppress(httpx.TimeoutException):
                        return running.health()
            time.sleep(1.0)
    finally:
        consumer.close()
    raise AssertionError(
        f"the worker did not catch up with {events} events in {timeout} s: {health}"
    )


def wait_finals(
    settings: Settings, topic: str, expected: dict[Any, Any], timeout: float = 120.0
) -> dict[Any, Any]:
    """Until the final values in ``topic`` are ``expected`` (or the timeout); returns them."""
    deadline = time.monotonic() + timeout
    seen: dict[Any, Any] = {}
    while time.monotonic() < deadline:
        seen = finals(kpi_records(settings, topic))
        if seen == expected:
            break
        time.sleep(0.5)
    return seen


def kpi_records(settings: Settings, topic: str | None = None) -> list[KpiRecord]:
    raw = consume_all(settings.kafka.bootstrap_servers, topic or settings.topics.kpis)
    return [KpiRecord.decode(record.value) for record in raw]


def finals(
    records: Iterable[KpiRecord],
) -> dict[tuple[Any, ...], tuple[float | None, float | None, float | None]]:
    """Final values by (channel or kind/scope, kpi, granularity, window start)."""
    out: dict[tuple[Any, ...], tuple[float | None, float | None, float | None]] = {}
    for record in records:
        if record.final:
            key = (record.subject, record.kpi, record.granularity, record.window_start.isoformat())
            value = (record.value, record.numerator, record.denominator)
            assert out.get(key, value) == value, f"two different final values for {key}"
            out[key] = value
    return out


def differences(got: dict[Any, Any], want: dict[Any, Any], limit: int = 12) -> str:
    """What is missing from ``got``, extra in it, and different from ``want``, with examples."""
    missing = sorted(want.keys() - got.keys())
    extra = sorted(got.keys() - want.keys())
    changed = sorted(key for key in got.keys() & want.keys() if got[key] != want[key])
    lines = [f"{len(missing)} missing, {len(extra)} extra, {len(changed)} different"]
    lines += [f"  missing {key}: {want[key]}" for key in missing[:limit]]
    lines += [f"  extra {key}: {got[key]}" for key in extra[:limit]]
    lines += [f"  different {key}: {got[key]} != {want[key]}" for key in changed[:limit]]
    return "\n".join(lines)
