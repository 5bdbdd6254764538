"""The sink's consumer takes the same client settings as every other Kafka client of commpulse.

``commpulse.kafka`` and the settings build kafka-python keyword arguments; the sink reads with
aiokafka, so :func:`warehouse.reader.aiokafka_options` maps them. TLS files become an SSL
context (made from real files here), SASL keeps its names, an option with no counterpart
that matters for a reader is dropped, and any other is an error.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from commpulse.kafka import KafkaTarget
from commpulse.settings import KafkaSettings
from ingest.errors import ConfigurationError
from warehouse.reader import TopicReader, aiokafka_options


def _client_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA certificate, and a client certificate and key (the key encrypted with "secret")."""
    ca_key, ca, key, request, cert = (
        tmp_path / name for name in ("ca.key", "ca.pem", "client.key", "client.csr", "client.pem")
    )

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
            "-days", "1", "-subj", "/CN=test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-keyout", key, "-passout", "pass:secret",
            "-out", request, "-subj", "/CN=client")  # fmt: skip
    openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "1")  # fmt: skip
    return ca, cert, key


def test_sasl_over_tls_settings_become_aiokafka_options(tmp_path: Path) -> None:
    ca, cert, key = _client_files(tmp_path)
    kafka = KafkaSettings(
        bootstrap_servers="k:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="pw",
        ssl_cafile=ca,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_password="secret",
        ssl_check_hostname=False,
    )
    # what the sink is given: the consumer options of the shell's Kafka target
    options = KafkaTarget(kafka.bootstrap_servers, kafka.client_options()).consumer_options
    mapped = aiokafka_options(options)
    context = mapped.pop("ssl_context")
    assert mapped == {
        "client_id": "commpulse",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is False
    assert [cert_["subject"] for cert_ in context.get_ca_certs()] == [
        ((("commonName", "test-ca"),),)
    ]
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_tls_checks_the_host_name_unless_told_not_to(tmp_path: Path) -> None:
    ca, _, _ = _client_files(tmp_path)
    kafka = KafkaSettings(bootstrap_servers="k:9093", security_protocol="SSL", ssl_cafile=ca)
    context = aiokafka_options(kafka.client_options())["ssl_context"]
    assert context.check_hostname is True


def test_plaintext_and_the_embedded_broker_need_no_tls() -> None:
    assert aiokafka_options(KafkaSettings().client_options()) == {
        "client_id": "commpulse",
        "security_protocol": "PLAINTEXT",
    }
    assert aiokafka_options(KafkaTarget("127.0.0.1:1", {}).consumer_options) == {}
    assert aiokafka_options({"request_timeout_ms": 2000}) == {"request_timeout_ms": 2000}


def test_an_option_with_no_aiokafka_counterpart_is_an_error_at_once() -> None:
    with pytest.raises(ConfigurationError, match="bootstrap_timeout_ms"):
        aiokafka_options({"bootstrap_timeout_ms": 1000})
    with pytest.raises(ConfigurationError, match="api_version"):
        TopicReader("127.0.0.1:1", "events", {"api_version": (2, 0)})  # before any I/O
