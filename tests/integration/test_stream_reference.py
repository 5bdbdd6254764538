"""Acceptance: 200,000 simulated events flow, with invalid inputs among them, while
workers and the sink are killed and the broker is restarted; the stream's final windows
equal a plain polars recomputation of docs/kpis.md (tests/integration/kpi_reference.py),
the killed app's equal the uninterrupted app's, the warehouse holds every valid event
exactly once, and the dead-letter topic exactly the invalid inputs.

A fifth of 14 days of simulated events is in the events topic first. Then a
``commpulse stream`` app on its own stack (app id, packed, kpis and alerts topics)
and a running ``commpulse sink`` start, and the rest of the events, with 360 invalid
JSON lines of 12 classes spread among them, is sent in chunks through one producer
while the app's worker and the sink are killed with SIGKILL 5 times each and started
again, and, after the second round, the broker is stopped gracefully and started again
(tests/integration/faults.py; the random seed and a timeline are printed). The flow
keeps in step with the faults (tests/integration/flow.py): every kill and the restart
come after some of its inputs and before the rest, with more sent since the fault
before, whatever the speed of the machine (asserted from the timeline). Then a second
app, never interrupted, reads the same events topic from the start.

Once the uninterrupted worker has caught up, every window it has made final must
equal the reference, and it must have made final the large majority of the windows
whose end + settle time + grace lies before the last event. Then one
``channel_created`` per channel, 14 days after the history, pushes every group's
watermark past every window of the history: again every final window must equal the
reference, and now every window of the history must be final. The killed app must
end with exactly the same final windows; a last sink run loads the rest, and the
warehouse must hold each valid event once, each read once (no duplicates, none
skipped); the dead-letter topic must hold each invalid input once, byte for byte, with
its class and reason.

Channel windows and kind windows are checked apart (a kind window waits for the kind in
every source partition, and the worker reads them unevenly while catching up).

The reference is computed from the valid simulated events as generated (raw actor ids),
not read back from the events topic: pseudonymisation maps equal ids to equal pseudonyms
and different ids to different ones, so every count is the same, and the comparison
covers validation, pseudonymisation, the producer and the packer too. Every valid event
is accepted, every invalid input dead-lettered, and none is late (all asserted), so the
stream saw exactly these events.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl
import pytest
from kafka import KafkaConsumer, TopicPartition

from commpulse.settings import (
    KafkaSettings,
    PrivacySettings,
    Settings,
    TopicSettings,
    load_settings,
)
from infra import FETCH_RESPONSE_MAX_BYTES, EmbeddedBroker, ensure_topics
from ingest.simulator import SimulationConfig, simulate
from streams.records import KpiRecord
from tests.integration.faults import KILLS, kills_while_sending, sink_env, warehouse_counts
from tests.integration.flow import FaultLog, Inputs, Letter, dead_letters
from tests.integration.invalid_inputs import invalid_lines
from tests.integration.kpi_reference import Key, Value, reference_frame
from tests.integration.reference_checks import (
    channels,
    compare,
    count_kpis,
    keys,
    kinds,
    reference_values,
    settled_by_kinds,
)
from tests.integration.stream_support import caught_up, differences, finals, send, worker
from tests.integration.support import PSEUDONYM_KEY, cli_env_for, reconcile_summary, run_cli
from tests.integration.test_stream import stack
from tests.scenarios import canonical

EVENTS: Final = 200_000
END: Final = datetime(2026, 11, 1, tzinfo=UTC)
CONFIG: Final = SimulationConfig(events=EVENTS, days=14, seed=7, end=END)
#: 14 days after the history every window of it has settled (the slowest, a day's SLA
#: rate, needs 7 days + 3 business days + grace); still in the past, so ingest accepts it.
PUSH: Final = END + timedelta(days=14)
GRACE_S: Final = 600.0
CHUNK: Final = 25_000
#: what is in the events topic before anything runs; the rest flows while workers are killed
HISTORY: Final = EVENTS // 5
#: invalid JSON lines spread among the rest, 30 of each of 12 classes
INVALID: Final = 360
#: the rest is sent in chunks of this many inputs, with a pause between
FLOW_CHUNK: Final = 2_000
FLOW_PAUSE_S: Final = 0.4
#: the broker is stopped and started again after this many of the 5 kill rounds
BROKER_RESTART_AFTER: Final = 2

# -- one run of the stack -------------------------------------------------------------------


@dataclass
class Phase:
    """What the stream had made final at one point, and the reference for the events so far."""

    finals: dict[Key, Value]
    reference: pl.DataFrame
    #: the latest event time of the events so far
    last_event: float
    health: dict[str, Any]

    @property
    def values(self) -> dict[Key, Value]:
        return reference_values(self.reference)

    def settled(self) -> set[Key]:
        """Reference windows whose final time (end + settle + grace) is before the last event."""
        return keys(self.reference.filter(pl.col("final_at") < self.last_event))


@dataclass
class Run:
    events: list[dict[str, Any]]
    catching_up: Phase
    pushed: Phase
    #: windows sent final twice, with different values: (first, second)
    changed: dict[Key, tuple[Value, Value]]
    partitions: int
    seconds: dict[str, float]
    warehouse: Path
    sink: subprocess.CompletedProcess[str]
    reconcile: subprocess.CompletedProcess[str]
    #: the final windows of the app whose worker was killed, after the push
    killed: dict[Key, Value]
    #: the killed app's worker at the end: its health, and the end of its log
    killed_health: dict[str, Any]
    killed_tail: str
    #: the kills and the broker restart, with how many inputs had been handed over at each
    faults: FaultLog
    #: the dead-letter topic's records, and the invalid inputs sent (class, raw, reason)
    dead_letters: Counter[Letter]
    invalid: Counter[Letter]


@pytest.fixture(scope="module")
def stack_settings(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str]]]:
    """As the ``settings`` and ``cli_env`` fixtures, once for the module."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("COMMPULSE_"):
                patch.delenv(name)
        prefix = f"t{uuid.uuid4().hex[:10]}"
        topics = TopicSettings().prefixed(prefix)
        ensure_topics(broker.bootstrap_servers, topics.specs())
        settings = load_settings(
            data_dir=tmp_path_factory.mktemp("reference") / "data",
            kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
            topics=topics,
            privacy=PrivacySettings(pseudonym_key=PSEUDONYM_KEY),
        )
        yield settings, cli_env_for(settings)


