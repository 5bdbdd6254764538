"""docs/configuration.md is generated from the settings model and stays in step with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field, SecretStr

from commpulse.config_reference import (
    FALLBACK_DESCRIPTIONS,
    UNDOCUMENTED,
    entries,
    render,
)
from commpulse.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[3]
PAGE = REPO / "docs" / "configuration.md"
REGENERATE = "python -m commpulse.config_reference > docs/configuration.md"


def test_the_page_is_the_rendered_reference() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        f"docs/configuration.md is stale: run {REGENERATE}"
    )


def test_the_module_prints_the_reference() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMMPULSE_")}
    printed = subprocess.run(
        [sys.executable, "-m", "commpulse.config_reference"],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    assert printed.decode("utf-8") == render()


def test_every_setting_is_listed_with_its_variable_and_key() -> None:
    page = render()
    listed = list(entries())
    sections = {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    expected = len(Settings.model_fields) - len(sections)
    expected += sum(len(model.model_fields) for model in sections.values())
    assert len(listed) == expected > 50
    for entry in listed:
        assert f"| `{entry.key}` | `{entry.env}` |" in page
    for section in sections:
        assert f"## `[{section}]`" in page
    assert "`COMMPULSE_KAFKA__BOOTSTRAP_SERVERS`" in page
    assert "| `data_dir` | `COMMPULSE_DATA_DIR` |" in page


def test_the_variables_and_keys_are_the_ones_the_settings_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    by_key = {entry.key: entry for entry in entries()}
    monkeypatch.setenv(by_key["kafka.client_id"].env, "from-env")
    monkeypatch.setenv(by_key["stream.web_port"].env, "6070")
    config = tmp_path / "commpulse.toml"
    config.write_text("alerts.resend_interval_s = 5.0\n[warehouse]\nbuild_interval_s = 7.0\n")
    settings = load_settings(config)
    assert settings.kafka.client_id == "from-env"
    assert settings.stream.web_port == 6070
    assert settings.alerts.resend_interval_s == 5.0
    assert settings.warehouse.build_interval_s == 7.0


def test_every_setting_has_a_description_and_secrets_are_marked() -> None:
    page = render()
    undocumented = [entry.key for entry in entries() if entry.description == UNDOCUMENTED]
    assert not undocumented, (
        f"describe {undocumented} with Field(description=...) in commpulse/settings.py, "
        f"then run {REGENERATE}"
    )
    secrets = {entry.key for entry in entries() if entry.secret}
    assert secrets >= {"kafka.sasl_password", "ingest.token", "privacy.pseudonym_key"}
    for entry in entries():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{entry.key}` |"))
        assert ("*secret*" in row) == (entry.key in secrets), row


def test_fallback_descriptions_are_only_for_fields_without_their_own() -> None:
    fields = {entry.key: entry for entry in entries()}
    assert set(FALLBACK_DESCRIPTIONS) <= set(fields), "a fallback names a setting that is gone"
    described = [key for key in FALLBACK_DESCRIPTIONS if fields[key].field.description]
    assert not described, f"{described} have descriptions now: drop their fallbacks"


def test_types_defaults_and_bounds_are_rendered() -> None:
    class Section(BaseModel):
        """A section.

        More text that is not shown."""

        size_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="a size")
        keep_ms: int = Field(86_400_000, ge=-1, description="a retention")
        mode: Literal["a", "b"] = Field("a", description="a choice")
        secret: SecretStr | None = Field(None, description="a secret")
        flag: bool = Field(False, description="a flag")

    class Model(BaseModel):
        name: str = Field("x", description='a "name"')
        section: Section = Section()

    page = render(Model)
    assert '| `name` | `COMMPULSE_NAME` | text | `"x"` | a "name" |' in page
    assert "## `[section]`\n\nA section.\n" in page
    assert (
        "| `section.size_bytes` | `COMMPULSE_SECTION__SIZE_BYTES` | integer (≥ 1024) | "
        "`8388608` (8 MiB) | a size |"
    ) in page
    assert "`86400000` (1 day)" in page
    assert '| one of `a`, `b` | `"a"` |' in page
    assert "| text, *secret* | unset | a secret |" in page
    assert "| boolean | `false` | a flag |" in page
