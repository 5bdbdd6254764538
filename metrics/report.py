"""The quarterly report: one self-contained HTML page and its data as CSV files.

:func:`write_report` reads a quarter's evaluation from an open warehouse
connection and writes, into one directory::

    report-2026Q3.html       summary, charts, channels needing attention, worst SLA
                             breaches, KPIs against targets per channel kind and channel
    evaluation-2026Q3.csv    the metrics.quarterly_evaluation rows of the quarter
    breaches-2026Q3.csv      every breached request opened in the quarter, worst first
    idle-2026Q3.csv          the idle (not archived) channels

Each file is written to a temporary name and renamed into place, so a reader
never sees half a file. A malformed quarter or one without evaluation rows
raises :class:`ReportError` (a :class:`~ingest.errors.CommpulseError`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb

from metrics.report_data import (
    BREACH_QUERY,
    EVALUATION_COLUMNS,
    IdleChannel,
    ReportData,
    ReportError,
    channel_summaries,
    load_report_data,
    low_efficiency,
    parse_quarter,
)
from metrics.report_html import TOP_BREACHES, render_page

__all__ = ["ReportError", "ReportResult", "parse_quarter", "write_report"]

log = logging.getLogger(__name__)

_BREACH_COLUMNS = (
    "channel_id",
    "channel_name",
    "channel_kind",
    "conversation_id",
    "request_type",
    "category",
    "opened_at",
    "deadline_at",
    "sla_target_s",
    "first_response_at",
    "first_response_s",
    "late_by_s",
)
_IDLE_COLUMNS = (
    "channel_id",
    "channel_name",
    "channel_kind",
    "scope",
    "last_activity_at",
    "idle_threshold_s",
    "idle_for_business_s",
    "as_of",
)


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Where the report went and what it counted."""

    quarter: str
    html: Path
    evaluation_csv: Path
    breaches_csv: Path
    idle_csv: Path
    channels: int
    kpi_rows: int
    targets_met: int
    targets_evaluated: int
    breaches: int
    idle: int
    low_efficiency: int

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.html, self.evaluation_csv, self.breaches_csv, self.idle_csv)


def write_report(
    con: duckdb.DuckDBPyConnection,
    quarter: str,
    out_dir: Path,
    *,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> ReportResult:
    """Write the report of ``quarter`` (``"2026Q3"``) and its CSV files into ``out_dir``.

    The quarter runs midnight to midnight in ``timezone``, which is also the
    time zone of every time shown. ``now`` is the generation time on the page.
    """
    parsed = parse_quarter(quarter)
    data = load_report_data(
        con, parsed, timezone=timezone, now=now or datetime.now(UTC), worst=TOP_BREACHES
    )
    page = render_page(data)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report directory {out_dir}: {exc}") from exc
    q = str(parsed)
    html = _write(out_dir / f"report-{q}.html", page)
    evaluation = _write(
        out_dir / f"evaluation-{q}.csv",
        _csv(EVALUATION_COLUMNS, (row.csv_values() for row in data.rows)),
    )
    breaches = _copy_breaches(con, data, out_dir / f"breaches-{q}.csv")
    idle = _write(out_dir / f"idle-{q}.csv", _csv(_IDLE_COLUMNS, map(_idle_values, data.idle)))
    summaries = channel_summaries(data.rows)
    result = ReportResult(
        quarter=q,
        html=html,
        evaluation_csv=evaluation,
        breaches_csv=breaches,
        idle_csv=idle,
        channels=len(summaries),
        kpi_rows=len(data.rows),
        targets_met=sum(s.met for s in summaries),
        targets_evaluated=sum(s.evaluated for s in summaries),
        breaches=data.breach_count,
        idle=len(data.idle),
        low_efficiency=len(low_efficiency(summaries)),
    )
    log.info(
        "report written quarter=%s channels=%d rows=%d breaches=%d idle=%d dir=%s",
        q,
        result.channels,
        result.kpi_rows,
        result.breaches,
        result.idle,
        out_dir,
    )
    return result


def _copy_breaches(con: duckdb.DuckDBPyConnection, data: ReportData, path: Path) -> Path:
    """Every breach of the quarter as CSV, written by DuckDB (a quarter can have hundreds of
    thousands), with the cells :func:`_cell` would write: ISO 8601 UTC times, empty NULLs."""
    start, end, as_of = (_timestamp(value) for value in data.breach_window)
    query = BREACH_QUERY.replace("$1", start).replace("$2", end).replace("$3", as_of)
    cells = ", ".join(
        f"{_iso('b.' + source)} AS {name}" if source in _BREACH_TIMES else f"b.{source} AS {name}"
        for source, name in zip(_BREACH_SOURCES, _BREACH_COLUMNS, strict=True)
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        con.execute(
            f"COPY (SELECT {cells} FROM ({query}) b) TO '{_quoted(temporary)}' (FORMAT CSV, HEADER)"
        )
        temporary.chmod(0o644)
        os.replace(temporary, path)
    except (OSError, duckdb.Error) as exc:
        temporary.unlink(missing_ok=True)
        raise ReportError(f"cannot write {path}: {exc}") from exc
    return path


#: The columns of :data:`BREACH_QUERY`, in the order of :data:`_BREACH_COLUMNS`, and its times.
_BREACH_SOURCES: Final = (
    "channel_id", "name", "channel_kind", "conversation_id", "request_type", "category",
    "opened_at", "deadline_at", "sla_target_s", "first_response_at", "first_response_s",
    "late_by_s",
)  # fmt: skip
_BREACH_TIMES: Final = frozenset({"opened_at", "deadline_at", "first_response_at"})


def _iso(column: str) -> str:
    """SQL for a TIMESTAMPTZ as ``datetime.isoformat()`` in UTC writes it."""
    micros = f"((epoch_us({column}) % 1000000 + 1000000) % 1000000)"
    return (
        f"strftime(timezone('UTC', {column}), '%Y-%m-%dT%H:%M:%S') "
        f"|| CASE WHEN {micros} = 0 THEN '' ELSE '.' || lpad(CAST({micros} AS VARCHAR), 6, '0') END "
        "|| '+00:00'"
    )


def _timestamp(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat()}'"


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _idle_values(c: IdleChannel) -> tuple[Any, ...]:
    return (
        c.channel_id,
        c.name,
        c.channel_kind,
        c.scope,
        c.last_activity_at,
        c.idle_threshold_s,
        c.idle_for_business_s,
        c.as_of,
    )


def _cell(value: Any) -> Any:
    """CSV text for a value: empty for NULL, ISO 8601 in UTC for times, true/false for flags."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_cell(value) for value in row] for row in rows)
    return buffer.getvalue()


def _write(path: Path, text: str) -> Path:
    """Write ``text`` next to ``path`` under a temporary name, then rename it into place."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        temporary = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.chmod(0o644)  # mkstemp makes it private; a report is meant to be shared
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc}") from exc
    return path
