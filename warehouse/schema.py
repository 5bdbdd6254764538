"""The warehouse schema, as numbered migrations, and opening a warehouse file.

``ops.schema_version`` records every migration applied; :func:`open_warehouse`
applies the missing ones in order, each in its own transaction, so opening a
file written by an older commpulse upgrades it. A file newer than this code is
refused rather than guessed at. docs/warehouse.md is the contract for the
tables made here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb

from ingest.errors import CommpulseError

__all__ = [
    "MIGRATIONS",
    "LockConflict",
    "Migration",
    "WarehouseError",
    "lock_conflict",
    "migrate",
    "open_warehouse",
    "scalar",
    "version_of",
]

log = logging.getLogger(__name__)


class WarehouseError(CommpulseError):
    """The warehouse file cannot be used (newer schema, locked, not a DuckDB file)."""


@dataclass(frozen=True, slots=True)
class LockConflict:
    """Another process holds a DuckDB file's write lock (a running sink, say)."""

    #: its process id, when DuckDB said it
    pid: int | None

    @property
    def holder(self) -> str:
        return f"PID {self.pid}" if self.pid is not None else "another process"


def lock_conflict(exc: BaseException | None) -> LockConflict | None:
    """The lock conflict ``exc`` is DuckDB's refusal of, or None for any other error."""
    if not isinstance(exc, duckdb.IOException) or "lock" not in str(exc).lower():
        return None
    pid = re.search(r"PID (\d+)", str(exc))
    return LockConflict(int(pid.group(1)) if pid else None)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


_RAW_EVENTS: Final = """
CREATE TABLE raw.events (
    event_id           UUID PRIMARY KEY,
    schema_version     SMALLINT NOT NULL,
    event_type         VARCHAR NOT NULL,
    occurred_at        TIMESTAMPTZ NOT NULL,
    channel_id         VARCHAR NOT NULL,
    channel_kind       VARCHAR NOT NULL,
    scope              VARCHAR NOT NULL,
    actor_id           VARCHAR NOT NULL,  -- pseudonymised at ingest
    actor_role         VARCHAR NOT NULL,
    conversation_id    VARCHAR,
    message_id         VARCHAR,
    in_reply_to        VARCHAR,
    recipient_count    INTEGER,
    duration_s         DOUBLE,
    planned_duration_s DOUBLE,
    score              SMALLINT,
    decision           VARCHAR,
    category           VARCHAR,
    visibility         VARCHAR,
    department         VARCHAR,
    topic              VARCHAR NOT NULL,
    "partition"        INTEGER NOT NULL,
    "offset"           BIGINT NOT NULL,
    loaded_at          TIMESTAMPTZ NOT NULL
);
"""

