"""``commpulse bench``: throughput, latency and memory of every stage, as ratios.

Each stage is measured in the same run as the baseline it is compared with,
on the same broker and the same records, because these small machines are
noisy: ingest against a raw produce with the same client and settings, the
sink and the stream worker against a raw consume-and-decode with aiokafka
(the fastest client here). Topics get a fresh prefix per run.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

from commpulse.benchmark.clients import consume_aiokafka, consume_kafka_python, produce_raw
from commpulse.benchmark.latency import probe_latency
from commpulse.benchmark.soak import soak_stream
from commpulse.benchmark.warehouse import bench_warehouse
from commpulse.children import Child
from commpulse.kafka import KafkaTarget, connect, make_producer
from commpulse.settings import KafkaSettings, Settings, child_environment
from infra import TopicError, TopicSpec, delete_topics_named, ensure_topics, free_port
from infra.processes import cpu_seconds, memory_kib
from ingest import Record
from ingest.simulator import SimulationConfig, simulate
from warehouse.schema import open_warehouse
from warehouse.sink import SinkConfig, run_sink

__all__ = ["SINK_ROUNDS", "run_bench"]

#: how many times the sink stage runs (see ``_measure``)
SINK_ROUNDS: Final = 3


def _self_rss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_bench(
    settings: Settings,
    *,
    events: int,
    history_sizes: tuple[int, ...] = (1_000_000, 3_000_000, 10_000_000),
    soak_minutes: float = 0.0,
    keep: bool = False,
    on_stage: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every stage once; returns the figures (see docs/performance.md).

    The run's topics (one prefix) and its working directory are deleted at the end,
    unless ``keep``; after a failure the working directory, with the worker's log, is kept.
    """
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="commpulse-bench-"))
    finished = False
    with connect(settings, ensure_topics_exist=False) as target:
        try:
            result = _measure(
                settings,
                target,
                prefix,
                work,
                events=events,
                history_sizes=history_sizes,
                soak_minutes=soak_minutes,
                on_stage=on_stage,
            )
            finished = True
        finally:
            _clean_up(target, prefix, work, keep=keep, finished=finished, on_stage=on_stage)
    return result


def _clean_up(
    target: KafkaTarget,
    prefix: str,
    work: Path,
    *,
    keep: bool,
    finished: bool,
    on_stage: Callable[[str], None],
) -> None:
    """Delete the run's topics, and its working directory if the run finished (see run_bench)."""
    if keep:
        on_stage(f"kept the topics {prefix}* and {work} (--keep)")
        return
    try:
        deleted = delete_topics_named(
            target.bootstrap_servers, prefix, client_options=target.client_options
        )
    except TopicError as exc:
        on_stage(f"could not delete the topics {prefix}*: {exc}")
    else:
        on_stage(f"deleted the run's {len(deleted)} topics ({prefix}*)")
    if finished:
        shutil.rmtree(work, ignore_errors=True)
    else:
        on_stage(f"the run failed: its working directory, with the worker's log, is {work}")


