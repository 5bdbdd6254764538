"""The canonical channel event, schema version 1.

One frozen pydantic model for every event type; type-specific required fields
are data (:data:`REQUIRED_FIELDS`), checked by one validator.

Versioning: an additive change (a new optional field, a new event type, a new
enum member) keeps ``schema_version = 1``. A breaking change (renaming or
removing a field, changing its meaning or type) gets a new model and an
upcaster from the old version, pinned by a test. ``tests/unit/ingest/
test_events_shape.py`` pins the JSON shape of v1.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ACTOR_FIELDS",
    "COMMON_FIELDS",
    "JOIN_KEY_FIELDS",
    "PSEUDONYMISE",
    "REQUIRED_FIELDS",
    "SCHEMA_VERSION",
    "ActorRole",
    "ChannelKind",
    "Decision",
    "Event",
    "EventType",
    "RequestCategory",
    "Scope",
    "Visibility",
]

SCHEMA_VERSION: Final = 1


class EventType(StrEnum):
    MESSAGE_SENT = "message_sent"
    MESSAGE_READ = "message_read"
    MESSAGE_BOUNCED = "message_bounced"
    MESSAGE_MISDELIVERED = "message_misdelivered"
    TICKET_OPENED = "ticket_opened"
    TICKET_REPLIED = "ticket_replied"
    TICKET_HANDED_OFF = "ticket_handed_off"
    TICKET_RESOLVED = "ticket_resolved"
    TICKET_REOPENED = "ticket_reopened"
    POST_SUBMITTED = "post_submitted"
    POST_REVIEWED = "post_reviewed"
    MEETING_HELD = "meeting_held"
    CALL_RECEIVED = "call_received"
    CALL_ANSWERED = "call_answered"
    SURVEY_ANSWERED = "survey_answered"
    CHANNEL_CREATED = "channel_created"
    CHANNEL_ARCHIVED = "channel_archived"


class ChannelKind(StrEnum):
    # internal
    EMAIL = "email"
    IM = "im"
    MEETING = "meeting"
    ANNOUNCEMENT = "announcement"
    FORUM = "forum"
    KNOWLEDGE_BASE = "knowledge_base"
    # external
    HOTLINE = "hotline"
    LIVE_CHAT = "live_chat"
    TICKET = "ticket"
    SOCIAL = "social"
    CRM = "crm"
    PARTNER_PORTAL = "partner_portal"


class Scope(StrEnum):
    INTERNAL = "internal"
    EXTERNAL = "external"


class ActorRole(StrEnum):
    EMPLOYEE = "employee"
    AGENT = "agent"
    CUSTOMER = "customer"
    PARTNER = "partner"
    BOT = "bot"
    SYSTEM = "system"


class Visibility(StrEnum):
    """Whether a reply is seen by the requester (public) or is an internal note."""

    PUBLIC = "public"
    INTERNAL = "internal"


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"


class RequestCategory(StrEnum):
    """What a request is about; SLA policies can differ per category."""

    INQUIRY = "inquiry"
    COMPLAINT = "complaint"
    SUGGESTION = "suggestion"
    CROSS_DEPARTMENT = "cross_department"


#: Fields an event type cannot do without (beyond the common ones).
REQUIRED_FIELDS: Final[dict[EventType, tuple[str, ...]]] = {
    EventType.MESSAGE_SENT: ("message_id",),
    EventType.MESSAGE_READ: ("message_id",),
    EventType.MESSAGE_BOUNCED: ("message_id",),
    EventType.MESSAGE_MISDELIVERED: ("message_id",),
    EventType.TICKET_OPENED: ("conversation_id",),
    EventType.TICKET_REPLIED: ("conversation_id",),
    EventType.TICKET_HANDED_OFF: ("conversation_id",),
    EventType.TICKET_RESOLVED: ("conversation_id",),
    EventType.TICKET_REOPENED: ("conversation_id",),
    EventType.POST_SUBMITTED: ("conversation_id",),
    EventType.POST_REVIEWED: ("conversation_id", "decision"),
    EventType.MEETING_HELD: ("duration_s",),
    EventType.CALL_RECEIVED: ("conversation_id",),
    EventType.CALL_ANSWERED: ("conversation_id",),
    EventType.SURVEY_ANSWERED: ("score",),
    EventType.CHANNEL_CREATED: (),
    EventType.CHANNEL_ARCHIVED: (),
}

#: Validation-context key: a ``Callable[[str], str]`` that pseudonymises ids
#: while an event is validated (see :mod:`ingest.pseudonym`).
PSEUDONYMISE: Final = "pseudonymise"
#: Always pseudonymised at ingest.
ACTOR_FIELDS: Final = ("actor_id",)
#: Join keys, pseudonymised at ingest unless they look like an opaque token: one with an
#: ``@`` (an address, a Message-ID) or whitespace (a subject, a name) is (see
#: :func:`plain_join_key`).
JOIN_KEY_FIELDS: Final = ("conversation_id", "message_id", "in_reply_to")

_MAX_DURATION_S: Final = 31 * 24 * 3600.0

# Identifiers: printable, no whitespace at the ends, bounded.
Identifier = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        pattern=r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
    ),
]
# Channel ids name a channel, never an address: no '@', no spaces.
ChannelId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/+\-]*$")
]
Duration = Annotated[float, Field(ge=0, le=_MAX_DURATION_S)]
# A department names a unit of the organisation, never a person's address.
Department = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[^\s@\x00-\x1f\x7f](?:[^@\x00-\x1f\x7f]*[^\s@\x00-\x1f\x7f])?$",
    ),
]


def plain_join_key(value: str) -> bool:
    """Whether a join key may stay as it is: no ``@`` and no whitespace in it."""
    return "@" not in value and not any(char.isspace() for char in value)


class Event(BaseModel):
    """One thing that happened on a communication channel.

    ``actor_id`` is pseudonymised by the producer before the event reaches
    Kafka (see :mod:`ingest.pseudonym`); the model itself carries no field that
    could hold a name, an address, a subject or a body.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    event_id: uuid.UUID
    schema_version: Literal[1] = SCHEMA_VERSION
    event_type: EventType
    occurred_at: AwareDatetime
    channel_id: ChannelId
    channel_kind: ChannelKind
    scope: Scope
    actor_id: Identifier
    actor_role: ActorRole
    conversation_id: Identifier | None = None
    message_id: Identifier | None = None
    in_reply_to: Identifier | None = None
    recipient_count: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    duration_s: Duration | None = None
    planned_duration_s: Duration | None = None
    score: Annotated[int, Field(ge=1, le=5)] | None = None
    decision: Decision | None = None
    category: RequestCategory | None = None
    visibility: Visibility | None = None
    department: Department | None = None

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_from_text(cls, value: object, info: ValidationInfo) -> object:
        # Tabular inputs (CSV) carry text; JSON must carry the number itself.
        if info.mode == "python" and isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator(*ACTOR_FIELDS, *JOIN_KEY_FIELDS)
    @classmethod
    def _pseudonymise(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Applies the context's pseudonymiser: to actors always, to join keys not plain."""
        pseudonymise = info.context.get(PSEUDONYMISE) if info.context else None
        if pseudonymise is None or value is None:
            return value
        if info.field_name in JOIN_KEY_FIELDS and plain_join_key(value):
            return value
        return pseudonymise(value)  # type: ignore[no-any-return]

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01 at +05:00, 9999-12-31 at -05:00: no UTC instant
            if value.year == 1:
                raise PydanticCustomError("too_old", "is too early to be a UTC time") from None
            raise PydanticCustomError("future_time", "is too late to be a UTC time") from None

    @model_validator(mode="after")
    def _type_specific_fields(self) -> Event:
        for name in REQUIRED_FIELDS[self.event_type]:
            if getattr(self, name) is None:
                raise PydanticCustomError(
                    "missing_field",
                    "{event_type} requires {field}",
                    {"event_type": self.event_type.value, "field": name},
                )
        return self


#: Fields every event has, whatever its type (see :data:`REQUIRED_FIELDS` for the rest).
COMMON_FIELDS: Final[tuple[str, ...]] = tuple(
    name for name, field in Event.model_fields.items() if field.is_required()
)
