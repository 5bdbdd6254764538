"""Settings: env prefix and nesting, TOML, precedence, errors, generated secrets."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from commpulse.keys import ingest_token, pseudonym_key
from commpulse.settings import KafkaSettings, load_settings
from ingest import ConfigurationError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("COMMPULSE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.data_dir == tmp_path / ".commpulse"
    assert settings.kafka.bootstrap_servers == ""
    assert settings.topics.events == "commpulse.events" and settings.topics.events_partitions == 8
    assert settings.ingest.host == "127.0.0.1"
    assert [spec.configs for spec in settings.topics.specs()] == [{"retention.ms": "-1"}] * 4 + [
        {"retention.ms": str(30 * 86_400_000)}  # the packed topic is derived from the events log
    ]


def test_environment_with_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMPULSE_DATA_DIR", "/srv/commpulse")
    monkeypatch.setenv("COMMPULSE_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("COMMPULSE_INGEST__TOKEN", "t" * 20)
    monkeypatch.setenv("COMMPULSE_TOPICS__EVENTS_PARTITIONS", "12")
    settings = load_settings()
    assert settings.data_dir == Path("/srv/commpulse")
    assert settings.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert (
        settings.ingest.token is not None and settings.ingest.token.get_secret_value() == "t" * 20
    )
    assert "t" * 20 not in repr(settings)
    assert settings.topics.events_partitions == 12


def test_toml_file_then_env_then_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "commpulse.toml").write_text(
        'data_dir = "/from/toml"\n[topics]\nevents = "toml.events"\ndlq = "toml.dlq"\n'
    )
    assert load_settings().topics.events == "toml.events"
    monkeypatch.setenv("COMMPULSE_TOPICS__EVENTS", "env.events")
    settings = load_settings()
    assert settings.topics.events == "env.events" and settings.topics.dlq == "toml.dlq"
    assert settings.data_dir == Path("/from/toml")
    assert load_settings(data_dir=Path("/from/cli")).data_dir == Path("/from/cli")


def test_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")
    other = tmp_path / "other.toml"
    other.write_text("[ingest]\nport = 9999\n")
    assert load_settings(other).ingest.port == 9999


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[kafka]\nbootstrap = 'x'\n", "kafka.bootstrap: Extra inputs are not permitted"),
        ("[topics]\nevents_partitions = 0\n", "topics.events_partitions"),
        ("[kafka]\nsecurity_protocol = 'TLS'\n", "kafka.security_protocol"),
        ("data_dir = \n", "invalid config file"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "commpulse.toml").write_text(toml)
    with pytest.raises(ConfigurationError, match=message.replace(".", r"\.")):
        load_settings()


def test_kafka_client_options_for_sasl_ssl() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="k:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="pw",
        ssl_cafile=Path("/etc/ca.pem"),
    )
    assert kafka.client_options() == {
        "client_id": "commpulse",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
        "ssl_check_hostname": True,
        "ssl_cafile": "/etc/ca.pem",
    }
    with pytest.raises(ConfigurationError, match="needs kafka.sasl_mechanism"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT").client_options()


def test_secrets_are_generated_once_private_and_stable(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: pseudonym_key(settings), range(16)))
    assert len(keys) == 1
    [key] = keys
    assert len(key) == 64
    path = tmp_path / "data" / "secrets" / "pseudonym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token, token_file = ingest_token(settings)
    assert token_file == tmp_path / "data" / "secrets" / "ingest.token" and len(token) == 64
    assert ingest_token(settings) == (token, token_file)


def test_configured_secrets_win_and_must_be_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMPULSE_PRIVACY__PSEUDONYM_KEY", "k" * 32)
    assert pseudonym_key(load_settings()) == b"k" * 32
    monkeypatch.setenv("COMMPULSE_PRIVACY__PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        pseudonym_key(load_settings())
    monkeypatch.setenv("COMMPULSE_INGEST__TOKEN", "abc")
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        ingest_token(load_settings())
