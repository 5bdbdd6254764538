"""Run the stream worker, and read its KPI records back."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

from kafka import KafkaAdminClient
from kafka.admin import MemberToRemove
from kafka.errors import KafkaError

from commpulse.kafka import KafkaTarget, connect, read_all
from commpulse.listening import listeners, require_free
from commpulse.settings import KafkaSettings, Settings
from infra import TopicSpec, ensure_topics
from infra.processes import exit_now, pid_alive
from ingest.errors import CommpulseError
from metrics.channels import ChannelCatalog
from metrics.windows import WindowClock
from streams.changelog import changelog_topic
from streams.engine import EngineConfig
from streams.records import KpiRecord

__all__ = [
    "STOP_TIMEOUT_S",
    "arm_stop_watchdog",
    "engine_config",
    "latest_kpis",
    "load_catalog",
    "run_worker",
    "stream_config",
]

log = logging.getLogger(__name__)

#: how long the worker may take to stop after SIGINT or SIGTERM before it stops hard
STOP_TIMEOUT_S = 30.0


def arm_stop_watchdog(
    timeout_s: float = STOP_TIMEOUT_S, on_timeout: Callable[[], None] | None = None
) -> threading.Timer:
    """End the process hard ``timeout_s`` from now, unless it has ended by then.

    faust's shutdown can wait forever on one of its services (seen twice in about
    twenty test runs, stopping a worker during its first batch after a rebalance).
    The state in Kafka after a hard stop is what a kill -9 leaves, which a restarted
    worker recovers from, so Ctrl-C always ends the worker.
    """
    timer = threading.Timer(timeout_s, on_timeout or partial(_stop_hard, timeout_s))
    timer.daemon = True
    timer.start()
    return timer


def _stop_hard(timeout_s: float) -> NoReturn:
    log.critical(
        "the stream worker did not stop within %g s of the signal: stopping hard", timeout_s
    )
    exit_now(
        f"the stream worker did not stop within {timeout_s:g} s of the signal and stopped "
        "hard; its state in Kafka is as after a kill -9, which the next start recovers from"
    )


def load_catalog(settings: Settings) -> ChannelCatalog:
    path = settings.metrics.catalog
    return ChannelCatalog.load(path) if path is not None else ChannelCatalog()


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        catalog=load_catalog(settings),
        clock=WindowClock(settings.metrics.timezone),
        grace_s=settings.stream.grace_s,
        sources=settings.topics.events_partitions,
        packed_partitions=settings.topics.packed_partitions,
        max_record_bytes=settings.stream.max_record_bytes,
    )


def _broker_credentials(kafka: KafkaSettings) -> Any:
    """faust's credentials object for SASL/TLS clusters, or None for plaintext."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    import faust

    options = kafka.aiokafka_options()
    context = options.get("ssl_context")
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def stream_config(settings: Settings, target: KafkaTarget, *, web_port: int | None = None) -> Any:
    """The :class:`streams.app.StreamConfig` for ``settings`` on ``target``."""
    from streams.app import StreamConfig  # faust loads only for the commands that need it

    topics, stream, alerts = settings.topics, settings.stream, settings.alerts
    port = stream.web_port if web_port is None else web_port
    embedded = target.embedded is not None
    return StreamConfig(
        app_id=stream.app_id,
        bootstrap_servers=target.bootstrap_servers,
        engine=engine_config(settings),
        events_topic=topics.events,
        packed_topic=topics.packed,
        packed_partitions=topics.packed_partitions,
        kpis_topic=topics.kpis,
        alerts_topic=topics.alerts,
        dlq_topic=topics.dlq,
        batch_envelopes=stream.batch_envelopes,
        batch_within_s=stream.batch_within_s,
        tick_interval_s=stream.tick_interval_s,
        backfill_age_s=stream.backfill_age_s,
        pack_linger_s=stream.pack_linger_s,
        max_record_bytes=stream.max_record_bytes,
        web_host=stream.web_host,
        web_port=port or None,
        client_options={} if embedded else settings.kafka.aiokafka_options(),
        broker_credentials=None if embedded else _broker_credentials(settings.kafka),
        alertmanager_url=alerts.alertmanager_url,
        webhook_url=alerts.webhook_url,
        webhook_token=alerts.webhook_token.get_secret_value() if alerts.webhook_token else None,
        alert_resend_s=alerts.resend_interval_s,
        session_timeout_s=stream.session_timeout_s,
        empty_fetch_pause_s=stream.empty_fetch_pause_s,
        datadir=settings.data_dir / "stream" / stream.app_id,
        client_id=f"{_member_prefix()}{os.getpid()}",
    )


def _member_prefix() -> str:
    """How the group member ids of this host's workers start: ``commpulse-<host>-``."""
    return "commpulse-" + re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) + "-"


