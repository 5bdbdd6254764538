"""``commpulse bench``: every stage's throughput against its baseline, in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from commpulse.benchmark import run_bench
from commpulse.cli.console import err, number, out
from commpulse.cli.root import EXIT_USAGE, State, app, fail


@app.command()
def bench(
    ctx: typer.Context,
    events: Annotated[
        int, typer.Option("--events", "-n", min=1000, help="Events through every stage.")
    ] = 200_000,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results here.")] = None,
    history: Annotated[
        str,
        typer.Option(
            help="Warehouse history sizes (events), comma-separated: at each, a full rebuild, "
            "10,000-event loads and the report; '' skips it."
        ),
    ] = "1000000,3000000,10000000",
    soak: Annotated[
        float,
        typer.Option(
            min=0,
            help="Also feed a stream worker steadily for this many minutes and watch its "
            "memory (10 for the documented run); 0 skips it.",
        ),
    ] = 0.0,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Keep the run's topics and working directory; by default they are deleted "
            "at the end (the directory is kept after a failure).",
        ),
    ] = False,
) -> None:
    """Measure throughput, latency and memory of every stage.

    Baselines run in the same run on the same broker (raw produce; raw consume
    and decode with aiokafka and kafka-python); each stage is shown with its
    ratio to its baseline. See docs/performance.md.
    """
    settings = ctx.ensure_object(State).settings()
    try:
        sizes = tuple(int(s) for s in history.split(",") if s.strip())
    except ValueError:
        fail(f"--history takes event counts separated by commas, not {history!r}", code=EXIT_USAGE)
    result = run_bench(
        settings,
        events=events,
        history_sizes=sizes,
        soak_minutes=soak,
        keep=keep,
        on_stage=lambda text: err.print(f"[bold]›[/] {text}"),
    )
    _show(result)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        out.print(f"wrote {json_out}", markup=False)


def _show(result: dict[str, Any]) -> None:
    rates, ratios = result["rates"], result["ratios"]
    table = Table("stage", "events/s", "ratio", "baseline", "target", box=None, pad_edge=False)
    table.add_row("raw produce (kafka-python)", number(rates["raw_produce"]), "", "", "")
    table.add_row("raw consume (aiokafka)", number(rates["raw_consume_aiokafka"]), "", "", "")
    table.add_row(
        "raw consume (kafka-python)", number(rates["raw_consume_kafka_python"]), "", "", ""
    )
    for stage, ratio, baseline in (
        ("ingest", "ingest_vs_produce", "raw produce"),
        ("sink", "sink_vs_consume", "aiokafka"),
        ("stream", "stream_vs_consume", "aiokafka"),
    ):
        target = result["targets"][ratio]
        mark = "✓" if ratios[ratio] >= target else "✗"
        table.add_row(
            stage, number(rates[stage]), f"{ratios[ratio]:.3f} {mark}", baseline, f"≥ {target}"
        )
    out.print(table)
    rounds = result["sink_rounds"]
    out.print(
        f"sink: the median of {len(rounds)} runs, each against an aiokafka baseline of its own: "
        + ", ".join(
            f"{number(entry['sink'])}/s against {number(entry['raw_consume_aiokafka'])}/s "
            f"({entry['ratio']:.3f})"
            for entry in rounds
        ),
        markup=False,
    )
    latency = result["latency_s"]
    out.print(
        f"event → KPI latency at {number(latency['rate_per_s'])}/s: p50 {_s(latency['p50'])}, "
        f"p99 {_s(latency['p99'])} ({latency['seen']} of {latency['probes']} probes seen)",
        markup=False,
    )
    out.print(
        f"stream worker: {number(result['stream_events_per_cpu_s'])} events per CPU second "
        "(steadier than events/s on a shared machine)",
        markup=False,
    )
    for key, value in sorted(result["seconds"].items()):
        out.print(f"{key}: {value} s", markup=False)
    if result.get("warehouse"):
        _show_warehouse(result["warehouse"], result["targets"])
    for key, value in result["rss_peak_mib"].items():
        out.print(f"peak RSS {key}: {value} MiB", markup=False)
    if "soak" in result:
        soak = result["soak"]
        flat = soak["growth_after_half"] <= result["targets"]["soak_growth_after_half"]
        out.print(
            f"soak, {soak['minutes']:g} min at {number(soak['rate_per_s'])}/s over "
            f"{soak['event_days']} days of event time: worker RSS {soak['rss_mib_at_half']} MiB "
            f"at half time, at most {soak['rss_mib_max_after_half']} MiB after "
            f"({soak['growth_after_half']:+.1%}, flat: {'✓' if flat else '✗'})",
            markup=False,
        )


def _show_warehouse(figures: dict[str, Any], targets: dict[str, float]) -> None:
    table = Table(
        "history (events)", "full rebuild", "peak RSS", "10k-event load (median)", "report",
        box=None, pad_edge=False,
    )  # fmt: skip
    for size, f in figures["sizes"].items():
        table.add_row(
            number(int(size)),
            f"{f['full_rebuild_s']:.1f} s",
            f"{f['full_rebuild_rss_mib']:,.0f} MiB",
            f"{f['load_median_s']:.3f} s  ({', '.join(f'{s:.3f}' for s in f['load_s'])})",
            f"{f['report_s']:.2f} s",
        )
    out.print(table)
    out.print(
        f"a load at the largest history costs {figures['load_growth']:.2f} times the load at "
        f"the smallest; targets at 10M: load < {targets['warehouse_load_10m_s']:g} s, report "
        f"< {targets['warehouse_report_10m_s']:g} s, full rebuild "
        f"< {targets['warehouse_full_rebuild_10m_s']:g} s in < "
        f"{targets['warehouse_full_rebuild_rss_mib'] / 1024:g} GiB",
        markup=False,
    )


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"