_CORE: Final = """
CREATE TABLE core.channels (
    channel_id        VARCHAR PRIMARY KEY,
    channel_kind      VARCHAR NOT NULL,
    scope             VARCHAR NOT NULL,
    name              VARCHAR,
    calendar          VARCHAR NOT NULL,
    idle_threshold_s  DOUBLE NOT NULL,     -- business seconds
    first_event_at    TIMESTAMPTZ,
    last_activity_at  TIMESTAMPTZ,
    archived_at       TIMESTAMPTZ,
    events            BIGINT NOT NULL
);
CREATE TABLE core.calendar (
    day         DATE NOT NULL,
    calendar    VARCHAR NOT NULL,
    timezone    VARCHAR NOT NULL,
    workday     BOOLEAN NOT NULL,
    holiday     BOOLEAN NOT NULL,
    makeup_day  BOOLEAN NOT NULL,
    business_s  DOUBLE NOT NULL,
    quarter     VARCHAR NOT NULL,
    PRIMARY KEY (day, calendar)
);
CREATE TABLE core.requests (
    channel_id                 VARCHAR NOT NULL,
    conversation_id            VARCHAR NOT NULL,
    request_type               VARCHAR NOT NULL,  -- ticket, call, message, post
    category                   VARCHAR,
    opened_at                  TIMESTAMPTZ NOT NULL,
    clock_start_at             TIMESTAMPTZ,
    deadline_at                TIMESTAMPTZ,
    sla_target_s               DOUBLE,
    first_response_at          TIMESTAMPTZ,
    first_response_s           DOUBLE,
    first_response_business_s  DOUBLE,
    sla_status                 VARCHAR NOT NULL,  -- met, breached, pending
    resolved_at                TIMESTAMPTZ,
    reopen_count               INTEGER NOT NULL,
    agent_reply_count          INTEGER NOT NULL,
    fcr                        BOOLEAN,
    PRIMARY KEY (channel_id, conversation_id)
);
CREATE TABLE core.messages (
    channel_id            VARCHAR NOT NULL,
    message_id            VARCHAR NOT NULL,
    sent_at               TIMESTAMPTZ NOT NULL,
    sender                VARCHAR NOT NULL,  -- pseudonymised
    recipients            INTEGER,
    readers               INTEGER NOT NULL,
    first_read_at         TIMESTAMPTZ,
    bounced               BOOLEAN NOT NULL,
    misdelivered          BOOLEAN NOT NULL,
    counts_for_read_rate  BOOLEAN NOT NULL,
    PRIMARY KEY (channel_id, message_id)
);
CREATE TABLE core.meetings (
    channel_id          VARCHAR NOT NULL,
    held_at             TIMESTAMPTZ NOT NULL,
    duration_s          DOUBLE NOT NULL,
    planned_duration_s  DOUBLE,
    overrun             BOOLEAN
);
CREATE TABLE core.surveys (
    channel_id   VARCHAR NOT NULL,
    answered_at  TIMESTAMPTZ NOT NULL,
    score        SMALLINT NOT NULL
);
CREATE TABLE core.activity (
    channel_id  VARCHAR NOT NULL,
    day         DATE NOT NULL,     -- in the reporting time zone
    actor_id    VARCHAR NOT NULL,  -- pseudonymised
    PRIMARY KEY (channel_id, day, actor_id)
);
CREATE VIEW core.reviews AS
SELECT channel_id, conversation_id AS post_id, opened_at AS submitted_at,
       first_response_at AS reviewed_at, first_response_s AS review_s,
       first_response_business_s AS review_business_s, sla_target_s, deadline_at, sla_status
FROM core.requests WHERE request_type = 'post';
"""

_METRICS: Final = """
CREATE TABLE metrics.kpi_daily (
    day           DATE NOT NULL,
    channel_id    VARCHAR,            -- NULL: the roll-up of every channel of the kind and scope
    channel_kind  VARCHAR NOT NULL,
    scope         VARCHAR NOT NULL,
    kpi           VARCHAR NOT NULL,
    value         DOUBLE,
    numerator     DOUBLE,
    denominator   DOUBLE
);
CREATE TABLE metrics.kpi_quarterly (
    quarter       VARCHAR NOT NULL,   -- '2026Q3'
    channel_id    VARCHAR,
    channel_kind  VARCHAR NOT NULL,
    scope         VARCHAR NOT NULL,
    kpi           VARCHAR NOT NULL,
    value         DOUBLE,
    numerator     DOUBLE,
    denominator   DOUBLE,
    target        DOUBLE,
    met           BOOLEAN
);
CREATE TABLE metrics.channel_health (
    channel_id           VARCHAR PRIMARY KEY,
    channel_kind         VARCHAR NOT NULL,
    scope                VARCHAR NOT NULL,
    last_activity_at     TIMESTAMPTZ,
    idle_threshold_s     DOUBLE NOT NULL,
    idle_for_business_s  DOUBLE,
    idle                 BOOLEAN NOT NULL,
    archived             BOOLEAN NOT NULL,
    as_of                TIMESTAMPTZ NOT NULL
);
CREATE TABLE metrics.quarterly_evaluation (
    quarter           VARCHAR NOT NULL,
    channel_id        VARCHAR,
    channel_kind      VARCHAR NOT NULL,
    scope             VARCHAR NOT NULL,
    kpi               VARCHAR NOT NULL,
    value             DOUBLE,
    target            DOUBLE,
    met               BOOLEAN,
    previous_value    DOUBLE,
    change            DOUBLE,
    grade             VARCHAR          -- the channel's grade for the quarter, A to D
);
CREATE TABLE ops.builds (
    built_at     TIMESTAMPTZ NOT NULL,
    events       BIGINT NOT NULL,
    as_of        TIMESTAMPTZ,
    seconds      DOUBLE NOT NULL
);
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "raw events with their Kafka position, the sink's offsets",
        "CREATE SCHEMA raw; CREATE SCHEMA core; CREATE SCHEMA metrics;"
        + _RAW_EVENTS
        + """
