"""Shared test set-up: no developer environment leaks into the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_commpulse_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("COMMPULSE_"):
            monkeypatch.delenv(name)
    yield
