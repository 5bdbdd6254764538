"""Ingest: the event schema, validation, pseudonymisation, the producer and the
dead-letter path, file importers, the HTTP endpoint and the simulator.

Imports nothing of ours.
"""

from ingest.codec import decode, encode, kafka_key
from ingest.deadletter import DeadLetter
from ingest.errors import (
    CommpulseError,
    ConfigurationError,
    DeliveryError,
    EventDecodeError,
    InputError,
    KafkaUnreachableError,
)
from ingest.events import (
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    ActorRole,
    ChannelKind,
    Decision,
    Event,
    EventType,
    RequestCategory,
    Scope,
    Visibility,
)
from ingest.producer import BatchResult, DeliveryFailure, IngestCounts, Producer, Record
from ingest.pseudonym import Pseudonymiser
from ingest.validation import Limits, RejectCode, Rejection, Validator

__all__ = [
    "REQUIRED_FIELDS",
    "SCHEMA_VERSION",
    "ActorRole",
    "BatchResult",
    "ChannelKind",
    "CommpulseError",
    "ConfigurationError",
    "DeadLetter",
    "Decision",
    "DeliveryError",
    "DeliveryFailure",
    "Event",
    "EventDecodeError",
    "EventType",
    "IngestCounts",
    "InputError",
    "KafkaUnreachableError",
    "Limits",
    "Producer",
    "Pseudonymiser",
    "Record",
    "RejectCode",
    "Rejection",
    "RequestCategory",
    "Scope",
    "Validator",
    "Visibility",
    "decode",
    "encode",
    "kafka_key",
]
