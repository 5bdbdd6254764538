"""The commpulse error tree.

Every error a user can meet derives from :class:`CommpulseError`; the CLI turns
each into one readable line and a non-zero exit code.

    CommpulseError
    ├── ConfigurationError        a setting or an argument cannot work
    ├── InputError                an input file cannot be read at all
    ├── EventDecodeError          a record on an events topic is not a valid event
    ├── KafkaUnreachableError     Kafka cannot be reached at all
    └── DeliveryError             records could not be delivered to Kafka

``infra`` imports nothing of ours, so its errors have their own root,
``infra.InfraError``; the CLI treats both roots alike.

An *invalid event* is not an exception: ingest turns it into a
:class:`ingest.validation.Rejection` and sends it to the dead-letter topic.
"""

from __future__ import annotations

__all__ = [
    "CommpulseError",
    "ConfigurationError",
    "DeliveryError",
    "EventDecodeError",
    "InputError",
    "KafkaUnreachableError",
]


class CommpulseError(Exception):
    """Base of every error commpulse raises on purpose."""


class ConfigurationError(CommpulseError):
    """A setting or a command-line argument cannot work."""


class InputError(CommpulseError):
    """An input (file, request body) cannot be read at all."""


class EventDecodeError(CommpulseError):
    """A record read from an events topic does not decode to a valid event."""

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        where = ""
        if topic is not None:
            where = f" at {topic}[{partition}]@{offset}"
        super().__init__(f"cannot decode event{where}: {message}")


class KafkaUnreachableError(CommpulseError):
    """No Kafka broker answered at the configured bootstrap servers."""


class DeliveryError(CommpulseError):
    """Kafka did not acknowledge some records after all retries."""

    def __init__(self, message: str, *, undelivered: int) -> None:
        self.undelivered = undelivered
        super().__init__(message)