@pytest.fixture(scope="module")
def run(broker: EmbeddedBroker, stack_settings: tuple[Settings, dict[str, str]]) -> Run:
    settings, cli_env = stack_settings
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        seconds[name] = now - clock
        clock = now

    events = list(simulate(CONFIG))
    push = _push_events(events)
    inputs = Inputs.mixed(events[HISTORY:], invalid_lines(INVALID))
    lap("simulate")
    # In time order, and each channel's events stay in order in its partition: none is late.
    for at in range(0, HISTORY, CHUNK):
        send(settings, events[at : min(at + CHUNK, HISTORY)])
    lap("send the history")
    env, app_id = stack(cli_env)
    killed_env, killed_app = stack(cli_env)
    kpis_topic = f"{app_id}.kpis"
    with kills_while_sending(
        settings,
        inputs,
        worker_env=killed_env,
        app_id=killed_app,
        sink=sink_env(env),
        chunk=FLOW_CHUNK,
        pause=FLOW_PAUSE_S,
        broker=broker,
        broker_after=BROKER_RESTART_AFTER,
    ) as killed:
        lap("send the rest while killing")
        # The uninterrupted app starts once the whole history is in the log, and catches up.
        with worker(env, app_id=app_id) as running:
            health = caught_up(running, settings, app_id, len(events), timeout=300)
            lap("catch up")
            first, stopped = read_finals(settings, kpis_topic)
            lap("read finals")
            send(settings, push)
            pushed_health = caught_up(running, settings, app_id, len(events) + len(push), 300)
            lap("push")
        lap("stop the worker")
        later, _ = read_finals(settings, kpis_topic, since=stopped)
        second = first | later
        changed = {
            key: (first[key], value)
            for key, value in later.items()
            if first.get(key, value) != value
        }
        lap("read finals again")
        # The killed app's worker has had as long; once it has committed the end of its
        # packed topic, every final window it will send is in its kpis topic.
        try:
            killed_health = caught_up(killed.worker, settings, killed_app, 0, timeout=120)
        except AssertionError as exc:  # the test of the killed app says so, with its log
            killed_health = {"not caught up": str(exc)}
        killed_finals = _finals_when(settings, f"{killed_app}.kpis", second, timeout=30)
        killed_tail = killed.worker.tail(80)
        lap("the killed app's finals")
    print(f"timeline of the faults:\n{killed.log}")
    letters = dead_letters(settings)
    lap("read the dead letters")
    # The warehouse loads the rest of the log; reconcile compares it with the final day windows.
    sunk = run_cli("sink", "--until-caught-up", env=env, timeout=900)
    lap("sink")
    reconciled = run_cli("reconcile", env=env, timeout=300)
    lap("reconcile")
    catching_up = Phase(
        first,
        reference_frame(events, grace_s=GRACE_S),
        max(e["occurred_at"] for e in events).timestamp(),
        health,
    )
    pushed = Phase(
        second, reference_frame(events + push, grace_s=GRACE_S), PUSH.timestamp(), pushed_health
    )
    lap("references")
    return Run(
        events,
        catching_up,
        pushed,
        changed,
        settings.topics.events_partitions,
        seconds,
        settings.warehouse_path,
        sunk,
        reconciled,
        killed_finals,
        killed_health,
        killed_tail,
        killed.log,
        letters,
        inputs.dead_letters(),
    )


