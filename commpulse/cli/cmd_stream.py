"""``commpulse stream`` and ``commpulse kpis``."""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Final, Literal

import orjson
import typer
from rich.table import Table

from commpulse.cli.console import err, out
from commpulse.cli.root import State, app, fail
from commpulse.streaming import latest_kpis, run_worker
from ingest.events import ChannelKind
from metrics.catalog import KPIS
from streams.records import KpiRecord


@app.command()
def stream(
    ctx: typer.Context,
    web_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Port of /kpis, /metrics and /healthz (0: none; default 6066)."
        ),
    ] = None,
) -> None:
    """Run a stream worker: rolling KPIs and idle alerts.

    Several workers with the same settings share the work (one consumer group).
    KPI window updates go to the kpis topic, idle-channel alerts to the alerts
    topic (and to Alertmanager or a webhook when configured).
    """
    settings = ctx.ensure_object(State).settings()
    run_worker(settings, web_port=web_port, on_ready=lambda line: out.print(line, markup=False))


@app.command()
def kpis(
    ctx: typer.Context,
    channel: Annotated[str | None, typer.Option(help="Show this channel's KPIs.")] = None,
    kind: Annotated[
        ChannelKind | None, typer.Option(help="Show the channels of this kind.")
    ] = None,
    granularity: Annotated[Literal["day", "hour"], typer.Option(help="Window size.")] = "day",
    format_: Annotated[
        Literal["table", "csv", "json"],
        typer.Option(
            "--format",
            help="table: for people; csv and json: every field, numbers unformatted "
            "(value in seconds or as a ratio), for scripts.",
        ),
    ] = "table",
) -> None:
    """Print the current KPI values.

    Without options: one row per KPI and channel kind (and scope), for the latest
    window. Values come from the kpis topic, so no worker needs to be running.
    """
    settings = ctx.ensure_object(State).settings()
    records = [r for r in latest_kpis(settings) if r.granularity == granularity]
    if channel is not None:
        records = [r for r in records if r.channel_id == channel]
    elif kind is not None:
        records = [r for r in records if r.channel_kind == kind.value]
    else:
        records = [r for r in records if r.channel_id is None]
    current: dict[tuple[str, str], KpiRecord] = {}
    for record in records:
        key = (record.subject, record.kpi)
        if key not in current or record.window_start > current[key].window_start:
            current[key] = record
    if not current:
        what = f"channel {channel}" if channel else f"kind {kind.value}" if kind else "any kind"
        fail(
            f"no {granularity} KPI values for {what} in {settings.topics.kpis} yet; is a stream worker running?"
        )
    order = list(KPIS)
    rows = [
        record
        for _, record in sorted(
            current.items(), key=lambda item: (item[0][0], order.index(item[0][1]))
        )
    ]
    if format_ != "table":
        _print_records(rows, format_)
        return
    table = Table(
        "subject",
        "kpi",
        "window",
        "value",
        "numerator",
        "denominator",
        "final",
        box=None,
        pad_edge=False,
    )
    for record in rows:
        table.add_row(
            record.subject,
            record.kpi,
            record.window_start.strftime("%Y-%m-%d %H:%M" if granularity == "hour" else "%Y-%m-%d"),
            _show(record.kpi, record.value),
            _number(record.numerator),
            _number(record.denominator),
            "yes" if record.final else "",
        )
    out.print(table)
    err.print(f"{len(current)} values, latest {granularity} window of each", markup=False)


#: the fields printed as ISO 8601 times
_TIMES: Final = ("window_start", "window_end", "emitted_at")
#: the fields ``--format csv|json`` prints, in order
_FIELDS: Final = (
    "subject", "channel_id", "channel_kind", "scope", "kpi", "granularity", "window_start",
    "window_end", "value", "numerator", "denominator", "final", "emitted_at",
)  # fmt: skip


def _print_records(records: list[KpiRecord], format_: Literal["csv", "json"]) -> None:
    """``records`` in full on stdout, as CSV (a header, then a line each) or a JSON array."""
    rows = [
        {name: getattr(record, name) for name in _FIELDS}
        | {name: getattr(record, name).isoformat() for name in _TIMES}
        for record in records
    ]
    if format_ == "json":
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "final": "true" if row["final"] else "false"} for row in rows)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _show(name: str, value: float | None) -> str:
    if value is None:
        return "—"
    unit = KPIS[name].unit
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "seconds":
        return _duration(value)
    if unit == "score":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
