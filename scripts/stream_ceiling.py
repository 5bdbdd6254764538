"""How fast could any stream worker be on this machine? A measured ceiling.

Runs, on a fresh embedded broker, the cheapest pipeline we can write that
turns a topic of events into every final KPI record, with none of a stream
worker's duties: no state, no changelog, no watermarks, no faust, nothing
incremental. It reads the whole topic, computes every window of the whole
history in one polars batch (the acceptance tests' reference recomputation,
``tests/integration/kpi_reference.py``, with its per-row Python replaced by
joins where the stream needs no such column), encodes the records in bulk
and produces them::

    PYTHONPATH=. .venv/bin/python scripts/stream_ceiling.py --events 200000
    PYTHONPATH=. .venv/bin/python scripts/stream_ceiling.py --events 200000 --repartition

``--repartition`` adds the trip a kind's windows need when the events topic
is partitioned by channel (Kafka's default partitioner on the channel key):
the events, packed into envelopes of one kind, go through a second topic
partitioned by kind and are read back, as the stream's packer does.

Each phase prints its wall time, this process's CPU time and the broker's
(its CPU while the phase ran; it does part of its work after a phase ends, so
the total is the figure to compare). The pipeline's events/s is the number of
events over the sum of the phases' wall times. See docs/performance.md.

A development measurement, not part of the product: it needs the tests'
reference, so it runs from the project root with ``PYTHONPATH=.``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from commpulse.benchmark.clients import produce_raw
from infra.broker import EmbeddedBroker
from infra.processes import cpu_seconds
from infra.topics import TopicSpec, ensure_topics
from ingest.simulator import SimulationConfig, simulate
from metrics.calendar import BusinessCalendar
from metrics.policy import DEFAULT_CATEGORY_TARGETS, DEFAULT_FIRST_RESPONSE, KpiRules
from metrics.windows import WindowClock
from streams.envelopes import packed_partition
from streams.keyed import send_keyed
from streams.records import VERSION
from tests.integration import kpi_reference as ref

_PACKED_PARTITIONS = 12
_ENVELOPE_EVENTS = 500


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _read(bootstrap: str, topic: str, records: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        consumer.assign(
            [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        )
        await consumer.seek_to_beginning()
        values: list[bytes] = []
        while len(values) < records:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for batch in batches.values():
                values.extend(record.value for record in batch)
        return values
    finally:
        await consumer.stop()


async def _write(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        await asyncio.gather(*await send_keyed(producer, topic, records))
    finally:
        await producer.stop()


async def _count(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def _repartition(bootstrap: str, values: list[bytes]) -> list[bytes]:
    """The events through a topic partitioned by kind, in envelopes; the envelopes read back."""
    by_partition: dict[int, list[bytes]] = {}
    for value in values:
        kind = orjson.loads(value)["channel_kind"]
        by_partition.setdefault(packed_partition(kind, _PACKED_PARTITIONS), []).append(value)
    envelopes = [
        (
            partition,
            b'{"v":1,"src":0,"events":[' + b",".join(chunk[i : i + _ENVELOPE_EVENTS]) + b"]}",
        )
        for partition, chunk in by_partition.items()
        for i in range(0, len(chunk), _ENVELOPE_EVENTS)
    ]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    try:
        sent = [
            await producer.send("packed", value, key=str(p).encode(), partition=p)
            for p, value in envelopes
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    events: list[bytes] = []
    for envelope in await _read(bootstrap, "packed", len(envelopes)):
        events.extend(orjson.dumps(e) for e in orjson.loads(envelope)["events"])
    return events


def _decode(values: list[bytes]) -> pl.DataFrame:
    frame = pl.read_ndjson(b"\n".join(values), infer_schema_length=None)
    return frame.with_columns(
        occurred_at=pl.col("occurred_at").str.to_datetime(time_zone="UTC", time_unit="us")
    )


def _windows(events: pl.DataFrame, calendar: BusinessCalendar, rules: KpiRules) -> pl.DataFrame:
    """Every KPI window of the events, as the reference computes them, and its final time.

    The reference's body (``reference_frame``) without the ISO ``window_start`` column the
    stream does not need, and with each window's final time joined from the distinct
    (KPI, kind, end) triples instead of looked up row by row.
    """
    clock = WindowClock("UTC")
    frame = ref._with_windows(ref.event_frame(events), clock)
    as_of = float(frame["t"].max())  # type: ignore[arg-type]
    requests = ref.request_frame(
        frame,
        calendar=calendar,
        rules=rules,
        first_response=DEFAULT_FIRST_RESPONSE,
        category_targets=DEFAULT_CATEGORY_TARGETS,
        as_of=as_of,
    )
    messages = ref._message_frame(frame, rules)
    facts = ref._windowed(
        ref._with_windows(ref._facts(frame, requests, messages), clock, "at"), clock
    )
    window = ["kpi", "granularity", "start", "end"]
    columns = ["channel_id", "channel_kind", "scope", *window, "value", "numerator", "denominator"]
    kpis = pl.concat(
        [
            ref._aggregate(facts, ["channel_id", "channel_kind", "scope", *window]).select(columns),
            ref._aggregate(facts, ["channel_kind", "scope", *window])
            .with_columns(channel_id=pl.lit(None, dtype=pl.String))
            .select(columns),
            ref._active_users(frame, clock).select(columns),
        ]
    )
    triples = kpis.select("kpi", "channel_kind", "end").unique()
    final_at = [
        ref.settles_at(kpi, kind, end, calendar=calendar, rules=rules)
        for kpi, kind, end in triples.iter_rows()
    ]
    return kpis.join(
        triples.with_columns(final_at=pl.Series(final_at, dtype=pl.Float64)),
        on=["kpi", "channel_kind", "end"],
    )


def _records(kpis: pl.DataFrame) -> list[tuple[bytes, bytes]]:
    """The KPI topic's records (:mod:`streams.records`' shape), encoded in bulk by polars."""

    def iso(column: str) -> pl.Expr:
        return (
            pl.from_epoch(pl.col(column).cast(pl.Int64), time_unit="s")
            .dt.replace_time_zone("UTC")
            .dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        )

    values = kpis.select(
        pl.lit(VERSION).alias("v"),
        "channel_id",
        "channel_kind",
        "scope",
        "kpi",
        "granularity",
        iso("start").alias("window_start"),
        iso("end").alias("window_end"),
        "value",
        "numerator",
        "denominator",
        pl.lit(True).alias("final"),
        pl.lit(datetime.now(UTC).isoformat()).alias("emitted_at"),
    ).write_ndjson()
    keys = kpis.select(
        pl.format(
            "{}|{}|{}|{}",
            pl.coalesce("channel_id", pl.format("*{}/{}", "channel_kind", "scope")),
            "kpi",
            "granularity",
            pl.col("start").cast(pl.Int64),
        )
    ).to_series()
    return [
        (key.encode(), value) for key, value in zip(keys, values.encode().splitlines(), strict=True)
    ]


def measure(events: int, *, repartition: bool) -> dict[str, Any]:
    simulated = simulate(
        SimulationConfig(events=events, days=90, seed=1, end=datetime(2026, 11, 1, tzinfo=UTC))
    )
    encoded = [
        (e["channel_id"].encode(), orjson.dumps(e, option=orjson.OPT_NAIVE_UTC)) for e in simulated
    ]
    phases: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as work, EmbeddedBroker(Path(work) / "broker") as broker:
        bootstrap, pid = broker.bootstrap_servers, broker.pid
        assert pid is not None
        ensure_topics(
            bootstrap,
            [
                TopicSpec("events", 8),
                TopicSpec("kpis", 12),
                TopicSpec("packed", _PACKED_PARTITIONS),
            ],
        )
        produce_raw(bootstrap, "events", encoded, {})
        time.sleep(2.0)  # let the broker settle after the load

        def phase(name: str, step: Callable[[], Any]) -> Any:
            broker_before, cpu_before, started = cpu_seconds(pid), _cpu(), time.perf_counter()
            result = step()
            phases[name] = {
                "wall_s": round(time.perf_counter() - started, 3),
                "cpu_s": round(_cpu() - cpu_before, 3),
                "broker_cpu_s": round(cpu_seconds(pid) - broker_before, 3),
            }
            print(
                f"{name:<24} wall {phases[name]['wall_s']:6.2f} s   cpu {phases[name]['cpu_s']:6.2f} s"
                f"   broker cpu {phases[name]['broker_cpu_s']:5.2f} s",
                flush=True,
            )
            return result

        values = phase("consume", lambda: asyncio.run(_read(bootstrap, "events", events)))
        if repartition:
            values = phase(
                "repartition by kind", lambda: asyncio.run(_repartition(bootstrap, values))
            )
        frame = phase("decode", lambda: _decode(values))
        kpis = phase(
            "compute every window", lambda: _windows(frame, BusinessCalendar(), KpiRules())
        )
        records = phase("encode", lambda: _records(kpis))
        phase("produce", lambda: asyncio.run(_write(bootstrap, "kpis", records)))
        produced = asyncio.run(_count(bootstrap, "kpis"))
    if produced != len(records):
        raise RuntimeError(f"{len(records):,} KPI records sent, but the topic holds {produced:,}")
    wall = sum(p["wall_s"] for p in phases.values())
    cpu = sum(p["cpu_s"] + p["broker_cpu_s"] for p in phases.values())
    result = {
        "events": events,
        "repartition": repartition,
        "windows": kpis.height,
        "records_in_topic": produced,
        "phases": phases,
        "events_per_s": round(events / wall),
        "events_per_cpu_s": round(events / cpu),
    }
    print(
        f"{kpis.height:,} KPI windows; {wall:.2f} s in all: {result['events_per_s']:,} events/s"
        f" ({result['events_per_cpu_s']:,} per CPU second, broker included)"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repartition", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = measure(args.events, repartition=args.repartition)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
