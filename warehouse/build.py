"""Build the core and metrics tables from ``raw.events``: in full, or what a load brings.

Everything here is derived: ``raw.events`` is the warehouse's own copy of the
log. A build is set-based SQL (:mod:`warehouse.facts`, :mod:`warehouse.kpis`)
and, by default, **incremental**: it reads the events loaded since the last
build (``ops.builds.loaded_through``) and recomputes only the requests,
messages, channel days and KPI cells they reach, so its cost follows what
came, not what the history holds. A **full** build recomputes everything: the
first build, ``--full``, a replay, and a build under a new configuration.
Both give the same tables (tests/unit/warehouse/test_incremental.py loads the
same events in random increments and compares).

The **configuration** a build used (the channel catalog's content, the
reporting time zone, the version of the rules) is recorded in ``ops.builds``.
A later build under another one refuses with :class:`ConfigurationChanged`
(one line naming what changed), unless ``reconfigure``, which rebuilds
everything under the new one: facts computed under two configurations would
mix silently otherwise.

Readers see either the previous build or the new one, never a mix: a build is
one transaction (or part of the caller's, with ``in_transaction``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final, Literal

import duckdb
import orjson

from metrics.calendar_table import PeriodRange
from metrics.channels import ChannelCatalog
from warehouse.calendars import refresh_calendar_days, refresh_periods
from warehouse.facts import SRC_COLUMNS, FactBuild, NeedsFullBuild
from warehouse.kpis import refresh_health, refresh_kpis
from warehouse.schema import WarehouseError, scalar

__all__ = [
    "RULES_VERSION",
    "BuildConfig",
    "BuildResult",
    "ConfigurationChanged",
    "build",
    "check_configuration",
]

log = logging.getLogger(__name__)

#: The version of the fact rules (metrics/requests.py, messages.py, rules_sql.py, sql.py):
#: raised when a definition changes, so warehouses built by the old rules are rebuilt.
RULES_VERSION: Final = 2

Mode = Literal["full", "incremental"]
#: A build is done in full when it brings more events than this, and more than this share
#: of all the events: the incremental statements are made for a load's few days and
#: conversations (active users join each activity to the report days it reaches), and a
#: delta that spans much of the history is cheaper to build from scratch. Both give the
#: same tables, so this only chooses the cheaper way (a judgement, not a measured optimum).
_FULL_ABOVE: Final = 200_000
_FULL_SHARE: Final = 0.25


class ConfigurationChanged(WarehouseError):
    """The warehouse was built under another configuration; rebuild with ``--reconfigure``."""


@dataclass(frozen=True)
class BuildConfig:
    """What a build's facts depend on besides the events."""

    catalog: str  # the catalog's content as canonical JSON
    catalog_source: str
    timezone: str
    rules_version: int = RULES_VERSION

    @classmethod
    def of(cls, catalog: ChannelCatalog, timezone: str) -> BuildConfig:
        return cls(catalog.fingerprint(), catalog.source, timezone)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "catalog": orjson.loads(self.catalog),
                "catalog_source": self.catalog_source,
                "timezone": self.timezone,
                "rules_version": self.rules_version,
            },
            option=orjson.OPT_SORT_KEYS,
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> BuildConfig:
        data = orjson.loads(text)
        return cls(
            orjson.dumps(data["catalog"]).decode(),
            data["catalog_source"],
            data["timezone"],
            data["rules_version"],
        )

    def changes_from(self, before: BuildConfig) -> list[str]:
        """What differs from ``before``, in words (empty: the same facts)."""
        changes = []
        if self.timezone != before.timezone:
            changes.append(f"the reporting time zone ({before.timezone} -> {self.timezone})")
        if orjson.loads(self.catalog) != orjson.loads(before.catalog):
            changes.append(
                f"the channel catalog ({before.catalog_source} -> {self.catalog_source}, "
                "content differs)"
            )
        if self.rules_version != before.rules_version:
            changes.append(
                f"the KPI rules (version {before.rules_version} -> {self.rules_version})"
            )
        return changes


@dataclass(frozen=True)
class BuildResult:
    events: int
    requests: int
    messages: int
    kpi_rows: int
    as_of: datetime
    seconds: float
    mode: Mode = "full"
    #: events of this build's increment (all of them for a full build)
    loaded: int = 0


@dataclass(frozen=True)
class _Previous:
    loaded_through: datetime | None
    config: BuildConfig | None
    periods: PeriodRange | None


def _previous(con: duckdb.DuckDBPyConnection) -> _Previous | None:
    row = con.execute(
        "SELECT loaded_through, config, periods_from, periods_to FROM ops.build_state"
    ).fetchone()
    if row is None:
        return None
    through, config, first, last = row
    periods = (
        PeriodRange(first, last) if isinstance(first, date) and isinstance(last, date) else None
    )
    return _Previous(through, BuildConfig.from_json(config) if config else None, periods)


def check_configuration(
    con: duckdb.DuckDBPyConnection, catalog: ChannelCatalog, timezone: str
) -> None:
    """Raise :class:`ConfigurationChanged` if the warehouse's last build used another
    configuration (nothing to compare with: fine)."""
    previous = _previous(con)
    if previous is None or previous.config is None:
        return
    changes = BuildConfig.of(catalog, timezone).changes_from(previous.config)
    if changes:
        raise ConfigurationChanged(
            "the warehouse was built with another configuration: "
            + "; ".join(changes)
            + " changed. Give the configuration it was built with, or rebuild it under this "
            "one with --reconfigure"
        )


