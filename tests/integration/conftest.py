"""A real embedded broker for each test module; unique topics for every test.

One broker per module, not per session: noida-db rewrites its whole data file every
few seconds, so a broker holding the 200,000-event run and the 100,000-event demo
(1.5 GB of JSON) slowed down every test after them.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

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
from tests.integration.support import PSEUDONYM_KEY, cli_env_for, require_alertmanager

#: the longest modules, longest first: they start first, so that with two pytest-xdist
#: workers (scripts/test.sh) the rest runs beside them instead of after them
LONGEST: Final = ("test_stream_reference.py", "test_bench.py", "test_faults.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
    rank = {name: index for index, name in enumerate(LONGEST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST)))  # stable


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerProcess]:
    """A real Alertmanager on a free loopback port (Debian's prometheus-alertmanager)."""
    require_alertmanager()
    with AlertmanagerProcess(tmp_path_factory.mktemp("alertmanager")) as running:
        yield running


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """Starts in a fraction of a second; its data (up to 1.5 GB) is deleted after the module."""
    data = tmp_path_factory.mktemp("module-broker")
    with EmbeddedBroker(data) as running:
        yield running
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def topics(broker: EmbeddedBroker) -> TopicSettings:
    """Topic names no other test uses, created on the module's broker."""
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
    return cli_env_for(settings)
