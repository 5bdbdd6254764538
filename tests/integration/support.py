"""Helpers for integration tests: run the real CLI and HTTP ingest, send, read topics, wait."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from commpulse.settings import Settings
from infra import AlertmanagerError, alertmanager_binary, free_port
from ingest import Event, Producer, Pseudonymiser, encode
from ingest.simulator import SimulationConfig, simulate

PSEUDONYM_KEY = "integration-test-key-0123456789"


def commpulse_env(settings: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running the real ``commpulse``: this one without any ``COMMPULSE_``
    setting of its own, 200 columns wide, and ``settings`` (``COMMPULSE_...`` variables)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMMPULSE_")}
    return env | {"COLUMNS": "200"} | (settings or {})


def cli_env_for(settings: Settings) -> dict[str, str]:
    """Environment for running the real ``commpulse`` command against ``settings``."""
    return commpulse_env(
        {
            "COMMPULSE_DATA_DIR": str(settings.data_dir),
            "COMMPULSE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "COMMPULSE_TOPICS__EVENTS": settings.topics.events,
            "COMMPULSE_TOPICS__DLQ": settings.topics.dlq,
            "COMMPULSE_TOPICS__KPIS": settings.topics.kpis,
            "COMMPULSE_TOPICS__ALERTS": settings.topics.alerts,
            "COMMPULSE_TOPICS__PACKED": settings.topics.packed,
            "COMMPULSE_PRIVACY__PSEUDONYM_KEY": PSEUDONYM_KEY,
        }
    )


def require_alertmanager() -> None:
    """Skip (with the reason) where Alertmanager is not installed; in CI it must be."""
    try:
        alertmanager_binary()
    except AlertmanagerError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc}; CI must run the Alertmanager tests")
        pytest.skip(f"{exc} (scripts/system-packages.sh installs it; CI does)")


COMMPULSE = str(Path(sys.executable).with_name("commpulse"))


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMPULSE, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def consume_all(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Every record currently in ``topic``, read from the beginning up to the end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(records)} records of {topic}; end offsets {end}")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def simulated_values(n: int, seed: int) -> list[bytes]:
    """``n`` simulated events as ingest writes them to the events topic."""
    return [
        encode(Event.model_validate(e)) for e in simulate(SimulationConfig(events=n, seed=seed))
    ]


def send_values(
    bootstrap: str, topic: str, values: list[bytes], keys: Callable[[int], bytes] | None = None
) -> None:
    """Send ``values`` in order (the ``index``-th with key ``keys(index)``), acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for index, value in enumerate(values):
            producer.send(topic, value, key=keys(index) if keys else None)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def wait_for(
    condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.05
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def producer_for(settings: Settings, **options: Any) -> Producer:
    """The ingest producer the tests send with: their pseudonym key, a short linger."""
    return Producer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        events_topic=settings.topics.events,
        dlq_topic=settings.topics.dlq,
        pseudonymiser=Pseudonymiser(PSEUDONYM_KEY.encode()),
        **({"linger_ms": 5} | options),
    )


@dataclass
class IngestServer:
    """A running ``commpulse serve-ingest``."""

    process: subprocess.Popen[str]
    url: str
    token: str

    def post(self, body: bytes) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/events",
            content=body,
            headers={
                "authorization": f"Bearer {self.token}",
                "content-type": "application/x-ndjson",
            },
            timeout=60,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self) -> bool:
        assert self.alive(), f"serve-ingest exited with {self.process.returncode}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@contextmanager
def serve_ingest(env: dict[str, str], token: str, *extra: str) -> Iterator[IngestServer]:
    """``commpulse serve-ingest`` with ``token``; Ctrl-C at the end, which it must take cleanly."""
    port = free_port()
    with subprocess.Popen(
        [COMMPULSE, "serve-ingest", "--port", str(port), *extra],
        env=env | {"COMMPULSE_INGEST__TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        server = IngestServer(process, f"http://127.0.0.1:{port}", token)
        try:
            assert wait_for(server.healthy, timeout=30), "serve-ingest did not start"
            yield server
        finally:
            os.killpg(process.pid, signal.SIGINT)
            _, err = process.communicate(timeout=30)
    assert process.returncode in (0, 130) and "Traceback" not in err, err


def reconcile_summary(stdout: str) -> tuple[int, int, int]:
    """``commpulse reconcile``'s last line as (compared, different, not final yet)."""
    last = stdout.strip().splitlines()[-1]
    found = re.fullmatch(
        r"([\d,]+) final day windows compared, ([\d,]+) different"
        r"(?:; ([\d,]+) not final yet, not compared)?",
        last,
    )
    assert found is not None, last
    compared, different, not_final = (int((n or "0").replace(",", "")) for n in found.groups())
    return compared, different, not_final
