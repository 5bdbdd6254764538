"""The stream worker's memory over a long run, while event time moves on and old state expires.

Events go to a fresh events topic at a steady rate for ``minutes``; their event
time spans ``EVENT_DAYS_PER_MINUTE`` days per minute of the run, so in ten minutes
the worker sees four months: more than its state keeps (the longest rule, 28
days of active users plus the response horizon, the settle time and grace, about
45 days). Its state grows until then and must stay flat after. The worker's RSS is
sampled from /proc every ``sample_s`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Final

import httpx

from commpulse.children import Child
from commpulse.kafka import KafkaTarget, make_producer
from commpulse.settings import Settings, child_environment
from infra import ensure_topics, free_port
from infra.processes import memory_kib
from ingest import Record
from ingest.simulator import SimulationConfig, simulate

__all__ = ["EVENT_DAYS_PER_MINUTE", "soak_stream"]

#: days of event time per minute of the run
EVENT_DAYS_PER_MINUTE: Final = 12


def soak_stream(
    settings: Settings,
    target: KafkaTarget,
    *,
    prefix: str,
    work: Path,
    minutes: float,
    rate: float = 500.0,
    sample_s: float = 10.0,
    on_stage: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Feed a worker ``rate`` events/s for ``minutes``; its RSS over time, and how it grew."""
    topics = settings.topics.prefixed(f"{prefix}.soak")
    here = settings.model_copy(update={"topics": topics})
    ensure_topics(target.bootstrap_servers, topics.specs(), client_options=target.client_options)
    total = int(rate * minutes * 60)
    days = max(1, round(minutes * EVENT_DAYS_PER_MINUTE))
    events: Iterator[dict[str, Any]] = simulate(SimulationConfig(events=total, days=days, seed=2))
    port = free_port()
    env = child_environment(here, stream__web_port=str(port), stream__app_id=f"{prefix}-soak")
    samples: list[tuple[float, float]] = []  # (seconds into the run, RSS MiB)
    sent = 0
    with (
        Child("stream", ["stream"], env=env, log_path=work / "soak-stream.log") as worker,
        make_producer(here, target) as producer,
    ):
        assert worker.pid is not None
        _wait_answers(f"http://127.0.0.1:{port}", worker)
        started = time.monotonic()
        next_sample = 0.0
        while (elapsed := time.monotonic() - started) < minutes * 60:
            if worker.poll() is not None:
                raise RuntimeError(f"the stream worker exited during the soak: {worker.tail()}")
            due = min(total, int(elapsed * rate) + 1) - sent
            if due > 0:
                result = producer.send_many([Record(e) for e in islice(events, due)])
                sent += result.received
            if elapsed >= next_sample:
                samples.append((round(elapsed, 1), round(memory_kib(worker.pid) / 1024, 1)))
                on_stage(
                    f"soak {elapsed / 60:4.1f} of {minutes:g} min: {sent:,} events sent, "
                    f"worker RSS {samples[-1][1]:,.0f} MiB"
                )
                next_sample += sample_s
            time.sleep(0.1)
        sent += producer.send_many([Record(e) for e in events]).received  # the last moment's
        producer.flush()
        samples.append(
            (round(time.monotonic() - started, 1), round(memory_kib(worker.pid) / 1024, 1))
        )
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()
    return _summary(samples, minutes=minutes, rate=rate, days=days, sent=sent, health=health)


def _summary(
    samples: list[tuple[float, float]],
    *,
    minutes: float,
    rate: float,
    days: int,
    sent: int,
    health: dict[str, Any],
) -> dict[str, Any]:
    """The samples, and growth over the last half of the run (after the state's horizon)."""
    half = samples[-1][0] / 2
    late = [rss for at, rss in samples if at >= half]
    return {
        "minutes": minutes,
        "rate_per_s": rate,
        "event_days": days,
        "events_sent": sent,
        "events_applied": health.get("events"),
        "rss_mib": samples,
        "rss_mib_at_half": late[0],
        "rss_mib_max_after_half": max(late),
        "rss_mib_end": samples[-1][1],
        "growth_after_half": round(max(late) / late[0] - 1, 3),
    }


def _wait_answers(url: str, worker: Child, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the stream worker exited: {worker.tail()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the stream worker did not start in {timeout:.0f} s")