CREATE TABLE ops.offsets (
    topic        VARCHAR NOT NULL,
    "partition"  INTEGER NOT NULL,
    next_offset  BIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, "partition")
);
CREATE TABLE ops.loads (
    loaded_at   TIMESTAMPTZ NOT NULL,
    received    BIGINT NOT NULL,
    stored      BIGINT NOT NULL,
    duplicates  BIGINT NOT NULL,
    invalid     BIGINT NOT NULL
);
""",
    ),
    Migration(2, "core facts: channels, calendar, requests, messages, meetings, surveys", _CORE),
    Migration(3, "metrics: daily and quarterly KPIs, channel health, evaluation", _METRICS),
    Migration(
        4,
        "quality: runs and results of the expectation suites, the sink's quarantine",
        """
CREATE TABLE ops.quality_runs (
    run_id             UUID NOT NULL,
    suite              VARCHAR NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ NOT NULL,
    success            BOOLEAN NOT NULL,
    critical_failures  INTEGER NOT NULL,
    warnings           INTEGER NOT NULL,
    PRIMARY KEY (run_id, suite)
);
CREATE TABLE ops.quality_results (
    run_id            UUID NOT NULL,
    suite             VARCHAR NOT NULL,
    expectation       VARCHAR NOT NULL,
    columns           VARCHAR[] NOT NULL,
    critical          BOOLEAN NOT NULL,
    success           BOOLEAN NOT NULL,
    unexpected_count  BIGINT,
    sample            JSON,
    PRIMARY KEY (run_id, suite, expectation)
);
CREATE TABLE ops.quarantine (
    batch_id        UUID NOT NULL,
    quarantined_at  TIMESTAMPTZ NOT NULL,
    reason          VARCHAR NOT NULL,
    event_id        VARCHAR,
    payload         JSON NOT NULL,  -- the event as it was decoded, transport fields apart
    topic           VARCHAR NOT NULL,
    "partition"     INTEGER NOT NULL,
    "offset"        BIGINT NOT NULL
);
ALTER TABLE ops.loads ADD COLUMN quarantined BIGINT NOT NULL DEFAULT 0;
""",
    ),
    Migration(
        5,
        "channel health: the channel's name from the catalog",
        "ALTER TABLE metrics.channel_health ADD COLUMN name VARCHAR;",
    ),
    Migration(
        6,
        "set-based, incremental builds: working periods, channel days, build configuration; "
        "derived tables without keys (built again in full)",
        """
CREATE TABLE core.working_periods (
    calendar   VARCHAR NOT NULL,
    starts_at  TIMESTAMPTZ NOT NULL,
    ends_at    TIMESTAMPTZ NOT NULL,
    start_s    DOUBLE NOT NULL,   -- epoch seconds
    end_s      DOUBLE NOT NULL,
    before_s   DOUBLE NOT NULL,   -- business seconds from the table's first period to this one
    after_s    DOUBLE NOT NULL
);
CREATE TABLE core.channel_days (
    channel_id  VARCHAR NOT NULL,
    day         DATE NOT NULL,    -- in the reporting time zone
    events      BIGINT NOT NULL
);
-- The derived tables are unique by construction (tests/unit/warehouse); index upkeep made a
-- full build's commit 200 times slower at 10M events, so they are made again without keys.
DROP VIEW core.reviews;
DROP TABLE core.requests;
DROP TABLE core.messages;
DROP TABLE core.activity;
CREATE TABLE core.requests (
    channel_id                 VARCHAR NOT NULL,
    conversation_id            VARCHAR NOT NULL,
    request_type               VARCHAR NOT NULL,  -- ticket, call, message, post
    category                   VARCHAR,
    opened_at                  TIMESTAMPTZ NOT NULL,
    clock_start_at             TIMESTAMPTZ,
    deadline_at                TIMESTAMPTZ,
    sla_target_s               DOUBLE,
    first_response_at          TIMESTAMPTZ,
    first_response_s           DOUBLE,
    first_response_business_s  DOUBLE,
    sla_status                 VARCHAR NOT NULL,  -- met, breached, pending
    resolved_at                TIMESTAMPTZ,
    reopen_count               INTEGER NOT NULL,
    agent_reply_count          INTEGER NOT NULL,
    fcr                        BOOLEAN
);
CREATE TABLE core.messages (
    channel_id            VARCHAR NOT NULL,
    message_id            VARCHAR NOT NULL,
    sent_at               TIMESTAMPTZ NOT NULL,
    sender                VARCHAR NOT NULL,  -- pseudonymised
    recipients            INTEGER,
    readers               INTEGER NOT NULL,
    first_read_at         TIMESTAMPTZ,
    bounced               BOOLEAN NOT NULL,
    misdelivered          BOOLEAN NOT NULL,
    counts_for_read_rate  BOOLEAN NOT NULL
);
CREATE TABLE core.activity (
    channel_id  VARCHAR NOT NULL,
    day         DATE NOT NULL,     -- in the reporting time zone
    actor_id    VARCHAR NOT NULL   -- pseudonymised
);
CREATE VIEW core.reviews AS
SELECT channel_id, conversation_id AS post_id, opened_at AS submitted_at,
       first_response_at AS reviewed_at, first_response_s AS review_s,
       first_response_business_s AS review_business_s, sla_target_s, deadline_at, sla_status
