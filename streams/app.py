"""The faust app of the stream worker, built from a :class:`StreamConfig` in one place.

* agent ``kpis`` over the packed topic: batches of envelopes and ticks go to
  :class:`~streams.runtime.StreamRuntime`; its state is written to, and read
  back from, the compacted topic ``<app id>-state-changelog``
  (:mod:`streams.changelog`; no faust table);
* task ``packer``: :class:`~streams.packer.Packer`, in every worker;
* agent ``alerts`` over the alerts topic: delivery to Alertmanager and a
  webhook; firing alerts live in the table ``alerts-firing`` and are re-sent
  by a timer, as Alertmanager expects;
* web (127.0.0.1 unless configured): ``/kpis`` (JSON), ``/metrics``
  (Prometheus), ``/healthz``.

Several workers with the same app id share the partitions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, cast

import faust
from faust.types import TP
from faust.web import Request, Response, View

from infra.processes import exit_now
from streams.alerting import IdleAlert
from streams.changelog import changelog_topic, read_latest
from streams.delivery import AlertDelivery
from streams.engine import EngineConfig
from streams.fetch_pacing import DEFAULT_PAUSE_S, pace_empty_fetches
from streams.keyed import send_keyed
from streams.packer import Packer
from streams.prometheus import exposition
from streams.runtime import ProducerLike, StreamRuntime

__all__ = ["StreamConfig", "build_app", "process_or_stop"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamConfig:
    app_id: str
    bootstrap_servers: str
    engine: EngineConfig
    events_topic: str
    packed_topic: str
    packed_partitions: int
    kpis_topic: str
    alerts_topic: str
    dlq_topic: str
    batch_envelopes: int = 40
    batch_within_s: float = 0.5
    tick_interval_s: float = 10.0
    #: an event this old when read means a backfill (no idle judgement on its source partition)
    backfill_age_s: float = 3600.0
    #: how long the packer gathers events into envelopes
    pack_linger_s: float = 1.0
    #: events per envelope: bounds the work of one processing batch (with batch_envelopes)
    envelope_events: int = 500
    #: the largest record the worker writes: envelopes and pieces of state stay below it
    max_record_bytes: int = 512 * 1024
    web_host: str = "127.0.0.1"
    web_port: int | None = 6066
    #: aiokafka keyword arguments for SASL/TLS (the packer)
    client_options: Mapping[str, Any] = field(default_factory=dict)
    #: faust broker credentials for SASL/TLS, or None
    broker_credentials: Any = None
    alertmanager_url: str | None = None
    webhook_url: str | None = None
    webhook_token: str | None = None
    alert_resend_s: float = 60.0
    #: consumer-group session and rebalance timeout
    session_timeout_s: float = 30.0
    #: where faust keeps its own files (it keeps no table data here: state lives in Kafka)
    datadir: Path | None = None
    #: Kafka client id of the worker's consumer and producer (its group member ids start with it)
    client_id: str | None = None
    #: after an empty fetch, wait up to this long (see :mod:`streams.fetch_pacing`; 0 = off)
    empty_fetch_pause_s: float = DEFAULT_PAUSE_S


def build_app(config: StreamConfig) -> tuple[faust.App, StreamRuntime]:
    """The app and the runtime behind it (tests inspect the runtime)."""
    brokers = ";".join(
        f"kafka://{server.strip()}" for server in config.bootstrap_servers.split(",")
    )
    if config.empty_fetch_pause_s > 0:
        pace_empty_fetches(config.empty_fetch_pause_s)
    if config.datadir is not None:
        config.datadir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
    app = faust.App(
        config.app_id,
        broker=brokers,
        broker_client_id=config.client_id or f"faust-{faust.__version__}",  # faust's default
        broker_credentials=config.broker_credentials,
        store="memory://",
        datadir=str(config.datadir or f"{config.app_id}-data"),  # faust's default
        topic_partitions=config.packed_partitions,
        table_standby_replicas=0,
        web_enabled=config.web_port is not None,
        web_bind=config.web_host,
        web_port=config.web_port or 6066,
        web_host=config.web_host,
        producer_acks=-1,
        producer_max_batch_size=1024 * 1024,  # KPI records go in whole batches
        producer_max_request_size=8 * 1024 * 1024,
        consumer_max_fetch_size=8 * 1024 * 1024,
        stream_buffer_maxsize=config.batch_envelopes * 4,
        stream_wait_empty=False,
        broker_session_timeout=config.session_timeout_s,
        broker_rebalance_timeout=config.session_timeout_s,
        broker_heartbeat_interval=min(3.0, config.session_timeout_s / 3),
    )
    packed = app.topic(
        config.packed_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=config.packed_partitions,
    )
    changelog = changelog_topic(config.app_id)

    async def restore(partition: int) -> Mapping[bytes, bytes]:
        return await read_latest(
            config.bootstrap_servers, changelog, partition, config.client_options
        )

    async def seek(partition: int, offset: int) -> int:
        tp = TP(config.packed_topic, partition)
        start = max(offset, (await app.consumer.earliest_offsets(tp))[tp])
        await app.consumer.seek(tp, start)
        return start

    runtime = StreamRuntime(
        config.engine,
        kpis_topic=config.kpis_topic,
        alerts_topic=config.alerts_topic,
        changelog_topic=changelog,
        restore=restore,
        seek=seek,
        full_batch=config.batch_envelopes,
        dlq_topic=config.dlq_topic,
        packed_topic=config.packed_topic,
    )

    producer = _Producer(app)

    @app.agent(packed, name="kpis")
    async def kpis(stream: faust.StreamT[bytes]) -> None:
        # (faust's StreamT protocol lacks take_events; the Stream has it)
        batches = cast(faust.Stream[bytes], stream).take_events(
            config.batch_envelopes, within=config.batch_within_s
        )
        async for events in batches:
            batch = [(e.message.partition, e.message.offset, e.value) for e in events]
            newest = max(e.message.timestamp for e in events)
            await process_or_stop(runtime, batch, producer, newest)

    packer = Packer(
        bootstrap_servers=config.bootstrap_servers,
        events_topic=config.events_topic,
        packed_topic=config.packed_topic,
        packed_partitions=config.packed_partitions,
        dlq_topic=config.dlq_topic,
        group_id=f"{config.app_id}-packer",
        client_options=config.client_options,
        tick_interval_s=config.tick_interval_s,
        backfill_age_s=config.backfill_age_s,
        max_events=config.envelope_events,
        max_bytes=config.max_record_bytes,
        linger_s=config.pack_linger_s,
    )

    async def run_packer() -> None:
        await packer.run()

    def packed_only(partitions: set[TP]) -> set[int]:
        return {tp.partition for tp in partitions if tp.topic == config.packed_topic}

    async def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        # The batch in flight writes its state, and the state is in Kafka before the next
        # owner reads it back.
        await runtime.revoke(packed_only(revoked), producer)

    async def on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs.get("assigned", set())
        runtime.assign(packed_only(assigned))
        packer.follow(packed_only(assigned))  # the packer packs what feeds this worker's partitions

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_partitions_assigned.connect(cast(Any, on_assigned))

    app.task(run_packer)

    _alert_delivery(app, config)
    _web(app, runtime, packer, config.packed_topic)
    return app, runtime


class _Producer:
    """faust's producer, and KPI records sent in whole batches through the aiokafka
    producer inside it (:func:`streams.keyed.send_keyed`): the same producer, so
    faust's flush before it commits offsets covers them too."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Any:
        return await self._app.producer.send(topic, key, value, partition, timestamp, headers)

    async def send_keyed(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[Any]:
        aiokafka_producer = cast(Any, self._app.producer)._ensure_producer()
        return await send_keyed(aiokafka_producer, topic, records)

    async def flush(self) -> None:
        await self._app.producer.flush()


async def process_or_stop(
    runtime: StreamRuntime,
    batch: Sequence[tuple[int, int, bytes]],
    producer: ProducerLike,
    newest: float | None,
) -> None:
    """One batch; if it fails, the worker stops (:func:`_stop_after_failed_batch`).

    A cancellation counts as a failure too unless this task is being cancelled (the
    worker is stopping): one raised from inside, by a client library, would otherwise
    end the agent, and faust only logs that; the worker would go on, healthy to see
    and reading nothing. A cancellation of this task that something inside swallowed
    is raised once the batch is done.
    """
    task = asyncio.current_task()
    try:
        await runtime.process(batch, producer, newest=newest)
    except asyncio.CancelledError as exc:
        if task is None or task.cancelling():
            raise
        _stop_after_failed_batch(exc)
    except Exception as exc:  # noqa: BLE001 - any failure: stop, do not skip the batch
        _stop_after_failed_batch(exc)
    if task is not None and task.cancelling():
        # The worker is stopping, and the cancellation was lost inside the batch: aiokafka's
        # fetch tasks return normally when cancelled, so a task awaiting one (a consumer's
        # stop does) goes on. faust would wait for the agent forever (seen on Ctrl-C during
        # the first batch after a rebalance). The batch is whole; a replay applies none of it
        # twice.
        raise asyncio.CancelledError


def _stop_after_failed_batch(exc: BaseException) -> NoReturn:
    """Exit at once, as a kill -9 would, with the error in the log and on stderr.

    faust would restart the agent and carry on after the batch, with the engines
    holding part of it; its own shutdown after ``app.crash`` sometimes hangs in the
    consumer's stop. The state in Kafka holds no part of the failed batch that the
    replay cannot handle (as after a kill -9), so a restarted worker goes on from it.
    """
    log.critical("the stream worker stops: a batch failed: %r", exc, exc_info=exc)
    exit_now(
        f"the stream worker stopped: a batch failed: {exc!r} (the log above has the "
        "traceback); start it again to go on from its state in Kafka"
    )


def _alert_delivery(app: faust.App, config: StreamConfig) -> None:
    """Deliver alert transitions; re-send firing alerts, as Alertmanager expects.

    The firing alerts are the latest transition per channel on the alerts topic
    (keyed by channel), so the worker that owns the topic reads them back from it
    when it gets the partition, before it delivers or re-sends anything.
    """
    if config.alertmanager_url is None and config.webhook_url is None:
        return  # alerts stay on the topic only
    alerts = app.topic(
        config.alerts_topic, key_serializer="raw", value_serializer="raw", partitions=1
    )
    delivery = AlertDelivery(
        alertmanager_url=config.alertmanager_url,
        webhook_url=config.webhook_url,
        webhook_token=config.webhook_token,
        resend_interval=timedelta(seconds=config.alert_resend_s),
    )
    owned: set[int] = set()  # the alerts partitions whose firing alerts ``delivery`` holds

    async def restore() -> None:
        """After the assignment changed: read back the firing alerts of our alerts partitions."""
        topic = alerts.get_topic_name()
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
        if assigned == owned:
            return
        latest: dict[bytes, bytes] = {}
        for partition in sorted(assigned):
            latest |= await read_latest(
                config.bootstrap_servers, topic, partition, config.client_options
            )
        firing = [IdleAlert.from_json(value) for value in latest.values()]
        delivery.restore(alert for alert in firing if alert.status == "firing")
        owned.clear()
        owned.update(assigned)
        log.info("alerts partitions=%s firing=%s", sorted(assigned), len(delivery.firing))

    @app.agent(alerts, name="alert-delivery")
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        await delivery.start()
        try:
            async for value in stream:
                await restore()
                await delivery.deliver(IdleAlert.from_json(value))
        finally:
            await delivery.close()

    async def resend() -> None:
        await restore()
        if delivery.firing:
            await delivery.start()
            await delivery.resend_firing(datetime.now(UTC))

    app.timer(config.alert_resend_s)(resend)


def _web(app: faust.App, runtime: StreamRuntime, packer: Packer, packed_topic: str) -> None:
    @app.page("/kpis")
    async def kpis_view(web: View, request: Request) -> Response:
        query = request.query
        return web.json(runtime.snapshot(channel=query.get("channel"), kind=query.get("kind")))

    @app.page("/metrics")
    async def metrics_view(web: View, request: Request) -> Response:
        body, content_type = exposition(runtime, packer.stats)
        # aiohttp refuses a charset inside content_type; send the exposition header as it is.
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.page("/healthz")
    async def health_view(web: View, request: Request) -> Response:
        stats = runtime.stats
        engines = list(runtime.engines.values())
        return web.json(
            {
                "status": "ok",
                "uptime_s": round(time.time() - stats.started, 1),
                "assigned": sorted(
                    tp.partition for tp in app.consumer.assignment() if tp.topic == packed_topic
                ),
                "partitions": sorted(runtime.engines.copy()),
                "events": stats.events,
                "channels": sum(len(engine.metas) for engine in engines),
                # catalog channels with no event yet, idle from when they were listed
                "listed_without_events": sum(len(engine.listed) for engine in engines),
                "late_dropped": stats.late_dropped,
                "ahead_of_clock": stats.ahead_of_clock,
                "gaps": stats.gaps,
                "dead_lettered": stats.dead_lettered,
                "packer_lag": packer.stats.lag,
                "packer_backfill": packer.stats.backfill,
            }
        )
