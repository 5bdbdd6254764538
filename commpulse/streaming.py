"""Run the stream worker, and read its KPI records back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from commpulse.kafka import KafkaTarget, connect
from commpulse.settings import KafkaSettings, Settings
from infra import TopicSpec, ensure_topics
from metrics.channels import ChannelCatalog
from metrics.windows import WindowClock
from streams.changelog import changelog_topic
from streams.engine import EngineConfig
from streams.records import KpiRecord

__all__ = ["engine_config", "latest_kpis", "load_catalog", "run_worker", "stream_config"]

log = logging.getLogger(__name__)


def load_catalog(settings: Settings) -> ChannelCatalog:
    path = settings.metrics.catalog
    return ChannelCatalog.load(path) if path is not None else ChannelCatalog()


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        catalog=load_catalog(settings),
        clock=WindowClock(settings.metrics.timezone),
        grace_s=settings.stream.grace_s,
        sources=settings.topics.events_partitions,
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
        web_host=stream.web_host,
        web_port=port or None,
        client_options={} if embedded else settings.kafka.aiokafka_options(),
        broker_credentials=None if embedded else _broker_credentials(settings.kafka),
        alertmanager_url=alerts.alertmanager_url,
        webhook_url=alerts.webhook_url,
        webhook_token=alerts.webhook_token.get_secret_value() if alerts.webhook_token else None,
        alert_resend_s=alerts.resend_interval_s,
        session_timeout_s=stream.session_timeout_s,
        datadir=settings.data_dir / "stream" / stream.app_id,
    )


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

    with connect(settings) as target:
        config = stream_config(settings, target, web_port=web_port)
        ensure_topics(
            target.bootstrap_servers,
            [state_changelog_spec(settings)],
            client_options=target.client_options,
        )
        app, runtime = build_app(config)
        where = (
            f"http://{config.web_host}:{config.web_port}" if config.web_port else "no web server"
        )
        on_ready(
            f"stream worker {config.app_id} on {target.bootstrap_servers} ({where}); "
            f"KPIs to {config.kpis_topic}, alerts to {config.alerts_topic}; Ctrl-C stops it"
        )
        worker = faust.Worker(
            app,
            loglevel=logging.getLogger().level or logging.WARNING,
            quiet=True,
            redirect_stdouts=False,
        )
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            runtime.close()


@contextmanager
def _consumer(target: KafkaTarget) -> Iterator[KafkaConsumer]:
    consumer = KafkaConsumer(
        bootstrap_servers=target.bootstrap_servers,
        enable_auto_commit=False,
        **target.client_options,
    )
    try:
        yield consumer
    finally:
        consumer.close()


def read_kpis(target: KafkaTarget, topic: str) -> list[KpiRecord]:
    """Every KPI record in ``topic``, oldest first within each partition."""
    records: list[KpiRecord] = []
    with _consumer(target) as consumer:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return records
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(KpiRecord.decode(message.value) for message in batch)
    return records


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
