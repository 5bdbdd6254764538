"""The events suite: ingest batches, and ``raw.events`` in the warehouse.

The same checks run on a batch the sink is about to load (the quality gate)
and on every stored event. Events reach the sink already decoded into the v1
model, so the enum and required-field checks restate ``ingest/events.py`` as
a second line of defence (a writer past the sink, an upcaster bug); what the
model cannot know is checked only here: event times ahead of the load time,
and one event id carrying two different events.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Final

from ingest.events import (
    COMMON_FIELDS,
    REQUIRED_FIELDS,
    ActorRole,
    ChannelKind,
    Decision,
    EventType,
    RequestCategory,
    Scope,
    Visibility,
)
from quality.checks import (
    Check,
    Frame,
    Suite,
    When,
    between,
    in_set,
    not_null,
    unique,
)
from quality.validation import PandasFrame

if TYPE_CHECKING:
    import polars as pl

__all__ = ["NAME", "TRANSPORT_COLUMNS", "batch_frame", "events_suite"]

NAME: Final = "events"
FRAME: Final = "events"
#: Where a record sat in Kafka: not part of the event.
TRANSPORT_COLUMNS: Final = ("topic", "partition", "offset")
_MAX_DURATION_S: Final = 31 * 24 * 3600.0

_SQL: Final = """
SELECT CAST(event_id AS VARCHAR) AS event_id, schema_version, event_type, occurred_at,
       channel_id, channel_kind, scope, actor_id, actor_role, conversation_id, message_id,
       in_reply_to, recipient_count, duration_s, planned_duration_s, score, decision, category,
       visibility, department, epoch(occurred_at) - epoch(loaded_at) AS ahead_s
FROM raw.events
"""
_ENUMS: Final = (
    ("event_type", EventType),
    ("channel_kind", ChannelKind),
    ("scope", Scope),
    ("actor_role", ActorRole),
    ("decision", Decision),
    ("category", RequestCategory),
    ("visibility", Visibility),
)


def _required() -> list[Check]:
    """One check per type-specific field: present on every event type that needs it."""
    needs: dict[str, list[str]] = defaultdict(list)
    for event_type, names in REQUIRED_FIELDS.items():
        for name in names:
            needs[name].append(event_type.value)
    return [
        not_null(
            FRAME,
            name,
            name=f"{name}_present_where_required",
            when=When("event_type", tuple(types)),
        )
        for name, types in needs.items()
    ]


def events_suite(future_tolerance_s: float = 86_400.0) -> Suite:
    """The checks; ``ahead_s`` (event time minus load time) may reach ``future_tolerance_s``."""
    checks = [
        *(not_null(FRAME, column) for column in COMMON_FIELDS),
        unique(FRAME, "event_id"),
        in_set(FRAME, "schema_version", [1]),
        *(in_set(FRAME, column, (member.value for member in enum)) for column, enum in _ENUMS),
        *_required(),
        between(FRAME, "score", 1, 5, name="score_1_to_5"),
        between(FRAME, "recipient_count", 0, name="recipient_count_non_negative"),
        between(FRAME, "ahead_s", high=future_tolerance_s, name="occurred_at_not_in_future"),
        between(
            FRAME, "duration_s", 0, _MAX_DURATION_S, name="duration_s_plausible", critical=False
        ),
        between(
            FRAME,
            "planned_duration_s",
            0,
            _MAX_DURATION_S,
            name="planned_duration_s_plausible",
            critical=False,
        ),
        Check(
            "message_sent_once",
            FRAME,
            "ExpectCompoundColumnsToBeUnique",
            ("channel_id", "message_id"),
            False,
            {"column_list": ["channel_id", "message_id"]},
            When("event_type", (EventType.MESSAGE_SENT.value,)),
        ),
    ]
    return Suite(
        NAME,
        "ingest batches and raw.events: ids, enums, required fields, no future times",
        (Frame(FRAME, _SQL, ("event_id",)),),
        tuple(checks),
    )


def batch_frame(batch: pl.DataFrame, now: datetime) -> PandasFrame:
    """A batch of decoded rows (``occurred_at`` in epoch seconds) as the suite's frame.

    Exact repeats of an event (a producer retry: the same id, the same fields) are
    dropped first, as the sink stores them once; what is left must have unique ids.
    ``ahead_s`` measures each event time against ``now``, the load time.
    """
    import polars as pl

    fields = [column for column in batch.columns if column not in TRANSPORT_COLUMNS]
    frame = batch.unique(subset=fields, keep="first", maintain_order=True).select(
        *(column for column in fields if column != "occurred_at"),
        pl.from_epoch(
            (pl.col("occurred_at") * 1_000_000).round().cast(pl.Int64), time_unit="us"
        ).alias("occurred_at"),  # naive UTC, as the warehouse frames have it
        (pl.col("occurred_at") - now.timestamp()).alias("ahead_s"),
    )
    return frame.to_pandas()
