"""Infrastructure: the embedded broker, Alertmanager for local use and tests, topic provisioning.

Imports nothing of ours; the shell passes settings in as plain values.
"""

from infra.alertmanager import AlertmanagerError, AlertmanagerProcess, alertmanager_binary
from infra.broker import (
    FETCH_RESPONSE_MAX_BYTES,
    EmbeddedBroker,
    broker_binary,
    kafka_reachable,
    wait_until_ready,
)
from infra.errors import BrokerError, InfraError, TopicError
from infra.lease import BrokerLease, lease_broker, running_broker
from infra.ports import free_port
from infra.topics import (
    TopicReport,
    TopicSpec,
    delete_topics_named,
    ensure_topics,
    record_counts,
)

__all__ = [
    "FETCH_RESPONSE_MAX_BYTES",
    "AlertmanagerError",
    "AlertmanagerProcess",
    "BrokerError",
    "BrokerLease",
    "EmbeddedBroker",
    "InfraError",
    "TopicError",
    "TopicReport",
    "TopicSpec",
    "alertmanager_binary",
    "broker_binary",
    "delete_topics_named",
    "ensure_topics",
    "free_port",
    "kafka_reachable",
    "lease_broker",
    "record_counts",
    "running_broker",
    "wait_until_ready",
]
