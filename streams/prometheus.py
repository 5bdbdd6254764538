"""Prometheus exposition of the worker's current KPI values and counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.packer import PackerStats
from streams.runtime import StreamRuntime

__all__ = ["exposition"]

_LABELS = ["channel_id", "channel_kind", "scope", "kpi", "granularity"]


class _Collector(Collector):
    def __init__(self, runtime: StreamRuntime, packer: PackerStats) -> None:
        self.runtime = runtime
        self.packer = packer

    def collect(self) -> Iterator[Metric]:
        value = GaugeMetricFamily(
            "commpulse_kpi_value",
            "Latest value of a KPI in its latest window on this worker",
            labels=_LABELS,
        )
        final = GaugeMetricFamily(
            "commpulse_kpi_final", "1 if that window is final", labels=_LABELS
        )
        start = GaugeMetricFamily(
            "commpulse_kpi_window_start_seconds", "Start of that window", labels=_LABELS
        )
        for current in self.runtime.current.values():
            update = current.update
            if update.result.value is None:
                continue
            labels = [
                update.channel_id or "",
                update.channel_kind,
                update.scope,
                update.kpi,
                update.window.granularity,
            ]
            value.add_metric(labels, update.result.value)
            final.add_metric(labels, 1.0 if update.final else 0.0)
            start.add_metric(labels, update.window.start)
        yield value
        yield final
        yield start
        stats = self.runtime.stats
        for name, help_text, amount in (
            ("commpulse_stream_events", "Events applied", stats.events),
            ("commpulse_stream_envelopes", "Packed records applied", stats.envelopes),
            (
                "commpulse_stream_late_dropped",
                "Events dropped as late beyond grace",
                stats.late_dropped,
            ),
            (
                "commpulse_stream_ahead_of_clock",
                "Events stamped more than grace ahead of the worker's clock (a client clock ahead)",
                stats.ahead_of_clock,
            ),
            (
                "commpulse_stream_gaps",
                "Times records of a partition never arrived and were read again",
                stats.gaps,
            ),
            (
                "commpulse_stream_dead_lettered",
                "Unusable packed records sent to the dead-letter topic",
                stats.dead_lettered,
            ),
            ("commpulse_stream_kpi_records", "KPI records sent", stats.kpi_records),
            ("commpulse_stream_alert_records", "Alert records sent", stats.alert_records),
            ("commpulse_packer_events", "Events packed", self.packer.events),
            (
                "commpulse_packer_dead_lettered",
                "Unusable records sent to the dead-letter topic",
                self.packer.dead_lettered,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=amount)
        lag = GaugeMetricFamily(
            "commpulse_packer_lag", "Records not yet packed", labels=["partition"]
        )
        backfill = GaugeMetricFamily(
            "commpulse_packer_backfill",
            "1 while a partition delivers history (its channels are not judged idle meanwhile)",
            labels=["partition"],
        )
        for partition, records in sorted(self.packer.lag.items()):
            lag.add_metric([str(partition)], records)
            backfill.add_metric([str(partition)], float(partition in self.packer.backfill))
        yield lag
        yield backfill


def exposition(runtime: StreamRuntime, packer: PackerStats) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(runtime, packer))
    return generate_latest(registry), CONTENT_TYPE_LATEST
