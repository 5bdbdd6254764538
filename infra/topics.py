"""Create or verify topics: explicit partition counts and configs, idempotently.

Nothing may rely on auto-created topics (they get one partition, and faust
does not create source topics), so every command that uses Kafka ensures its
topics first. A topic that exists with other settings is reported, never
silently changed: partition counts only grow, and growing one moves keys to
other partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from infra.errors import TopicError

__all__ = ["TopicReport", "TopicSpec", "delete_topics_named", "ensure_topics", "record_counts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicReport:
    name: str
    status: Literal["created", "ok", "mismatch"]
    partitions: int
    problems: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.name}: {self.status} ({self.partitions} partitions)"
        return text + "".join(f"\n  - {problem}" for problem in self.problems)


def ensure_topics(
    bootstrap_servers: str,
    specs: Sequence[TopicSpec],
    *,
    client_options: Mapping[str, Any] | None = None,
    strict: bool = True,
) -> list[TopicReport]:
    """Create missing topics and check existing ones against their specs.

    With ``strict`` a mismatch raises :class:`TopicError` listing every
    problem; otherwise the reports say so and the caller decides.
    """
    with _admin(bootstrap_servers, client_options, "topic administration failed") as admin:
        reports = [_ensure_one(admin, spec) for spec in specs]
    bad = [report for report in reports if report.status == "mismatch"]
    if strict and bad:
        raise TopicError("topics do not match their settings:\n" + "\n".join(map(str, bad)))
    return reports


def _ensure_one(admin: KafkaAdminClient, spec: TopicSpec) -> TopicReport:
    if spec.name not in set(admin.list_topics()):
        try:
            admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        spec.partitions,
                        spec.replication_factor,
                        topic_configs=dict(spec.configs),
                    )
                ]
            )
            log.info(
                "created topic=%s partitions=%s configs=%s",
                spec.name,
                spec.partitions,
                dict(spec.configs),
            )
            return TopicReport(spec.name, "created", spec.partitions)
        except TopicAlreadyExistsError:
            pass  # created concurrently by someone else: verify it below
    return _verify(admin, spec)


def _verify(admin: KafkaAdminClient, spec: TopicSpec) -> TopicReport:
    description = admin.describe_topics([spec.name])[0]
    partitions = description["partitions"]
    problems: list[str] = []
    if len(partitions) != spec.partitions:
        problems.append(f"has {len(partitions)} partitions, expected {spec.partitions}")
    replicas = min((len(p.get("replicas") or [0]) for p in partitions), default=0)
    if partitions and replicas < spec.replication_factor:
        problems.append(f"has replication factor {replicas}, expected {spec.replication_factor}")
    if spec.configs:
        resource = ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=list(spec.configs))
        actual = admin.describe_configs([resource], config_filter="all")
        values = _config_values(actual, spec.name)
        for key, expected in spec.configs.items():
            if values.get(key) != expected:
                problems.append(f"{key} is {values.get(key)!r}, expected {expected!r}")
    return TopicReport(
        spec.name, "mismatch" if problems else "ok", len(partitions), tuple(problems)
    )


def _config_values(response: Any, topic: str) -> dict[str, str | None]:
    """Config values from kafka-python 3's describe_configs answer."""
    entries = response.get("topic", {}).get(topic, {}) if isinstance(response, dict) else {}
    return {key: entry.get("value") for key, entry in entries.items()}


def delete_topics_named(
    bootstrap_servers: str,
    prefix: str,
    *,
    client_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a run's own, say); their names."""
    if not prefix:
        raise ValueError("an empty prefix would name every topic")
    failed = f"could not delete the topics named {prefix}*"
    with _admin(bootstrap_servers, client_options, failed) as admin:
        names = sorted(name for name in admin.list_topics() if name.startswith(prefix))
        if names:
            admin.delete_topics(names)
    return names


@contextmanager
def _admin(
    bootstrap_servers: str, client_options: Mapping[str, Any] | None, failed: str
) -> Iterator[KafkaAdminClient]:
    """An admin client, closed afterwards; Kafka errors become :class:`TopicError`: for
    connecting, "cannot reach Kafka", and inside the ``with``, ``failed``."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    except KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        yield admin
    except KafkaError as exc:
        raise TopicError(f"{failed}: {exc}") from exc
    finally:
        admin.close()


def record_counts(
    bootstrap_servers: str,
    topics: Sequence[str],
    *,
    client_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Records currently held per topic (end offset minus beginning offset, summed over partitions)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    try:
        counts: dict[str, int] = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, partition) for partition in sorted(partitions)]
            end = consumer.end_offsets(tps)
            begin = consumer.beginning_offsets(tps)
            counts[topic] = sum(end[tp] - begin[tp] for tp in tps)
        return counts
    except KafkaError as exc:
        raise TopicError(f"cannot read offsets: {exc}") from exc
    finally:
        consumer.close()