def evict_dead_members(
    target: KafkaTarget, group: str, current: Callable[[], str | None] | None = None
) -> list[str]:
    """Remove the members of ``group`` that no worker on this host stands for any more.

    A worker that was killed (kill -9, a crash) leaves its member in the group, and so
    does a worker that rejoined under a new member id. A Kafka cluster removes such a
    member after the session timeout; the embedded broker never does, so the group waits
    for it for ever: a restarted worker never got partitions, and after one of several
    workers left, the others never finished the rebalance. Member ids carry the host and
    pid of their worker (``commpulse-<host>-<pid>-...``): a member whose pid no longer
    runs here leaves, and so does a member of this process other than the one
    ``current()`` names (its member id now, unchanged while the group was read), as the
    session timeout would have made them. Returns those removed.
    """
    prefix = _member_prefix()
    own = str(os.getpid())
    admin: KafkaAdminClient | None = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=target.bootstrap_servers, **target.client_options
        )
        before = current() if current else None
        members = [
            str(member["member_id"])
            for description in admin.describe_groups([group]).values()
            for member in description.get("members") or ()
        ]
        # Our own member id, if it stood still while the group was read (not while we rejoin).
        mine = before if before in members and current and current() == before else None
        dead = [
            member
            for member in members
            if member.startswith(prefix)
            and (pid := member[len(prefix) :].split("-", 1)[0]).isdigit()
            and (
                (pid == own and mine is not None and member != mine)
                or (pid != own and not pid_alive(int(pid)))
            )
        ]
        if dead:
            admin.remove_group_members(group, [MemberToRemove(member_id=m) for m in dead])
            log.warning("removed stale group members group=%s members=%s", group, dead)
        return dead
    except KafkaError as exc:
        log.warning("cannot check the group for dead members group=%s error=%s", group, exc)
        return []
    finally:
        if admin is not None:
            admin.close()


def _member_id(app: Any) -> str | None:
    """The worker's member id in its group now (faust keeps aiokafka's consumer inside)."""
    try:
        member = app.consumer._thread._consumer._coordinator.member_id
    except AttributeError:  # not started, or faust changed inside
        return None
    return member if isinstance(member, str) and member else None


def state_changelog_spec(settings: Settings) -> TopicSpec:
    """The worker's state topic: compacted, kept for ever, one partition per packed one."""
    topics = settings.topics
    return TopicSpec(
        changelog_topic(settings.stream.app_id),
        topics.packed_partitions,
        topics.replication_factor,
        {"cleanup.policy": "compact", "retention.ms": "-1"},
    )


def run_worker(
    settings: Settings, *, web_port: int | None = None, on_ready: Callable[[str], None] = print
) -> None:
    """Run one stream worker in the foreground until SIGINT/SIGTERM (faust handles both)."""
    import faust

    from streams.app import build_app

    require_free(listeners(settings, ingest=False, web_port=web_port))
    with connect(settings) as target:
        config = stream_config(settings, target, web_port=web_port)
        ensure_topics(
            target.bootstrap_servers,
            [state_changelog_spec(settings)],
            client_options=target.client_options,
        )
        app, runtime = build_app(config)
        evict_dead_members(target, config.app_id)  # before we join: a dead member blocks it

        async def evict_dead_peers() -> None:  # so that live workers take over a dead one's work
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                None, evict_dead_members, target, config.app_id, partial(_member_id, app)
            )

        app.timer(config.session_timeout_s)(evict_dead_peers)
        where = (
            f"http://{config.web_host}:{config.web_port}" if config.web_port else "no web server"
        )
        on_ready(
            f"stream worker {config.app_id} on {target.bootstrap_servers} ({where}); "
            f"KPIs to {config.kpis_topic}, alerts to {config.alerts_topic}; Ctrl-C stops it"
        )

        class Worker(faust.Worker):
            def _schedule_shutdown(self, signum: signal.Signals) -> None:
                if not self._signal_stop_time:  # the first signal only
                    arm_stop_watchdog()
                super()._schedule_shutdown(signum)

        worker = Worker(
            app,
            loglevel=logging.getLogger().level or logging.WARNING,
            quiet=True,
            redirect_stdouts=False,
        )
        # faust's terminal spinner would set the root logger to DEBUG (to spin on every
        # record): every library's debug call, aiokafka's one per record sent among them,
        # then builds a record that the handler drops (a tenth of the event loop's time).
        worker.spinner = None
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise CommpulseError(
                    f"the stream worker stopped after an error (exit code {exc.code}); "
                    "the log above says which"
                ) from None
        finally:
            runtime.close()


def read_kpis(target: KafkaTarget, topic: str) -> list[KpiRecord]:
    """Every KPI record in ``topic``, oldest first within each partition."""
    return [KpiRecord.decode(record.value) for record in read_all(target, topic)]


def latest_kpis(settings: Settings) -> list[KpiRecord]:
    """The latest record of every KPI window (the current state of ``commpulse.kpis``)."""
    with connect(settings) as target:
        records = read_kpis(target, settings.topics.kpis)
    latest: dict[tuple[Any, ...], KpiRecord] = {}
    for record in records:
        key = record.window_key
        known = latest.get(key)
        if known is None or (record.final, record.emitted_at) >= (known.final, known.emitted_at):
            latest[key] = record
    return list(latest.values())
