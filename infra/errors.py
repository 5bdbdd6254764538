"""Errors of the infrastructure layer.

``infra`` imports nothing of ours, so this is a root of its own beside
``ingest.errors.CommpulseError``; the CLI treats both alike.

    InfraError
    ├── BrokerError           the embedded broker cannot start, answer or stop
    ├── TopicError            topics cannot be created or do not match their spec
    └── AlertmanagerError     (infra.alertmanager) Alertmanager cannot start or answer
"""

from __future__ import annotations

__all__ = ["BrokerError", "InfraError", "TopicError"]


class InfraError(Exception):
    """Base of the errors infra raises on purpose."""


class BrokerError(InfraError):
    """The embedded broker cannot start, answer or stop."""


class TopicError(InfraError):
    """Topics cannot be created, or existing ones do not match their spec."""