def build(
    con: duckdb.DuckDBPyConnection,
    catalog: ChannelCatalog,
    timezone: str = "UTC",
    now: datetime | None = None,
    *,
    full: bool = False,
    reconfigure: bool = False,
    in_transaction: bool = False,
) -> BuildResult:
    """Bring the core and metrics tables up to ``raw.events`` (see the module docstring).

    SLA statuses are judged as of the later of ``now`` (default: the clock) and the
    latest event. Raises :class:`ConfigurationChanged` when the warehouse was built
    under another configuration and ``reconfigure`` is not set.
    """
    started = time.monotonic()
    config = BuildConfig.of(catalog, timezone)
    previous = _previous(con)
    if previous is not None and previous.config is not None:
        if not reconfigure:
            check_configuration(con, catalog, timezone)
        full = full or bool(config.changes_from(previous.config))
    if previous is None or previous.loaded_through is None or previous.config is None:
        full = True
    if not in_transaction:
        con.execute("BEGIN TRANSACTION")
    try:
        _drop_scratch(con)
        result = _build(con, catalog, timezone, now, config, previous, full=full, started=started)
        _drop_scratch(con)
        if not in_transaction:
            con.execute("COMMIT")
    except BaseException:
        if not in_transaction:
            con.execute("ROLLBACK")
        raise
    result = BuildResult(**{**result.__dict__, "seconds": time.monotonic() - started})
    log.info(
        "warehouse built mode=%s events=%s loaded=%s seconds=%.2f",
        result.mode, result.events, result.loaded, result.seconds,
    )  # fmt: skip
    return result


def _drop_scratch(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the build's temporary tables and views (all named ``_cp_...``)."""
    found = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_catalog = 'temp' AND table_name LIKE '\\_cp\\_%' ESCAPE '\\'"
    ).fetchall()
    for name, kind in found:
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS temp.main.{name}")


def _build(
    con: duckdb.DuckDBPyConnection,
    catalog: ChannelCatalog,
    timezone: str,
    now: datetime | None,
    config: BuildConfig,
    previous: _Previous | None,
    *,
    full: bool,
    started: float,
) -> BuildResult:
    through = scalar(con, "SELECT max(loaded_at) FROM raw.events")
    clock = (now or datetime.now(UTC)).timestamp()
    if not full:
        assert previous is not None and previous.loaded_through is not None
        new, total = con.execute(  # ops.loads: one row per batch, so this reads no events
            "SELECT (SELECT coalesce(sum(stored), 0) FROM ops.loads WHERE loaded_at > ?), "
            "(SELECT count(*) FROM raw.events)",
            [previous.loaded_through],
        ).fetchone() or (0, 0)
        # Both are exact; a full build is the cheaper one for a delta this large.
        full = new > max(_FULL_ABOVE, _FULL_SHARE * total)
    if not full:
        assert previous is not None and previous.loaded_through is not None
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _cp_delta AS SELECT {SRC_COLUMNS} FROM raw.events "
            "WHERE loaded_at > ?",
            [previous.loaded_through],
        )
        loaded = int(scalar(con, "SELECT count(*) FROM _cp_delta"))
        first, latest = con.execute(
            "SELECT least((SELECT min(epoch(first_event_at)) FROM core.channels), "
            "(SELECT min(t) FROM _cp_delta)), "
            "greatest((SELECT max(epoch(last_activity_at)) FROM core.channels), "
            "(SELECT max(t) FROM _cp_delta))"
        ).fetchone() or (None, None)
    else:
        loaded = int(scalar(con, "SELECT count(*) FROM raw.events"))
        first, latest = con.execute(
            "SELECT min(epoch(occurred_at)), max(epoch(occurred_at)) FROM raw.events"
        ).fetchone() or (None, None)
    as_of = clock if latest is None else max(latest, clock)
    periods = previous.periods if previous is not None and not full else None
    if first is not None:
        periods = refresh_periods(con, catalog, first, max(latest, as_of), periods)
    mode: Mode = "full" if full else "incremental"
    facts = FactBuild(con, catalog, timezone, as_of)
    if full:
        facts.full()
    else:
        try:
            facts.incremental()
        except NeedsFullBuild as why:
            log.info("warehouse build in full: %s", why)
            mode = "full"
            _drop_scratch(con)  # the increment's tables; nothing else was changed yet
            facts.full()
    refresh_kpis(con, timezone, full=mode == "full")
    as_of_at = datetime.fromtimestamp(as_of, UTC)
    refresh_calendar_days(con, catalog, first, as_of, full=mode == "full")
    refresh_health(con, catalog, as_of_at)
    counts = con.execute(
        "SELECT (SELECT count(*) FROM raw.events), (SELECT count(*) FROM core.requests), "
        "(SELECT count(*) FROM core.messages), (SELECT count(*) FROM metrics.kpi_daily)"
    ).fetchone()
    assert counts is not None
    changed = previous is None or previous.config is None or previous.config.digest != config.digest
    span = (periods.first, periods.last) if periods else (None, None)
    # The log has a row per build (a live sink builds every batch): the configuration is
    # written into it only when it changed; ops.build_state holds the current one.
    con.execute(
        "INSERT INTO ops.builds (built_at, events, as_of, seconds, mode, loaded_through, "
        "config_hash, config, periods_from, periods_to) VALUES (now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            counts[0], as_of_at, time.monotonic() - started, mode, through, config.digest,
            config.to_json() if changed else None, *span,
        ],
    )  # fmt: skip
    con.execute("DELETE FROM ops.build_state")
    con.execute(
        "INSERT INTO ops.build_state VALUES (now(), ?, ?, ?, ?, ?)",
        [through, config.digest, config.to_json(), *span],
    )

    return BuildResult(
        int(counts[0]), int(counts[1]), int(counts[2]), int(counts[3]), as_of_at, 0.0, mode, loaded
    )
