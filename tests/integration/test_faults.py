"""Faults: a worker killed among several, the broker restarted mid-stream, Kafka away.

Nothing is lost and nothing is duplicated. Across a graceful broker restart while events
flow (invalid inputs among them): the events topic holds each valid event sent once, the
dead-letter topic each invalid input, the warehouse each valid event, read once; the
stream app that rode out the restart ends with the same final KPI windows as one that
ran without interruption over the same topic, and both equal the polars recomputation
of docs/kpis.md (tests/integration/kpi_reference.py). The kill -9 test (5 kills each of
the stream worker and the sink, and a graceful broker restart, while 200,000 events
flow) is part of the acceptance run in test_stream_reference.py.
docs/reliability.md lists the guarantees and the tests that prove them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from commpulse.settings import KafkaSettings, Settings
from infra import EmbeddedBroker, ensure_topics, free_port, kafka_reachable, record_counts
from ingest import Producer
from ingest.http import create_app
from ingest.simulator import SimulationConfig, simulate
from tests.integration.faults import (
    SinkProcess,
    applied,
    restart_broker,
    sink_env,
    warehouse_counts,
)
from tests.integration.flow import FaultLog, Flow, Inputs, dead_letters
from tests.integration.invalid_inputs import invalid_lines, valid_lines
from tests.integration.kpi_reference import reference_frame
from tests.integration.reference_checks import compare, reference_values, settled_by_kinds
from tests.integration.stream_support import (
    caught_up,
    differences,
    finals,
    kpi_records,
    send,
    wait_finals,
    worker,
)
from tests.integration.support import producer_for, run_cli, wait_for
from tests.integration.test_stream import stack
from tests.scenarios import MONDAY, ticket_scenario

BROKER_TEST_EVENTS = 10_000
#: invalid JSON lines among the events that flow across the restart: 4 of each class
BROKER_TEST_INVALID = 48
GRACE_S = 600.0  # the stream's default grace
END = datetime(2026, 10, 1, tzinfo=UTC)  # a fixed past end: the same events every run


def test_a_surviving_worker_takes_over_from_a_killed_one(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    env, app_id = stack(cli_env)
    with worker(env, app_id=app_id) as doomed, worker(env, app_id=app_id) as survivor:
        assert wait_for(
            lambda: doomed.health()["assigned"] and survivor.health()["assigned"], timeout=60
        ), "the two workers did not share the partitions"
        doomed.kill()
        started = time.monotonic()
        # The embedded broker never expires the dead member; the survivor removes it.
        assert wait_for(lambda: len(survivor.health()["assigned"]) == 12, timeout=90), (
            survivor.tail()
        )
        print(f"took over all partitions {time.monotonic() - started:.1f} s after the kill")
        events = ticket_scenario()
        send(settings, events)
        assert caught_up(survivor, settings, app_id, len(events))["events"] == len(events)
    values = finals(kpi_records(settings, f"{app_id}.kpis"))
    monday = f"{MONDAY}T00:00:00+00:00"
    assert values[("tk", "volume", "day", monday)] == (20.0, 20.0, None)
    assert values[("tk", "fcr_rate", "day", monday)] == (0.5, 2.0, 4.0)


# -- the broker stops and starts again -------------------------------------------------------


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own (fresh data, fixed port), to stop and start at will."""
    broker = EmbeddedBroker(tmp_path / "own-broker", port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_broker_restart_mid_stream_loses_and_duplicates_nothing(
    own_broker: EmbeddedBroker, settings: Settings, cli_env: dict[str, str]
) -> None:
    started = time.monotonic()
    bootstrap = own_broker.bootstrap_servers
    settings = settings.model_copy(update={"kafka": KafkaSettings(bootstrap_servers=bootstrap)})
    ensure_topics(bootstrap, settings.topics.specs())
    env = cli_env | {"COMMPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap}
    events = list(simulate(SimulationConfig(events=BROKER_TEST_EVENTS, days=14, seed=4, end=END)))
    head = len(events) // 4
    assert send(settings, events[:head]) == head
    inputs = Inputs.mixed(events[head:], invalid_lines(BROKER_TEST_INVALID))

    env_killed, app = stack(env)
    log = FaultLog(len(inputs))
    with ExitStack() as processes:
        running = processes.enter_context(worker(env_killed, app_id=app))
        sink = SinkProcess.start(sink_env(env))
        processes.callback(lambda: sink.kill_if_running())
        assert wait_for(lambda: applied(running) > 0 and sink.batches() > 0, timeout=60)
        flow = processes.enter_context(Flow(settings, inputs, chunk=500, pause=0.25, faults=1))
        flow.wait_for_more(1500)  # mid-stream: a few chunks are in, most are to come
        restart_broker(own_broker, flow, log)

        counts = flow.result(timeout=300)
        assert (counts.received, counts.sent, counts.dead_lettered, counts.failed) == (
            len(inputs),
            inputs.valid,
            inputs.invalid,
            0,
        ), f"{counts}\n{log}"
        sent = head + counts.sent
        log.note(f"all {len(inputs)} inputs sent: {counts.sent} events")
        # The stop came while inputs were being handed over, and more came after it.
        assert log.not_while_sending() == [] and log.without_flow_before() == [], log
        # Each event once: nothing the producer sent again across the restart is there twice.
        assert record_counts(bootstrap, [settings.topics.events]) == {settings.topics.events: sent}
        assert dead_letters(settings) == inputs.dead_letters()

        # The processes rode it out. The sink stops at a batch boundary on Ctrl-C.
        assert sink.stop() in (0, 130), sink.tail()
        rest = run_cli("sink", "--until-caught-up", env=sink_env(env))
        assert rest.returncode == 0, rest.stderr
        rows, loads, offsets = warehouse_counts(settings.warehouse_path)
        assert (rows, loads, offsets) == ((sent, sent), (sent, sent, 0, 0), (sent,)), log
        log.note("warehouse exact")

        # An app over the same topic, started after the restart, and never interrupted.
        env_whole, whole_app = stack(env)
        with worker(env_whole, app_id=whole_app) as whole:
            assert caught_up(whole, settings, whole_app, sent, timeout=300)["late_dropped"] == 0
        uninterrupted = finals(kpi_records(settings, f"{whole_app}.kpis"))
        assert len(uninterrupted) > 500
        log.note(f"uninterrupted app: {len(uninterrupted)} final windows")
        interrupted = wait_finals(settings, f"{app}.kpis", uninterrupted, timeout=120)
        assert running.process.poll() is None, "the worker did not survive the restart"
        assert running.health()["late_dropped"] == 0, running.tail()  # replays are not late
    print(f"{time.monotonic() - started:.0f} s\n{log}")
    assert interrupted == uninterrupted, f"{differences(interrupted, uninterrupted)}\n{log}"
    # Both equal the polars recomputation of docs/kpis.md over the events sent, and they
    # made final exactly the windows their kinds' last events have settled.
    reference = reference_frame(events, grace_s=GRACE_S)
    result = compare(interrupted, reference_values(reference))
    assert not result.differences, result.show()
    settled = settled_by_kinds(events, reference)
    assert interrupted.keys() == settled, differences(interrupted, dict.fromkeys(settled))


# -- a producer that loses its connection -----------------------------------------------------


@contextmanager
def http_ingest(producer: Producer, bootstrap: str, token: str) -> Iterator[str]:
    port = free_port()
    app = create_app(
        producer,
        token=token,
        max_body_bytes=1024 * 1024,
        kafka_ok=lambda: kafka_reachable(bootstrap, timeout=1.0) is None,
        grace_s=600.0,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_http_ingest_says_503_for_what_kafka_did_not_take_and_a_retry_delivers_it(
    own_broker: EmbeddedBroker, settings: Settings
) -> None:
    bootstrap = own_broker.bootstrap_servers
    settings = settings.model_copy(update={"kafka": KafkaSettings(bootstrap_servers=bootstrap)})
    ensure_topics(bootstrap, settings.topics.specs())
    token = "fault-token-0123456789abcdef"
    headers = {"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}
    first, second = b"\n".join(valid_lines(40)), b"\n".join(valid_lines(30, start=1000))
    producer = producer_for(
        settings,
        delivery_timeout_ms=3000,
        max_block_ms=3000,
        client_options={"request_timeout_ms": 2000},
    )
    with producer, http_ingest(producer, bootstrap, token) as url:
        ok = httpx.post(f"{url}/v1/events", content=first, headers=headers, timeout=60)
        assert ok.status_code == 202 and ok.json()["accepted"] == 40

        own_broker.stop()
        down = httpx.post(f"{url}/v1/events", content=second, headers=headers, timeout=60)
        assert down.status_code == 503
        assert (down.json()["received"], down.json()["failed"]) == (30, 30)
        # which inputs to send again: each by its place in the body and its event id
        assert down.json()["undelivered"] == [
            {"index": index, "event_id": orjson.loads(line)["event_id"]}
            for index, line in enumerate(valid_lines(30, start=1000))
        ]
        assert httpx.get(f"{url}/healthz", timeout=10).json() == {
            "status": "degraded",
            "kafka": False,
        }
        assert producer.counts.failed == 30
        assert {failure.event_id for failure in producer.failures} == {
            orjson.loads(line)["event_id"] for line in valid_lines(30, start=1000)
        }

        own_broker.start()
        # A client retries the same request until it is taken (the producer may need a few
        # seconds to reconnect); retrying is safe: what failed was not written.
        attempts: list[int] = []

        def retried() -> bool:
            again = httpx.post(f"{url}/v1/events", content=second, headers=headers, timeout=60)
            attempts.append(again.status_code)
            assert again.status_code in (202, 503), again.text
            return again.status_code == 202 and again.json()["accepted"] == 30

        assert wait_for(retried, timeout=60, interval=1.0), attempts
    counts = producer.counts
    refused = len(attempts) - 1  # the 503s before the retry that was taken
    assert (counts.received, counts.sent, counts.failed, counts.pending) == (
        100 + 30 * refused,
        70,
        30 * (1 + refused),
        0,
    )
    assert record_counts(bootstrap, [settings.topics.events]) == {settings.topics.events: 70}