def _measure(
    settings: Settings,
    target: KafkaTarget,
    prefix: str,
    work: Path,
    *,
    events: int,
    history_sizes: tuple[int, ...],
    soak_minutes: float,
    on_stage: Callable[[str], None],
) -> dict[str, Any]:
    topics = settings.topics.prefixed(prefix)
    raw_topic = f"{prefix}.raw"
    result: dict[str, Any] = {"events": events, "rates": {}, "seconds": {}, "rss_peak_mib": {}}
    rates, seconds = result["rates"], result["seconds"]
    here = settings.model_copy(
        update={
            "kafka": settings.kafka
            if settings.kafka.bootstrap_servers
            else KafkaSettings(bootstrap_servers=target.bootstrap_servers),
            "topics": topics,
            "data_dir": work,
        }
    )
    options = target.client_options
    specs = [*topics.specs(), TopicSpec(raw_topic, topics.events_partitions)]
    ensure_topics(target.bootstrap_servers, specs, client_options=options)

    on_stage(f"simulate {events:,} events")
    data = list(simulate(SimulationConfig(events=events, seed=1)))
    encoded = [
        (e["channel_id"].encode(), orjson.dumps(e, option=orjson.OPT_NAIVE_UTC)) for e in data
    ]
    result["event_bytes_mean"] = round(sum(len(v) for _, v in encoded) / len(encoded), 1)

    on_stage("baseline: raw produce (kafka-python, as ingest configures it)")
    rates["raw_produce"] = produce_raw(target.bootstrap_servers, raw_topic, encoded, options)

    on_stage("ingest: validate, pseudonymise, produce")
    started = time.perf_counter()
    with make_producer(here, target) as producer:
        sent = producer.send_many([Record(e) for e in data])
        producer.flush()
    rates["ingest"] = sent.accepted / (time.perf_counter() - started)

    # The broker saves what ingest wrote for a few seconds after it; consumers measured
    # meanwhile share the 2 cores with it, the sink (which needs both) most.
    on_stage("wait for the broker to settle")
    seconds["broker_settle"] = round(_broker_quiet(target), 1)
    on_stage("baselines: raw consume and decode (aiokafka, kafka-python)")
    rates["raw_consume_aiokafka"] = consume_aiokafka(
        target.bootstrap_servers, topics.events, sent.accepted, options
    )
    rates["raw_consume_kafka_python"] = consume_kafka_python(
        target.bootstrap_servers, topics.events, sent.accepted, options
    )

    # The sink needs both cores, so it is what a noisy machine disturbs most: it runs
    # SINK_ROUNDS times, each from an empty warehouse and each right after an aiokafka
    # baseline of its own; the stage's figure is the median of those ratios.
    config = SinkConfig(
        bootstrap_servers=target.bootstrap_servers,
        topic=topics.events,
        dlq_topic=topics.dlq,
        client_options=options,
        batch_events=here.warehouse.batch_events,
        batch_within_s=here.warehouse.batch_within_s,
    )
    rounds = result["sink_rounds"] = []
    for round_ in range(1, SINK_ROUNDS + 1):
        _broker_quiet(target)
        on_stage(f"sink: from start to caught up ({round_} of {SINK_ROUNDS})")
        baseline = consume_aiokafka(target.bootstrap_servers, topics.events, sent.accepted, options)
        path = work / f"warehouse-{round_}.duckdb"
        con = open_warehouse(path)
        try:
            loaded = run_sink(con, config, until_caught_up=True)
            if round_ == SINK_ROUNDS:
                from metrics.channels import ChannelCatalog
                from warehouse.build import build

                seconds["sink_build"] = build(con, ChannelCatalog(), here.metrics.timezone).seconds
        finally:
            con.close()
        if round_ < SINK_ROUNDS:
            path.unlink()
        rate = loaded.received / loaded.seconds
        rounds.append({"sink": rate, "raw_consume_aiokafka": baseline, "ratio": rate / baseline})
    rates["sink"] = statistics.median(entry["sink"] for entry in rounds)
    result["rss_peak_mib"]["bench_process_with_sink"] = round(_self_rss_kib() / 1024, 1)

    on_stage("stream worker: from start to caught up")
    port = free_port()
    env = child_environment(here, stream__web_port=str(port), stream__app_id=f"{prefix}-stream")
    url = f"http://127.0.0.1:{port}"
    with Child("stream", ["stream"], env=env, log_path=work / "stream.log") as worker:
        started = time.perf_counter()
        result["stream_health"] = _wait_caught_up(url, worker, sent.accepted)
        elapsed = time.perf_counter() - started
        rates["stream"] = sent.accepted / elapsed
        seconds["stream_catch_up"] = round(elapsed, 1)
        assert worker.pid is not None
        # CPU time varies less than wall time when the machine is shared (it includes
        # the worker's start: imports, faust, state restore)
        seconds["stream_catch_up_cpu"] = round(cpu_seconds(worker.pid), 1)
        result["stream_events_per_cpu_s"] = round(sent.accepted / seconds["stream_catch_up_cpu"])
        # After catching up the worker still evaluates the windows the history made
        # final, and, in its first batch that is not behind, every window changed since
        # it last sent changes: latency is measured once that is done. The KPI topic
        # must stay quiet through a whole tick interval, since one such batch can take
        # longer than a few seconds (waiting 3 s, a 200,000-event run measured the end
        # of that batch, 16-20 s, instead of the latency).
        quiet_s = here.stream.tick_interval_s + 2.0
        seconds["stream_settle"] = round(
            _wait_quiet(target.bootstrap_servers, topics.kpis, options, quiet_s), 1
        )
        on_stage("latency: event → KPI update at half the stream's rate")
        result["latency_s"] = probe_latency(
            here, target, rate=max(rates["stream"] / 2, 10.0), probes=200
        )
        assert worker.pid is not None
        result["rss_peak_mib"]["stream_worker"] = round(memory_kib(worker.pid, "VmHWM") / 1024, 1)

    if soak_minutes > 0:
        on_stage(f"soak: a stream worker fed steadily for {soak_minutes:g} minutes")
        result["soak"] = soak_stream(
            here, target, prefix=prefix, work=work, minutes=soak_minutes, on_stage=on_stage
        )
        result["rss_peak_mib"]["stream_worker_soak"] = max(
            rss for _, rss in result["soak"]["rss_mib"]
        )

    if history_sizes:
        result["warehouse"] = bench_warehouse(
            history_sizes,
            work,
            lambda path: child_environment(
                here, data_dir=str(work / "report-data"), warehouse__path=str(path)
            ),
            on_stage=on_stage,
        )

    base = rates["raw_consume_aiokafka"]
    result["ratios"] = {
        "stream_vs_consume": rates["stream"] / base,
        "sink_vs_consume": statistics.median(entry["ratio"] for entry in result["sink_rounds"]),
        "ingest_vs_produce": rates["ingest"] / rates["raw_produce"],
    }
    result["targets"] = {
        "stream_vs_consume": 0.25,
        "sink_vs_consume": 0.5,
        "ingest_vs_produce": 0.7,
        "warehouse_load_10m_s": 1.0,
        "warehouse_report_10m_s": 2.0,
        "warehouse_full_rebuild_10m_s": 60.0,
        "warehouse_full_rebuild_rss_mib": 4096.0,
        "soak_growth_after_half": 0.1,
    }
    return result


