"""The embedded broker: start, readiness, SIGTERM then SIGKILL, no orphans, sharing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from kafka import KafkaProducer

from infra import (
    BrokerError,
    EmbeddedBroker,
    TopicSpec,
    ensure_topics,
    lease_broker,
    record_counts,
    running_broker,
)
from infra.processes import pid_alive
from tests.integration.support import COMMPULSE, consume_all, wait_for


def produce(bootstrap: str, topic: str, count: int, size: int = 0) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024
    )
    for n in range(count):
        producer.send(topic, value=f"{n}".encode().ljust(size, b"."))
    producer.flush()
    producer.close()


def gone(*pids: int) -> bool:
    return not any(pid_alive(pid) for pid in pids)


def test_starts_on_a_free_loopback_port_and_stops_with_sigterm(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path)
    broker.start()
    pid = broker.pid
    assert pid is not None and broker.bootstrap_servers.startswith("127.0.0.1:")
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in listening.splitlines() if f"pid={pid}," in line]
    assert ours and all(" 127.0.0.1:" in line for line in ours)  # nothing beyond loopback
    assert broker.stop() == 0  # a clean exit on SIGTERM, not a kill
    assert gone(pid)


def test_a_broker_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path, stop_timeout=1.0)
    broker.start()
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    pid = broker.pid
    assert broker.stop() == -signal.SIGKILL
    assert gone(pid)


def test_a_broker_saving_its_data_is_not_killed_however_long_it_takes(tmp_path: Path) -> None:
    # noida-db rewrites its files when it stops; killed half-way through, it lost
    # records it had saved long before (466,000 of 820,000 with 1 GB, killed after 10 s).
    broker = EmbeddedBroker(tmp_path, stop_timeout=1.0).start()
    ensure_topics(broker.bootstrap_servers, [TopicSpec("big", 8, 1, {"retention.ms": "-1"})])
    produce(broker.bootstrap_servers, "big", 200_000, size=1000)  # 200 MB
    started = time.monotonic()
    assert broker.stop() == 0  # a clean exit, not a kill
    assert time.monotonic() - started > 2 * broker.stop_timeout  # or this proves nothing
    with EmbeddedBroker(tmp_path) as again:
        assert record_counts(again.bootstrap_servers, ["big"]) == {"big": 200_000}


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path) as first:
        ensure_topics(first.bootstrap_servers, [TopicSpec("kept", 3, 1, {"retention.ms": "-1"})])
        produce(first.bootstrap_servers, "kept", 250)
    with EmbeddedBroker(tmp_path) as second:
        assert len(consume_all(second.bootstrap_servers, "kept")) == 250


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerError, match="before it was ready|not ready"):
            EmbeddedBroker(tmp_path, port=port, ready_timeout=5).start()


def test_lease_starts_a_broker_and_the_last_user_stops_it(tmp_path: Path) -> None:
    with ExitStack() as first_user, ExitStack() as second_user:
        first = first_user.enter_context(lease_broker(tmp_path))
        second = second_user.enter_context(lease_broker(tmp_path))
        assert not first.reused and second.reused
        assert second.bootstrap_servers == first.bootstrap_servers
        first_user.close()  # the first user leaves; the second still needs the broker
        assert pid_alive(first.broker_pid)
        produce(second.bootstrap_servers, "still-up", 1)
    assert gone(first.broker_pid)  # stopped by the time the last user's `with` returns
    assert running_broker(tmp_path) is None
    assert wait_for(lambda: gone(first.keeper_pid), timeout=5)  # and its keeper exits


def test_no_broker_is_left_after_an_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), lease_broker(tmp_path) as lease:
        raise RuntimeError("boom")
    assert gone(lease.broker_pid, lease.keeper_pid)


def test_no_broker_is_left_when_its_user_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from infra import lease_broker
        with lease_broker(Path({str(tmp_path)!r})) as lease:
            print(lease.broker_pid, lease.keeper_pid, flush=True)
            time.sleep(600)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as user:
        assert user.stdout is not None
        broker_pid, keeper_pid = map(int, user.stdout.readline().split())
        user.kill()  # SIGKILL: no finally runs in the user
    assert wait_for(lambda: gone(broker_pid, keeper_pid), timeout=20)


def test_the_broker_dies_with_its_keeper(tmp_path: Path) -> None:
    with lease_broker(tmp_path) as lease:
        os.kill(lease.keeper_pid, signal.SIGKILL)
        assert wait_for(lambda: gone(lease.broker_pid), timeout=10)


def test_commpulse_broker_runs_until_ctrl_c_and_leaves_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMPULSE_")}
    with subprocess.Popen(
        [COMMPULSE, "--data-dir", str(tmp_path), "broker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "bootstrap servers 127.0.0.1:" in line, line
        assert "press Ctrl-C to stop" in process.stdout.readline()
        lease = running_broker(tmp_path / "broker")
        assert lease is not None
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "broker stopped" in out
    assert gone(lease.broker_pid, lease.keeper_pid)
