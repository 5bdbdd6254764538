"""The sink on the real broker into a real DuckDB file: exactly once, kill -9, replay, reconcile."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiokafka import AIOKafkaClient
from kafka import KafkaProducer

from commpulse.settings import Settings
from ingest.simulator import SimulationConfig, simulate
from tests.integration.stream_support import caught_up, send, worker
from tests.integration.support import (
    COMMPULSE,
    consume_all,
    reconcile_summary,
    run_cli,
    wait_for,
)
from tests.integration.test_stream import stack
from tests.scenarios import CALENDAR, calendar_scenario, canonical, ticket_scenario
from warehouse.schema import open_warehouse
from warehouse.sink import SinkConfig, SinkProgress, SinkResult, run_sink


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_each_event_is_stored_once_and_bad_records_are_dead_lettered(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    events = ticket_scenario()
    send(settings, events)
    first = run_cli("sink", "--until-caught-up", env=cli_env)
    assert first.returncode == 0, first.stderr
    assert f"{len(events)} events read: {len(events)} stored, 0 duplicates" in first.stdout
    path = settings.warehouse_path
    assert query(path, "SELECT count(*) FROM core.requests WHERE channel_id = 'tk'") == [(7,)]
    # The sink refreshed the BI snapshot after its build: core and metrics, no raw events.
    serving = settings.serving_path
    assert query(serving, "SELECT count(*) FROM core.requests WHERE channel_id = 'tk'") == [(7,)]
    assert query(serving, "SELECT DISTINCT schema_name FROM duckdb_tables() ORDER BY ALL") == [
        ("core",),
        ("meta",),
        ("metrics",),
    ]
    assert query(
        path,
        "SELECT value, numerator, denominator FROM metrics.kpi_daily WHERE channel_id = 'tk' "
        "AND kpi = 'fcr_rate' AND day = DATE '2025-11-17'",
    ) == [(0.5, 2.0, 4.0)]

    # The same events again (a producer retry, a file ingested twice), and a record that is
    # not an event at all, written straight to the topic past ingest.
    send(settings, events)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    producer.send(settings.topics.events, b'{"event_type": "ticket_opened"}', key=b"tk")
    producer.close()
    second = run_cli("sink", "--until-caught-up", env=cli_env)
    assert second.returncode == 3, second.stderr  # something was dead-lettered
    assert (
        f"{len(events) + 1} events read: 0 stored, {len(events)} duplicates, 1 dead-lettered"
        in second.stdout
    )
    assert query(path, "SELECT count(*), count(DISTINCT event_id) FROM raw.events") == [
        (len(events), len(events))
    ]
    [letter] = consume_all(settings.kafka.bootstrap_servers, settings.topics.dlq)
    headers = dict(letter.headers)
    assert letter.value == b'{"event_type": "ticket_opened"}'
    assert headers["commpulse.error"] == b"missing_field"
    assert headers["commpulse.source"].startswith(f"sink:{settings.topics.events}/".encode())
    assert query(path, "SELECT sum(received), sum(stored), sum(duplicates), sum(invalid) "
                       "FROM ops.loads") == [(2 * len(events) + 1, len(events), len(events), 1)]  # fmt: skip


def test_an_idle_sink_waits_between_polls_and_stores_what_comes_next(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded broker answers a fetch at once when there is nothing to read, so a
    consumer at the end of its partitions fetches again and again: an idle sink kept a
    core busy. Idle, the sink fetches nothing and looks at the end offsets every 50 ms."""
    requests: Counter[str] = Counter()
    original = AIOKafkaClient.send

    async def counting(self: AIOKafkaClient, node_id: int, request: Any, **kwargs: Any) -> Any:
        requests[type(request).__name__] += 1
        return await original(self, node_id, request, **kwargs)

    monkeypatch.setattr(AIOKafkaClient, "send", counting)
    config = SinkConfig(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        topic=settings.topics.events,
        dlq_topic=settings.topics.dlq,
        batch_within_s=0.5,
    )
    con = open_warehouse(tmp_path / "warehouse.duckdb")
    stop, idle, loaded = threading.Event(), threading.Event(), threading.Event()
    results: list[SinkResult] = []

    events = ticket_scenario()

    def on_batch(progress: SinkProgress) -> None:
        if progress.stored == len(events):
            loaded.set()

    def sink() -> None:
        results.append(
            run_sink(con, config, stop=stop, on_batch=on_batch, on_idle=lambda _: idle.set())
        )

    thread = threading.Thread(target=sink)
    thread.start()
    try:
        assert idle.wait(30)
        before = sum(requests.values())
        time.sleep(2.0)
        during = sum(requests.values()) - before
        send(settings, events)
        assert loaded.wait(10)
    finally:
        stop.set()
        thread.join(30)
        con.close()
    # a look at the end offsets every 50 ms at most, one request each (without the pause:
    # thousands of fetches)
    assert during <= 2.0 / 0.05 + 5, (during, requests)
    assert results[0].received == results[0].stored == len(events)


