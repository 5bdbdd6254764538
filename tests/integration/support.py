"""Helpers for integration tests: run the real CLI, read topics, wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from infra import AlertmanagerError, alertmanager_binary

PSEUDONYM_KEY = "integration-test-key-0123456789"


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
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMPULSE, *args],
        env=env,
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


def wait_for(
    condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.05
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False
