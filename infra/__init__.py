"""Infrastructure: the embedded broker and topic provisioning.

Imports nothing of ours; the shell passes settings in as plain values.
"""

from infra.broker import EmbeddedBroker, broker_binary, kafka_reachable, wait_until_ready
from infra.errors import BrokerError, InfraError, TopicError
from infra.lease import BrokerLease, lease_broker, running_broker
from infra.ports import free_port
from infra.topics import TopicReport, TopicSpec, ensure_topics, record_counts

__all__ = [
    "BrokerError",
    "BrokerLease",
    "EmbeddedBroker",
    "InfraError",
    "TopicError",
    "TopicReport",
    "TopicSpec",
    "broker_binary",
    "ensure_topics",
    "free_port",
    "kafka_reachable",
    "lease_broker",
    "record_counts",
    "running_broker",
    "wait_until_ready",
]