def test_a_sink_killed_mid_load_resumes_exactly(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    events = list(simulate(SimulationConfig(events=30_000, days=30, seed=3)))
    sent = send(settings, events)
    env = cli_env | {"COMMPULSE_WAREHOUSE__BATCH_EVENTS": "2000"}
    path = settings.warehouse_path
    log = Path(tempfile.mkdtemp()) / "sink.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [COMMPULSE, "-v", "sink", "--until-caught-up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # Kill it once a few batches are in, in the middle of the load.
        assert wait_for(lambda: log.read_text().count("batch committed") >= 3, timeout=120)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    [(stored,)] = query(path, "SELECT count(*) FROM raw.events")
    assert 0 < stored < sent, log.read_text()[-2000:]

    again = run_cli("sink", "--until-caught-up", env=env)
    assert again.returncode == 0, again.stderr
    assert query(path, "SELECT count(*), count(DISTINCT event_id) FROM raw.events") == [
        (sent, sent)
    ]
    # Exactly the rest was read again: nothing twice, nothing skipped.
    assert f"{sent - stored:,} events read: {sent - stored:,} stored, 0 duplicates" in again.stdout
    assert query(path, "SELECT sum(next_offset) FROM ops.offsets") == [(sent,)]


def test_replay_rebuilds_the_same_warehouse_in_a_new_file(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    send(settings, ticket_scenario())
    assert run_cli("sink", "--until-caught-up", env=cli_env).returncode == 0
    path = settings.warehouse_path
    daily = "SELECT * FROM metrics.kpi_daily ORDER BY ALL"
    before, inode = query(path, daily), path.stat().st_ino
    replayed = run_cli("replay", env=cli_env)
    assert replayed.returncode == 0, replayed.stderr
    assert path.stat().st_ino != inode
    assert query(path, daily) == before
    assert not list(path.parent.glob(".*replay*"))


def test_reconcile_lists_exactly_the_window_a_late_event_changed(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    catalog = tmp_path / "channels.toml"
    catalog.write_text(CALENDAR)
    events = calendar_scenario()
    send(settings, events)
    env, app_id = stack(cli_env)
    env |= {"COMMPULSE_METRICS__CATALOG": str(catalog)}
    with worker(env, app_id=app_id) as running:
        assert caught_up(running, settings, app_id, len(events))["late_dropped"] == 1
    assert run_cli("sink", "--until-caught-up", env=env).returncode == 0
    reconciled = run_cli("reconcile", env=env)
    assert reconciled.returncode == 1, reconciled.stderr
    lines = reconciled.stdout.strip().splitlines()
    # The stream dropped one event 20 minutes late (beyond its grace); the warehouse kept it.
    assert lines[:-1] == [
        "2025-11-17 soc volume: stream (3, 3, null), warehouse (4, 4, null)",
        "2025-11-17 social (external) volume: stream (3, 3, null), warehouse (4, 4, null)",
    ]
    assert reconcile_summary(reconciled.stdout)[1] == 2


def test_reconcile_says_which_day_windows_are_not_final_yet(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    def surveys(day: str, count: int) -> list[dict[str, Any]]:  # KPIs final at the day's end
        return [
            canonical(f"{day} 10:0{i}", "survey_answered", "sv", "social", actor=f"c{i}", score=5)
            for i in range(count)
        ]

    monday, tuesday = surveys("2025-11-17", 3), surveys("2025-11-18", 2)
    env, app_id = stack(cli_env)
    with worker(env, app_id=app_id) as running:
        # History that ends on Monday: no later event has moved event time past its end.
        send(settings, monday)
        caught_up(running, settings, app_id, len(monday))
        assert run_cli("sink", "--until-caught-up", env=env).returncode == 0
        none_final = run_cli("reconcile", env=env)
        assert none_final.returncode == 1
        error = none_final.stderr.strip()
        assert error.count("\n") == 0, error
        opened = re.fullmatch(
            r"error: none of the (\d+) day windows in the kpis topic is final.*", error
        )
        assert opened is not None, error
        # Tuesday's events close Monday, and leave Tuesday open.
        send(settings, tuesday)
        caught_up(running, settings, app_id, len(monday) + len(tuesday))
    assert run_cli("sink", "--until-caught-up", env=env).returncode == 0
    reconciled = run_cli("reconcile", env=env)
    assert reconciled.returncode == 0, reconciled.stderr
    compared, different, not_final = reconcile_summary(reconciled.stdout)
    # Monday's windows, for the channel and its kind, are the ones compared now.
    assert different == 0 and compared == int(opened[1]) > 0 and not_final > 0


def test_a_warehouse_in_use_is_one_clear_error(settings: Settings, cli_env: dict[str, str]) -> None:
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.warehouse_path))  # another process holds the write lock
    try:
        locked = run_cli("sink", "--until-caught-up", env=cli_env)
    finally:
        con.close()
    assert locked.returncode == 1
    assert locked.stderr.strip().count("\n") == 0, locked.stderr
    assert "cannot open the warehouse" in locked.stderr


def test_a_sink_under_another_configuration_refuses_until_told_to_rebuild(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The warehouse issue's trap: a sink run without the catalog the warehouse was built
    with used to turn every business-time figure into the defaults' silently."""
    catalog = tmp_path / "channels.toml"
    catalog.write_text(CALENDAR)
    with_catalog = cli_env | {"COMMPULSE_METRICS__CATALOG": str(catalog)}
    send(settings, calendar_scenario())
    first = run_cli("sink", "--until-caught-up", env=with_catalog)
    assert first.returncode == 0, first.stderr
    path = settings.warehouse_path
    holiday = "SELECT holiday FROM core.calendar WHERE day = DATE '2025-11-20'"
    assert query(path, holiday) == [(True,)]
    stored = query(path, "SELECT count(*) FROM raw.events")

    send(settings, ticket_scenario())  # new events: the refusal must not load them
    refused = run_cli("sink", "--until-caught-up", env=cli_env)
    assert refused.returncode == 1
    line = refused.stderr.strip()
    assert "\n" not in line, refused.stderr
    assert line.startswith("error: the warehouse was built with another configuration: ")
    assert f"the channel catalog ({catalog} -> defaults, content differs) changed" in line
    assert "--reconfigure" in line
    assert query(path, "SELECT count(*) FROM raw.events") == stored
    assert query(path, holiday) == [(True,)]

    rebuilt = run_cli("sink", "--until-caught-up", "--reconfigure", env=cli_env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "built core and metrics in full" in rebuilt.stderr
    assert query(path, holiday) == [(False,)]
    assert query(path, "SELECT count(*) FROM raw.events") == [
        (stored[0][0] + len(ticket_scenario()),)
    ]
    again = run_cli("sink", "--until-caught-up", env=cli_env)  # the defaults are its own now
    assert again.returncode == 0, again.stderr


def test_a_caught_up_sink_builds_inside_each_batch(settings: Settings) -> None:
    """Live, each batch's rows, offsets and facts commit together: once a batch is in, its
    requests and KPIs are too, with no build pass after it."""
    from commpulse.warehousing import sink

    stop = threading.Event()
    progress: list[SinkProgress] = []
    runner = threading.Thread(
        target=sink,
        kwargs={
            "settings": settings,
            "until_caught_up": False,
            "stop": stop,
            "on_progress": lambda p: progress.append(SinkProgress(**vars(p))),
        },
    )
    runner.start()
    try:
        assert wait_for(lambda: bool(progress), 30), "the sink did not start"
        send(settings, ticket_scenario())
        assert wait_for(lambda: any(p.stored and p.derived for p in progress), 60)
    finally:
        stop.set()
        runner.join(60)
    assert not runner.is_alive()
    path = settings.warehouse_path
    assert query(path, "SELECT count(*) FROM core.requests WHERE channel_id = 'tk'") == [(7,)]
    # The build that made them covers the batch that brought them: one transaction.
    assert query(
        path,
        "SELECT b.loaded_through = (SELECT max(loaded_at) FROM ops.loads WHERE stored > 0), b.mode "
        "FROM ops.builds b WHERE b.loaded_through IS NOT NULL ORDER BY b.built_at LIMIT 1",
    ) == [(True, "full")]
