"""The stream worker as a real process on the real broker: exact KPIs, restarts, two workers."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaProducer

from commpulse.settings import Settings
from streams.envelopes import KINDS
from streams.keyed import default_partitions
from tests.integration.stream_support import (
    caught_up,
    differences,
    finals,
    kpi_records,
    send,
    wait_finals,
    worker,
)
from tests.integration.support import consume_all, run_cli, wait_for
from tests.scenarios import CALENDAR, MONDAY, calendar_scenario, canonical, ticket_scenario


def source_partition(channel: str, partitions: int) -> int:
    """The events topic's partition of ``channel``'s events (Kafka's default partitioner)."""
    return default_partitions([channel.encode()], partitions)[0]


def stack(cli_env: dict[str, str]) -> tuple[dict[str, str], str]:
    """Its own app id and stream topics, so that runs do not share state."""
    name = f"s{uuid.uuid4().hex[:8]}"
    env = cli_env | {
        "COMMPULSE_TOPICS__PACKED": f"{name}.packed",
        "COMMPULSE_TOPICS__KPIS": f"{name}.kpis",
        "COMMPULSE_TOPICS__ALERTS": f"{name}.alerts",
    }
    return env, name


def test_hand_computed_kpis_arrive_final_in_the_kpis_topic(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    events = ticket_scenario()
    send(settings, events)
    env, app_id = stack(cli_env)
    with worker(env, app_id=app_id) as running:
        caught_up(running, settings, app_id, len(events))
        current = httpx.get(f"{running.url}/kpis", params={"channel": "tk"}, timeout=5).json()
        metrics = httpx.get(f"{running.url}/metrics", timeout=5).text
    values = finals(kpi_records(settings, f"{app_id}.kpis"))
    monday = f"{MONDAY}T00:00:00+00:00"
    assert values[("tk", "first_response_sla_rate", "day", monday)] == (4 / 6, 4.0, 6.0)
    assert values[("tk", "first_response_median_s", "day", monday)] == (1800.0, None, 5.0)
    assert values[("tk", "first_response_p90_s", "day", monday)][0] == pytest.approx(9360.0)
    assert values[("tk", "first_response_p90_business_s", "day", monday)][0] == pytest.approx(
        7200.0
    )
    assert values[("tk", "fcr_rate", "day", monday)] == (0.5, 2.0, 4.0)
    assert values[("tk", "volume", "day", monday)] == (20.0, 20.0, None)
    assert values[("ticket (external)", "first_response_sla_rate", "day", monday)] == (
        4 / 6,
        4.0,
        6.0,
    )
    # The worker serves its latest values as JSON and to Prometheus.
    latest_day = {row["kpi"]: row for row in current if row["granularity"] == "day"}
    assert latest_day["volume"]["value"] == 1.0  # 2025-12-31, one event
    assert (
        'commpulse_kpi_value{channel_id="tk",channel_kind="ticket",granularity="day",kpi="volume",scope="external"} 1.0'
        in metrics
    )

    # commpulse kpis reads the same values from the topic, without the worker; in a pipe
    # (no COLUMNS) nothing is cut, and csv and json give every field unformatted.
    topic = {"COMMPULSE_TOPICS__KPIS": f"{app_id}.kpis"}
    shown = run_cli("kpis", "--channel", "tk", env=env | topic)
    assert shown.returncode == 0, shown.stderr
    [p90] = [line for line in shown.stdout.splitlines() if "first_response_p90_business_s" in line]
    assert p90.split()[:3] == ["tk", "first_response_p90_business_s", monday[:10]]
    as_json = run_cli("kpis", "--channel", "tk", "--format", "json", env=env | topic)
    assert as_json.returncode == 0, as_json.stderr
    rows = {row["kpi"]: row for row in json.loads(as_json.stdout)}
    assert rows["volume"] | {"emitted_at": None} == {
        "subject": "tk", "channel_id": "tk", "channel_kind": "ticket", "scope": "external",
        "kpi": "volume", "granularity": "day", "window_start": "2025-12-31T00:00:00+00:00",
        "window_end": "2026-01-01T00:00:00+00:00", "value": 1.0, "numerator": 1.0,
        "denominator": None, "final": False, "emitted_at": None,
    }  # fmt: skip
    assert rows["fcr_rate"]["window_start"] == monday and rows["fcr_rate"]["value"] == 0.5
    as_csv = run_cli("kpis", "--channel", "tk", "--format", "csv", env=env | topic)
    assert as_csv.returncode == 0, as_csv.stderr
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(table) == len(rows)
    [fcr] = [row for row in table if row["kpi"] == "fcr_rate"]
    assert (fcr["value"], fcr["numerator"], fcr["denominator"], fcr["final"]) == (
        "0.5", "2.0", "4.0", "true",
    )  # fmt: skip


def test_late_events_a_holiday_and_a_make_up_day_arrive_exactly_in_the_kpis_topic(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    catalog = tmp_path / "channels.toml"
    catalog.write_text(CALENDAR)
    events = calendar_scenario()
    send(settings, events)
    env, app_id = stack(cli_env)
    with worker(env, app_id=app_id, metrics__catalog=str(catalog), stream__grace_s="600") as w:
        health = caught_up(w, settings, app_id, len(events))
    values = finals(kpi_records(settings, f"{app_id}.kpis"))

    def final(subject: str, kpi: str, granularity: str, start: str) -> tuple[Any, ...]:
        return values[(subject, kpi, granularity, f"{start}+00:00")]

    # 3 working days = 24 business hours from Wed 17:00: Wed 1 h, Thu holiday, Fri 8 h, Sat
    # (make-up) 8 h, Mon 7 h -> deadline Mon 17:00: s1 (Mon 16:00) met, s2 (Tue) breached.
    assert final("box", "first_response_sla_rate", "day", "2025-11-19T00:00:00") == (0.5, 1, 2)
    # s1 23 business hours (82,800 s), s2 25.5 (91,800 s): the median is between.
    assert final("box", "first_response_median_business_s", "day", "2025-11-19T00:00:00")[0] == (
        87300
    )
    # 10:25 arrived 5 minutes after 10:30 (inside the grace), 10:10 twenty minutes (beyond).
    assert final("soc", "volume", "hour", "2025-11-17T10:00:00") == (3, 3, None)
    assert health["late_dropped"] == 1
    # m1: e2 and e3 read it within 7 days (not the sender e1, not e4 after 7 days): 2 of 4;
    # m2 bounced; m3 read by 1 of 2 (the read arrived before the send).
    assert final("mail", "read_rate", "day", "2025-11-17T00:00:00") == (0.5, 3, 6)
    assert final("mail", "read_rate", "hour", "2025-11-17T10:00:00") == (0.5, 2, 4)
    assert final("im-1", "active_users_1d", "day", "2025-11-18T00:00:00")[0] == 1  # u2
    assert final("im-1", "active_users_7d", "day", "2025-11-18T00:00:00")[0] == 2  # u1, u2
    assert final("im-2", "active_users_1d", "day", "2025-11-18T00:00:00")[0] == 1  # not the bot
    assert final("im (internal)", "active_users_1d", "day", "2025-11-18T00:00:00")[0] == 2
    assert final("im (internal)", "active_users_28d", "day", "2025-11-18T00:00:00")[0] == 3
    # One of the two planned meetings ran over; the third had no plan.
    assert final("mtg", "meeting_overrun_rate", "day", "2025-11-17T00:00:00") == (0.5, 1, 2)
    assert final("tk2", "csat_mean", "day", "2025-11-17T00:00:00") == (11 / 3, 11, 3)
    assert final("tk2", "csat_mean", "hour", "2025-11-17T10:00:00") == (4.5, 9, 2)


def test_stopping_and_restarting_mid_stream_gives_the_same_final_kpis(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    events = ticket_scenario()
    first, second = events[:11], events[11:]
    send(settings, first)

    env, app_id = stack(cli_env)
    with worker(env, app_id=app_id) as running:
        caught_up(running, settings, app_id, len(first))
    send(settings, second)

    env2, app_id2 = stack(cli_env)
    with worker(env2, app_id=app_id2) as running:
        caught_up(running, settings, app_id2, len(events))
    uninterrupted = finals(kpi_records(settings, f"{app_id2}.kpis"))
    assert len(uninterrupted) > 40

    with worker(env, app_id=app_id):  # the first app again: it restores its state and goes on
        interrupted = wait_finals(settings, f"{app_id}.kpis", uninterrupted)
    assert interrupted == uninterrupted


def test_two_workers_give_the_same_final_kpis_as_one(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    kinds = list(KINDS)  # one packed partition per kind: every worker gets some work
    start = datetime(2025, 11, 17, 9, tzinfo=UTC)
    events = [
        canonical(
            (start + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M"),  # in time order: live
            "message_sent",
            f"{kinds[n % len(kinds)]}-{n % 4}",
            kinds[n % len(kinds)],
            message_id=f"m{n}",
            recipient_count=3,
            actor=f"u{n % 11}",
            role="employee",
        )
        for n in range(360)
    ]
    events += [
        canonical("2025-12-31 09:00", "channel_created", f"{kind}-{n}", kind)
        for kind in kinds
        for n in range(4)
    ]

    env2, app_id2 = stack(cli_env)
    with worker(env2, app_id=app_id2) as a, worker(env2, app_id=app_id2) as b:
        # Both have joined and split the partitions before the first event arrives.
        # (a rebalance on the embedded broker can stall for a session timeout; allow several)
        assert wait_for(lambda: a.health()["assigned"] and b.health()["assigned"], timeout=150)
        shares = (a.health()["assigned"], b.health()["assigned"])
        send(settings, events)

        env, app_id = stack(cli_env)
        with worker(env, app_id=app_id) as one:
            assert caught_up(one, settings, app_id, len(events))["late_dropped"] == 0
        single = finals(kpi_records(settings, f"{app_id}.kpis"))
        assert len(single) > 100

        double = wait_finals(settings, f"{app_id2}.kpis", single)
        health = (a.health(), b.health())
        worked = (health[0]["events"], health[1]["events"])
    assert double == single, (
        f"{differences(double, single)}\nworkers: {health}\n--- a: {a.log}\n--- b: {b.log}"
    )
    assert sorted(shares[0] + shares[1]) == list(range(12))
    assert all(worked), f"both workers applied events: {worked}"
    assert health[0]["late_dropped"] == health[1]["late_dropped"] == 0


def test_unusable_records_are_dead_lettered_and_a_failing_batch_stops_the_worker(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    """A record the packer cannot decode, and one on the packed topic that is neither an
    envelope nor a tick, go to the dead-letter topic with the reason, and the worker goes on.
    A batch that fails anyway stops the worker with an error: faust would restart the agent
    after the batch, and the worker would go on, silently, with part of it applied."""
    events = ticket_scenario()
    send(settings, events)
    bootstrap = settings.kafka.bootstrap_servers
    raw = KafkaProducer(bootstrap_servers=bootstrap)
    bad_event = raw.send(settings.topics.events, b"{not json", key=b"tk").get(timeout=10)
    env, app_id = stack(cli_env)
    with worker(env, app_id=app_id) as running:
        caught_up(running, settings, app_id, len(events))
        bad_packed = raw.send(f"{app_id}.packed", b'{"v": 1, "src": 0}', partition=3).get(10)
        assert wait_for(lambda: len(consume_all(bootstrap, settings.topics.dlq)) >= 2, 30)
        health = running.health()
        # An envelope of the right shape whose event breaks the engine (a list as channel id).
        poison = {"_o": 0, "_t": 0.0, "event_type": "message_sent", "channel_id": ["x"],
                  "channel_kind": "ticket", "scope": "external", "actor_id": "a", "actor_role": "agent"}  # fmt: skip
        raw.send(
            f"{app_id}.packed", orjson.dumps({"v": 1, "src": 0, "events": [poison]}), partition=3
        )
        raw.flush()
        assert wait_for(lambda: running.process.poll() is not None, timeout=30), running.tail()
    raw.close()
    assert health["events"] == len(events) and health["dead_lettered"] == 1
    letters = {
        dict(r.headers)["commpulse.source"].decode(): dict(r.headers)["commpulse.reason"].decode()
        for r in consume_all(bootstrap, settings.topics.dlq)
    }
    where = f"{settings.topics.events}[{bad_event.partition}]@{bad_event.offset}"
    assert letters[f"packer:{where}"].startswith(f"unusable record on {where}: not JSON")
    packed_where = f"{app_id}.packed[3]@{bad_packed.offset}"
    assert letters[f"stream:{packed_where}"] == (
        f"unusable record on {packed_where}: an envelope needs an int 'src' and a list of 'events'"
    )
    assert running.process.returncode == 1
    log = running.tail(400)
    assert "the stream worker stops: a batch failed: TypeError" in log
    assert log.rstrip().endswith(
        "error: the stream worker stopped: a batch failed: TypeError(\"unhashable type: 'list'\") "
        "(the log above has the traceback); start it again to go on from its state in Kafka"
    ), log[-500:]


def test_a_quiet_kind_on_a_busy_partition_still_lets_the_kinds_windows_turn_final(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    """A source partition busy with one kind is never read to its very end at a tick: new
    events land between reading and asking for the end offsets. Its quiet group of another
    kind must still move up with the kind, or that kind's windows (and the channel's own
    last ones) never turn final and their days never expire."""
    env, app_id = stack(cli_env)
    source = partial(source_partition, partitions=settings.topics.events_partitions)
    busy_email = f"mail-{app_id}"
    quiet_forum = next(
        c for i in range(1000) if source(c := f"forum-{app_id}-{i}") == source(busy_email)
    )
    other_forum = next(
        c for i in range(1000) if source(c := f"forum2-{app_id}-{i}") != source(busy_email)
    )
    now = datetime.now(UTC).replace(microsecond=0)
    long_ago = now - timedelta(hours=3)

    def at(moment: datetime, event: str, channel: str, kind: str, message: str) -> dict[str, Any]:
        when = moment.strftime("%Y-%m-%d %H:%M:%S")
        return canonical(when, event, channel, kind, message_id=message)

    stop = threading.Event()

    async def feed() -> None:
        """Current email on the busy partition, 5,000 events a second, each sent on its own:
        reads of one message, so that the state stays small."""
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=0)
        await producer.start()
        try:
            began, sent = time.monotonic(), 0
            while not stop.is_set():
                event = at(datetime.now(UTC), "message_read", busy_email, "email", "m-busy")
                await producer.send(
                    settings.topics.events, orjson.dumps(event), key=busy_email.encode()
                )
                sent += 1
                await asyncio.sleep(max(0.0, began + sent / 5000 - time.monotonic()))
        finally:
            await producer.stop()

    with worker(env, app_id=app_id, stream__grace_s="60") as running:
        feeding = threading.Thread(target=asyncio.run, args=(feed(),))
        feeding.start()
        try:
            assert wait_for(lambda: running.health()["events"] > 20_000, timeout=60)
            send(
                settings,
                [
                    at(long_ago, "message_sent", quiet_forum, "forum", "m-quiet"),
                    at(now, "message_sent", other_forum, "forum", "m-other"),
                ],
            )

            def hour_finals() -> dict[str | None, tuple[float | None, ...]]:
                return {
                    r.channel_id: (r.value, r.numerator, r.denominator)
                    for r in kpi_records(settings, f"{app_id}.kpis")
                    if r.final
                    and r.kpi == "volume"
                    and r.channel_kind == "forum"
                    and r.granularity == "hour"
                    and r.window_start <= long_ago < r.window_end
                }

            assert wait_for(lambda: len(hour_finals()) == 2, timeout=30), running.health()
            assert running.health()["late_dropped"] == 0
        finally:
            stop.set()
            feeding.join()
    # The forum channel's hour three hours ago, and its kind's, with its one message.
    assert hour_finals() == {quiet_forum: (1.0, 1.0, None), None: (1.0, 1.0, None)}


def test_a_busy_channels_day_bigger_than_a_record_is_kept_in_chunks_across_a_restart(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    """3,000 messages of one channel on one day: about 250 KB of state for that day, in
    chunks of 16 KiB here (512 KiB by default). Before chunks, a day past the producer's
    limit stopped the worker for good (it failed again on the same batch after a restart)."""
    start = datetime(2025, 11, 17, 9, tzinfo=UTC)

    def message(n: int) -> dict[str, Any]:
        when = (start + timedelta(seconds=5 * n)).strftime("%Y-%m-%d %H:%M:%S")
        return canonical(when, "message_sent", "busy-im", "im", scope="internal",
                         role="employee", actor=f"p{n % 400}", message_id=f"m{n}")  # fmt: skip

    first = [message(n) for n in range(2000)]
    send(settings, first)
    env, app_id = stack(cli_env)
    limit = {"stream__max_record_bytes": "16384"}
    with worker(env, app_id=app_id, **limit) as running:
        caught_up(running, settings, app_id, len(first))
    changelog = consume_all(settings.kafka.bootstrap_servers, f"{app_id}-state-changelog")
    assert max(len(record.value or b"") for record in changelog) <= 16384
    assert sum(b"/c/" in (record.key or b"") for record in changelog) >= 10

    # The second half of the day, and a message two days later that closes it.
    later = canonical("2025-11-19 12:00", "message_sent", "busy-im", "im", scope="internal",
                      role="employee", message_id="last")  # fmt: skip
    second = [message(n) for n in range(2000, 3000)] + [later]
    send(settings, second)
    with worker(env, app_id=app_id, **limit) as running:  # restores the day from its chunks
        caught_up(running, settings, app_id, len(second))
        restored = [line for line in running.log.read_text().splitlines() if "restored" in line]
    values = finals(kpi_records(settings, f"{app_id}.kpis"))
    day = "2025-11-17T00:00:00+00:00"
    assert values[("busy-im", "volume", "day", day)] == (3000.0, 3000.0, None)
    assert values[("im (internal)", "volume", "day", day)] == (3000.0, 3000.0, None)
    assert values[("busy-im", "active_users_1d", "day", day)] == (400.0, 400.0, None)
    assert restored, "the second worker restored nothing"


def test_an_event_stamped_hours_ahead_does_not_make_the_rest_of_its_partition_late(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    """Ingest accepts events up to a day ahead (clock skew). One stamped 8 hours ahead (local
    time sent as UTC, in China) must not push its partition's watermark past the worker's
    clock: before, every other channel of the kind there was dropped as late."""
    env, app_id = stack(cli_env)
    source = partial(source_partition, partitions=settings.topics.events_partitions)
    skewed = f"skewed-{app_id}"
    steady = next(c for i in range(1000) if source(c := f"im-{app_id}-{i}") == source(skewed))
    now = datetime.now(UTC).replace(microsecond=0)
    first = max(now - timedelta(seconds=19), now.replace(minute=0, second=0))  # within the hour

    def message(channel: str, at: datetime, n: int) -> dict[str, Any]:
        return canonical(at.strftime("%Y-%m-%d %H:%M:%S"), "message_sent", channel, "im",
                         scope="internal", role="employee", message_id=f"{channel}-{n}")  # fmt: skip

    with worker(env, app_id=app_id) as running:
        send(settings, [message(skewed, now + timedelta(hours=8), 0)])
        assert wait_for(lambda: running.health()["events"] == 1, timeout=30)
        send(settings, [message(steady, first + timedelta(seconds=n), n) for n in range(20)])
        assert wait_for(lambda: running.health()["events"] == 21, timeout=30)

        def hourly_volume() -> list[float]:
            rows = httpx.get(f"{running.url}/kpis", params={"channel": steady}, timeout=5).json()
            return [r["value"] for r in rows if r["kpi"] == "volume" and r["granularity"] == "hour"]

        assert wait_for(lambda: hourly_volume() == [20.0], timeout=30), hourly_volume()
        health = running.health()
        metrics = httpx.get(f"{running.url}/metrics", timeout=5).text
    assert (health["late_dropped"], health["ahead_of_clock"]) == (0, 1)
    assert "commpulse_stream_ahead_of_clock_total 1.0" in metrics.splitlines()
