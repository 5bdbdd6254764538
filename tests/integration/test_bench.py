"""`commpulse bench --events 5000 --soak 0.2`: a smoke test of the whole benchmark (no timing
asserted)."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from kafka import KafkaAdminClient

from commpulse.benchmark import SINK_ROUNDS
from commpulse.settings import Settings
from tests.integration.support import run_cli


def test_a_quick_bench_writes_complete_json(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    result = run_cli(
        "bench", "--events", "5000", "--history", "20000,40000", "--soak", "0.2", "--json", str(out),
        env=cli_env | {"COMMPULSE_STREAM__TICK_INTERVAL_S": "1"},  # latency waits a tick + 2 s
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["events"] == 5000
    assert set(figures["rates"]) == {
        "raw_produce", "ingest", "raw_consume_aiokafka", "raw_consume_kafka_python",
        "sink", "stream",
    }  # fmt: skip
    assert all(rate > 0 for rate in figures["rates"].values())
    cpu = figures["seconds"]["stream_catch_up_cpu"]
    assert 0 < cpu and figures["stream_events_per_cpu_s"] == round(5000 / cpu)
    ratios = figures["ratios"]
    assert set(ratios) == {"stream_vs_consume", "sink_vs_consume", "ingest_vs_produce"}
    # the sink ran SINK_ROUNDS times, each against a baseline of its own: the medians
    rounds = figures["sink_rounds"]
    assert len(rounds) == SINK_ROUNDS
    for entry in rounds:
        assert entry["ratio"] == entry["sink"] / entry["raw_consume_aiokafka"]
    assert ratios["sink_vs_consume"] == statistics.median(entry["ratio"] for entry in rounds)
    assert figures["rates"]["sink"] == statistics.median(entry["sink"] for entry in rounds)
    assert figures["latency_s"]["seen"] == figures["latency_s"]["probes"] == 200
    assert 0 < figures["latency_s"]["p50"] <= figures["latency_s"]["p99"]
    warehouse = figures["warehouse"]
    assert set(warehouse["sizes"]) == {"20000", "40000"}
    for size in warehouse["sizes"].values():
        assert size["full_rebuild_s"] > 0 and size["full_rebuild_rss_mib"] > 0
        assert len(size["load_s"]) == 3 and size["load_events"] == 10_000
        assert size["report_s"] > 0
    assert warehouse["load_growth"] == round(
        warehouse["sizes"]["40000"]["load_median_s"] / warehouse["sizes"]["20000"]["load_median_s"],
        2,
    )
    assert "10k-event load (median)" in result.stdout
    assert figures["rss_peak_mib"]["stream_worker"] > 0
    soak = figures["soak"]  # 12 s at 500 events/s over 2 days of event time
    assert (soak["events_sent"], soak["event_days"]) == (6000, 2)
    assert len(soak["rss_mib"]) >= 2 and all(rss > 0 for _, rss in soak["rss_mib"])
    assert soak["growth_after_half"] == round(
        soak["rss_mib_max_after_half"] / soak["rss_mib_at_half"] - 1, 3
    )
    assert "ratio" in result.stdout and "event → KPI latency" in result.stdout
    assert "soak, 0.2 min at 500/s over 2 days of event time" in result.stdout
    # The run's topics are gone (without --keep): repeated runs do not fill the broker's disk.
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        left = [name for name in admin.list_topics() if name.startswith("bench-")]
    finally:
        admin.close()
    assert left == []
    assert re.search(r"deleted the run's \d+ topics \(bench-", result.stderr)