FROM core.requests WHERE request_type = 'post';
CREATE TABLE ops.message_strays (
    channel_id  VARCHAR NOT NULL,
    message_id  VARCHAR NOT NULL,
    event_id    UUID NOT NULL,
    event_type  VARCHAR NOT NULL,
    t           DOUBLE NOT NULL,
    actor_id    VARCHAR NOT NULL
);
CREATE TABLE ops.build_state (  -- one row: where the last build left the derived tables
    built_at        TIMESTAMPTZ NOT NULL,
    loaded_through  TIMESTAMPTZ,        -- the last load it covers
    config_hash     VARCHAR NOT NULL,
    config          JSON NOT NULL,
    periods_from    DATE,
    periods_to      DATE
);
ALTER TABLE ops.builds ADD COLUMN mode VARCHAR;
ALTER TABLE ops.builds ADD COLUMN loaded_through TIMESTAMPTZ;
ALTER TABLE ops.builds ADD COLUMN config_hash VARCHAR;
ALTER TABLE ops.builds ADD COLUMN config JSON;
ALTER TABLE ops.builds ADD COLUMN periods_from DATE;
ALTER TABLE ops.builds ADD COLUMN periods_to DATE;
""",
    ),
)


def version_of(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of an open warehouse (0 for an empty file)."""
    found = scalar(
        con,
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'ops' AND table_name = 'schema_version'",
    )
    if not found:
        return 0
    return int(scalar(con, "SELECT coalesce(max(version), 0) FROM ops.schema_version"))


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The single value ``sql`` returns, with the result read to its end (DuckDB 2 insists)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the missing migrations in order; returns the versions applied."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(
        "CREATE TABLE IF NOT EXISTS ops.schema_version ("
        " version INTEGER PRIMARY KEY, description VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    current = version_of(con)
    latest = MIGRATIONS[-1].version
    if current > latest:
        raise WarehouseError(
            f"the warehouse has schema version {current}, newer than this commpulse knows "
            f"({latest}); upgrade commpulse"
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO ops.schema_version (version, description) VALUES (?, ?)",
                [migration.version, migration.description],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        log.info("warehouse migrated version=%s %s", migration.version, migration.description)
        applied.append(migration.version)
    return applied


def open_warehouse(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating and upgrading as needed) the warehouse at ``path``.

    Read-only opens do not migrate: they refuse a file whose schema is not current.
    """
    if read_only and not path.exists():
        raise WarehouseError(f"no warehouse at {path}: run `commpulse sink` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        raise WarehouseError(f"cannot open the warehouse {path}: {exc}") from exc
    try:
        con.execute("SET enable_progress_bar = false")  # commands print their own progress
        if read_only:
            found = version_of(con)
            if found != MIGRATIONS[-1].version:
                raise WarehouseError(
                    f"the warehouse {path} has schema version {found}, expected "
                    f"{MIGRATIONS[-1].version}: open it once with `commpulse sink` to upgrade it"
                )
        else:
            migrate(con)
    except BaseException:
        con.close()
        raise
    return con
