"""A real embedded broker for the whole session; unique topics for every test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from commpulse.settings import (
    KafkaSettings,
    PrivacySettings,
    Settings,
    TopicSettings,
    load_settings,
)
from infra import (
    AlertmanagerProcess,
    EmbeddedBroker,
    ensure_topics,
)
from tests.integration.support import PSEUDONYM_KEY, require_alertmanager


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerProcess]:
    """A real Alertmanager on a free loopback port (Debian's prometheus-alertmanager)."""
    require_alertmanager()
    with AlertmanagerProcess(tmp_path_factory.mktemp("alertmanager")) as running:
        yield running


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("session-broker")) as running:
        yield running


@pytest.fixture
def topics(broker: EmbeddedBroker) -> TopicSettings:
    """Topic names no other test uses, created on the session broker."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    names = TopicSettings().prefixed(prefix)
    ensure_topics(broker.bootstrap_servers, names.specs())
    return names


@pytest.fixture
def settings(broker: EmbeddedBroker, topics: TopicSettings, tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
        topics=topics,
        privacy=PrivacySettings(pseudonym_key=PSEUDONYM_KEY),
    )


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running the real ``commpulse`` command against ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMMPULSE_")}
    env |= {
        "COMMPULSE_DATA_DIR": str(settings.data_dir),
        "COMMPULSE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "COMMPULSE_TOPICS__EVENTS": settings.topics.events,
        "COMMPULSE_TOPICS__DLQ": settings.topics.dlq,
        "COMMPULSE_TOPICS__KPIS": settings.topics.kpis,
        "COMMPULSE_TOPICS__ALERTS": settings.topics.alerts,
        "COMMPULSE_TOPICS__PACKED": settings.topics.packed,
        "COMMPULSE_PRIVACY__PSEUDONYM_KEY": PSEUDONYM_KEY,
        "COLUMNS": "200",
    }
    return env