def _broker_quiet(target: KafkaTarget, share: float = 0.05, timeout: float = 60.0) -> float:
    """Until the embedded broker used less than ``share`` of a core over a second (a
    cluster: at once); the seconds it took."""
    started = time.perf_counter()
    if target.embedded is None:
        return 0.0
    pid = target.embedded.broker_pid
    before = cpu_seconds(pid)
    while time.perf_counter() - started < timeout:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - before < share:
            break
        before = now
    return time.perf_counter() - started


def _wait_quiet(
    bootstrap: str, topic: str, options: Any, quiet_s: float = 3.0, timeout: float = 600.0
) -> float:
    """Until ``topic``'s end offsets have not moved for ``quiet_s``; the seconds it took."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **options)
    started = time.perf_counter()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        last, since = None, time.perf_counter()
        while time.perf_counter() - started < timeout:
            ends = consumer.end_offsets(partitions)
            if ends != last:
                last, since = ends, time.perf_counter()
            elif time.perf_counter() - since >= quiet_s:
                break
            time.sleep(0.5)
    finally:
        consumer.close()
    return time.perf_counter() - started


def _wait_caught_up(
    url: str, worker: Child, events: int, timeout: float = 1800.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the stream worker exited: {worker.tail()}")
        try:
            health: dict[str, Any] = httpx.get(f"{url}/healthz", timeout=5).json()
        except httpx.HTTPError:
            health = {}
        if health.get("events", 0) >= events and not any(health["packer_lag"].values()):
            return health
        time.sleep(0.2)
    raise RuntimeError(f"the stream worker did not catch up in {timeout:.0f} s")