def _push_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``channel_created`` per channel at ``PUSH``: every group's watermark moves there."""
    found = sorted({(e["channel_id"], e["channel_kind"], e["scope"]) for e in events})
    when = PUSH.strftime("%Y-%m-%d %H:%M")
    return [
        canonical(when, "channel_created", channel, kind, scope=scope, actor="clock", role="system")
        for channel, kind, scope in found
    ]


def read_finals(
    settings: Settings, topic: str, since: Mapping[int, int] | None = None, timeout: float = 180.0
) -> tuple[dict[Key, Value], dict[int, int]]:
    """The final values in ``topic`` (from offsets ``since``), and where the reading stopped.

    One partition at a time, and only final records are decoded: the embedded broker may
    answer one fetch with all of a topic's data whatever ``fetch_max_bytes`` says (seen: a
    105 MB answer to ``consume_all``, over kafka-python's 100 MB frame limit).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        fetch_max_bytes=8 * 1024 * 1024,
        receive_message_max_bytes=FETCH_RESPONSE_MAX_BYTES,
    )
    records: list[KpiRecord] = []
    stopped: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        for partition in sorted(consumer.partitions_for_topic(topic) or ()):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, (since or {}).get(partition, 0))
            end = stopped[partition] = consumer.end_offsets([tp])[tp]
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"read {len(records)} finals of {topic} in {timeout} s")
                for batch in consumer.poll(timeout_ms=500).values():
                    records += [
                        KpiRecord.decode(r.value)
                        for r in batch
                        if r.offset < end and b'"final":true' in r.value
                    ]
    finally:
        consumer.close()
    return finals(records), stopped


def _finals_when(
    settings: Settings, topic: str, expected: Mapping[Key, Value], timeout: float
) -> dict[Key, Value]:
    """The final values in ``topic`` once they are ``expected`` (or at the timeout), read on
    as they come; a final value sent again must be the same."""
    seen: dict[Key, Value] = {}
    since: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while True:
        more, since = read_finals(settings, topic, since=since)
        again = {
            key: (seen[key], value) for key, value in more.items() if seen.get(key, value) != value
        }
        assert not again, f"final windows sent again with other values: {list(again.items())[:5]}"
        seen |= more
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(2.0)


# -- the checks -------------------------------------------------------------------------------


def test_the_worker_caught_up_with_every_event_and_none_was_late(run: Run) -> None:
    assert run.catching_up.health["events"] == EVENTS
    assert run.catching_up.health["late_dropped"] == 0
    assert run.pushed.health["late_dropped"] == 0
    laps = ", ".join(f"{name} {s:.1f} s" for name, s in run.seconds.items())
    print(f"\n{laps}")


def test_channel_windows_equal_the_reference_while_catching_up(run: Run) -> None:
    phase = run.catching_up
    result = compare(channels(phase.finals), phase.values)
    print(f"\nchannel windows: {result.matched} of {result.compared} final windows equal")
    assert result.compared > 40_000
    assert not result.differences, result.show()


def test_kind_windows_equal_the_reference_while_catching_up(run: Run) -> None:
    phase = run.catching_up
    result = compare(kinds(phase.finals), phase.values)
    print(f"\nkind windows: {result.matched} of {result.compared} final windows equal")
    assert result.compared > 1_000
    assert not result.differences, result.show()


def test_every_window_settled_by_its_kind_is_final_while_catching_up(run: Run) -> None:
    phase = run.catching_up
    settled = phase.settled()
    by_kinds = settled_by_kinds(run.events, phase.reference)
    missing = settled - phase.finals.keys()
    print(
        f"\ncoverage: {len(settled) - len(missing)} of {len(settled)} windows settled by the "
        f"last event of the history are final ({1 - len(missing) / len(settled):.2%}); "
        f"{len(by_kinds)} are settled by their kind's last event. Missing by KPI "
        f"{count_kpis(missing)}"
    )
    # The worker has caught up: every group sits at its kind's latest event time.
    late = sorted(by_kinds - phase.finals.keys())
    assert not late, f"{len(late)} settled windows are not final: {late[:20]}"
    assert len(by_kinds) >= 0.95 * len(settled)
    # Nothing is final before its time either.
    early = sorted(phase.finals.keys() - by_kinds)
    assert not early, f"{len(early)} windows are final too early: {early[:20]}"


def test_after_the_push_every_channel_window_is_final_and_equal(run: Run) -> None:
    phase = run.pushed
    # Every window of the history settles before the push (the push's own windows do not).
    of_history = phase.reference.filter(pl.col("start") < END.timestamp())
    assert of_history["final_at"].max() < PUSH.timestamp()  # type: ignore[operator]
    result = compare(channels(phase.finals), phase.values)
    history = keys(phase.reference.filter(pl.col("final_at") < PUSH.timestamp()))
    missing = sorted(channels(dict.fromkeys(history - phase.finals.keys())))
    print(
        f"\nafter the push: {result.matched} of {result.compared} final channel windows equal; "
        f"{len(channels(dict.fromkeys(history))) - len(missing)} of "
        f"{len(channels(dict.fromkeys(history)))} channel windows of the history final; "
        f"kind windows of the history final: {len(kinds(dict.fromkeys(history)) & phase.finals.keys())}"
        f" of {len(kinds(dict.fromkeys(history)))}"
    )
    assert not result.differences, result.show()
    assert not missing, f"{len(missing)} channel windows are not final: {missing[:20]}"


def test_after_the_push_every_kind_window_is_final_and_equal(run: Run) -> None:
    phase = run.pushed
    result = compare(kinds(phase.finals), phase.values)
    history = keys(phase.reference.filter(pl.col("final_at") < PUSH.timestamp()))
    missing = sorted(kinds(dict.fromkeys(history - phase.finals.keys())))
    assert not result.differences, result.show()
    assert not missing, f"{len(missing)} kind windows are not final: {missing[:20]}"


def test_a_final_window_never_changes(run: Run) -> None:
    assert not run.changed, list(run.changed.items())[:20]


def test_every_kill_and_the_broker_restart_came_while_the_inputs_flowed(run: Run) -> None:
    """5 kills of the worker and 5 of the sink, and a graceful broker restart after the
    second round, each after some of the flow's inputs had been handed to the producer and
    before the rest, with more handed over since the fault before."""
    kills = ["kill -9 stream worker", "kill -9 sink"]
    expected = [
        *kills * BROKER_RESTART_AFTER,
        "broker stopped",
        *kills * (KILLS - BROKER_RESTART_AFTER),
    ]
    assert [fault.what.partition(" #")[0] for fault in run.faults.faults] == expected
    assert run.faults.not_while_sending() == [], run.faults
    assert run.faults.without_flow_before() == [], run.faults
    assert run.faults.total == EVENTS - HISTORY + INVALID


def test_the_killed_app_ends_with_the_final_windows_of_the_uninterrupted_one(run: Run) -> None:
    print(f"\nthe killed app: {len(run.killed)} final windows")
    assert len(run.pushed.finals) > 50_000
    if run.killed != run.pushed.finals:  # (pytest's own diff of 100,000 windows says little)
        missing = run.pushed.finals.keys() - run.killed.keys()
        pytest.fail(
            f"{differences(run.killed, run.pushed.finals)}\n"
            f"missing by KPI: {count_kpis(missing)}; kind windows: {len(kinds(dict.fromkeys(missing)))}\n"
            f"the killed app's worker: {run.killed_health}\n{run.faults}\n"
            f"the end of its log:\n{run.killed_tail}"
        )
    assert run.killed_health.get("late_dropped") == 0, run.killed_health  # replays are not late


def test_the_warehouse_holds_every_event_once(run: Run) -> None:
    """Across 6 kill -9s of the sink and a broker restart, each valid event was read once:
    no duplicates, none skipped, nothing invalid (the invalid inputs never reach the topic)."""
    assert run.sink.returncode == 0, run.sink.stderr
    sent = len(run.events) + len(_push_events(run.events))
    rows, loads, offsets = warehouse_counts(run.warehouse)
    assert rows == (sent, sent)
    assert loads == (sent, sent, 0, 0), "ops.loads (received, stored, duplicates, invalid)"
    assert offsets == (sent,)


def test_the_dead_letter_topic_holds_exactly_the_invalid_inputs_with_their_reasons(
    run: Run,
) -> None:
    """Each invalid input, sent among the events through the same producer, is in the
    dead-letter topic once, byte for byte, with its class and the reason ingest gives it."""
    assert sum(run.invalid.values()) == INVALID
    assert len({code for code, _, _ in run.invalid}) == 12
    assert run.dead_letters == run.invalid


def test_reconcile_finds_no_difference_on_the_final_day_windows(run: Run) -> None:
    print(run.reconcile.stdout[-3000:], run.seconds)
    assert run.reconcile.returncode == 0, run.reconcile.stdout[-3000:] + run.reconcile.stderr
    compared, different, not_final = reconcile_summary(run.reconcile.stdout)
    # The windows of the push's own day, at least, are not final yet.
    assert different == 0 and compared > 5_000 and not_final > 0, run.reconcile.stdout[-300:]
