"""Settings, built once by the CLI and passed down as plain values.

Sources, strongest first: command-line options, environment variables
(``COMMPULSE_`` prefix, ``__`` between nested names, e.g.
``COMMPULSE_KAFKA__BOOTSTRAP_SERVERS``), a TOML file (``commpulse.toml`` in
the working directory, or ``--config FILE``), then the defaults below.
``docs/configuration.md`` lists every setting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ingest.errors import ConfigurationError

if TYPE_CHECKING:
    from infra import TopicSpec

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "AlertSettings",
    "BrokerSettings",
    "IngestSettings",
    "KafkaSettings",
    "MetricsSettings",
    "PrivacySettings",
    "Settings",
    "StreamSettings",
    "TopicSettings",
    "load_settings",
]

DEFAULT_CONFIG_FILE = Path("commpulse.toml")
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(BaseModel):
    """How to reach Kafka. Empty ``bootstrap_servers`` means the embedded broker."""

    model_config = _FROZEN

    bootstrap_servers: str = Field("", description="host:port[,host:port]; empty = embedded broker")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle (PEM) to verify the brokers")
    ssl_certfile: Path | None = Field(None, description="client certificate (PEM), for mutual TLS")
    ssl_keyfile: Path | None = Field(None, description="client key (PEM), for mutual TLS")
    ssl_password: SecretStr | None = Field(None, description="password of the client key")
    ssl_check_hostname: bool = True
    client_id: str = "commpulse"

    def aiokafka_options(self) -> dict[str, Any]:
        """The same settings as aiokafka keyword arguments (for the stream worker)."""
        options = self.client_options()
        options.pop("ssl_check_hostname", None)
        files = {
            name: options.pop(name, None) for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
        }
        password = options.pop("ssl_password", None)
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            context = create_ssl_context(
                cafile=files["ssl_cafile"],
                certfile=files["ssl_certfile"],
                keyfile=files["ssl_keyfile"],
                password=password,
            )
            context.check_hostname = self.ssl_check_hostname
            options["ssl_context"] = context
        return options

    def client_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments (everything but the bootstrap servers)."""
        options: dict[str, Any] = {
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise ConfigurationError(
                    f"security_protocol {self.security_protocol} needs kafka.sasl_mechanism, "
                    "kafka.sasl_username and kafka.sasl_password"
                )
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        if self.security_protocol.endswith("SSL"):
            options["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if (path := getattr(self, name)) is not None:
                    options[name] = str(path)
            if self.ssl_password is not None:
                options["ssl_password"] = self.ssl_password.get_secret_value()
        return options


class BrokerSettings(BaseModel):
    """The embedded broker used when no bootstrap servers are configured."""

    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 = a free port")
    start_timeout_s: float = Field(60.0, gt=0)
    stop_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a stopping broker is killed once it did no work (CPU, writes) for this long",
    )


class TopicSettings(BaseModel):
    model_config = _FROZEN

    events: str = "commpulse.events"
    events_partitions: int = Field(8, ge=1)
    dlq: str = "commpulse.events.dlq"
    dlq_partitions: int = Field(1, ge=1)
    kpis: str = "commpulse.kpis"
    kpis_partitions: int = Field(8, ge=1)
    alerts: str = "commpulse.alerts"
    alerts_partitions: int = Field(1, ge=1)
    packed: str = Field(
        "commpulse.events.packed", description="envelopes of events for the stream worker"
    )
    packed_partitions: int = Field(12, ge=1, description="12 = one per channel kind")
    packed_retention_ms: int = Field(
        30 * 86_400_000, ge=-1, description="derived from the events log; -1 = forever"
    )
    replication_factor: int = Field(1, ge=1)

    def prefixed(self, prefix: str) -> TopicSettings:
        """The same topics named ``<prefix>.events`` and so on (a run of their own)."""
        return self.model_copy(
            update={
                "events": f"{prefix}.events",
                "dlq": f"{prefix}.events.dlq",
                "kpis": f"{prefix}.kpis",
                "alerts": f"{prefix}.alerts",
                "packed": f"{prefix}.events.packed",
            }
        )

    def specs(self) -> list[TopicSpec]:
        """Every topic commpulse uses. History is kept forever: imported events carry old times."""
        from infra import TopicSpec  # the Kafka client loads only when topics are needed

        forever = {"retention.ms": "-1"}
        rf = self.replication_factor
        return [
            TopicSpec(self.events, self.events_partitions, rf, forever),
            TopicSpec(self.dlq, self.dlq_partitions, rf, forever),
            TopicSpec(self.kpis, self.kpis_partitions, rf, forever),
            TopicSpec(self.alerts, self.alerts_partitions, rf, forever),
            TopicSpec(
                self.packed,
                self.packed_partitions,
                rf,
                {"retention.ms": str(self.packed_retention_ms)},
            ),
        ]


class IngestSettings(BaseModel):
    model_config = _FROZEN

    host: str = Field("127.0.0.1", description="HTTP ingest bind address")
    port: int = Field(8400, ge=0, le=65535)
    token: SecretStr | None = Field(
        None, description="bearer token for HTTP ingest; generated into the data dir if unset"
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    max_event_bytes: int = Field(64 * 1024, ge=512, description="larger events are dead-lettered")
    future_tolerance_s: int = Field(
        86_400, ge=0, description="how far in the future occurred_at may be"
    )
    linger_ms: int = Field(20, ge=0, description="producer batching delay")
    delivery_timeout_s: float = Field(
        120.0,
        ge=1.0,
        description="how long the producer retries a record before it reports it as not "
        "delivered (ingest exits 4 and lists them; HTTP answers 503); a Kafka client that "
        "answers for nothing gets 10 s more, then is replaced",
    )


class StreamSettings(BaseModel):
    """The stream worker (``commpulse stream``)."""

    model_config = _FROZEN

    app_id: str = Field(
        "commpulse-stream", description="faust app id: its consumer group and state topic names"
    )
    grace_s: float = Field(600.0, ge=0, description="how late an event may arrive and still count")
    batch_envelopes: int = Field(
        40, ge=1, description="packed records (up to 500 events each) per processing batch"
    )
    batch_within_s: float = Field(0.5, gt=0, description="longest wait to fill a batch")
    tick_interval_s: float = Field(10.0, gt=0, description="how often idle channels are checked")
    backfill_age_s: float = Field(
        3600.0,
        gt=0,
        description="an event read this long after it occurred means history is being imported: "
        "its partition's channels are not judged idle until that has stopped for 3 ticks",
    )
    max_record_bytes: int = Field(
        512 * 1024,
        ge=16 * 1024,
        description="largest record the worker writes: the packer's envelopes stay below it, and "
        "a busy channel's day of state goes in chunks of this size (keep it below the cluster's "
        "max.message.bytes, 1 MiB by default)",
    )
    pack_linger_s: float = Field(
        1.0,
        ge=0,
        description="how long the packer gathers events into envelopes (latency for throughput)",
    )
    web_host: str = Field("127.0.0.1", description="bind address of /kpis, /metrics, /healthz")
    web_port: int = Field(6066, ge=0, le=65535, description="0 = no web server")
    session_timeout_s: float = Field(
        30.0,
        ge=6,
        le=300,
        description="a worker silent this long leaves the group; also the rebalance timeout",
    )
    empty_fetch_pause_s: float = Field(
        0.05,
        ge=0,
        le=1,
        description="after a fetch that brought nothing, wait up to this long before the next "
        "(for brokers that answer at once, as the embedded one does; 0 = off)",
    )


class MetricsSettings(BaseModel):
    """KPI definitions' environment: where windows are cut, and the channel catalog."""

    model_config = _FROZEN

    timezone: str = Field("UTC", description="day windows run from midnight to midnight here")
    catalog: Path | None = Field(
        None, description="channel catalog TOML (calendars, SLA overrides, idle thresholds)"
    )


class AlertSettings(BaseModel):
    """Where idle-channel alerts go besides the alerts topic."""

    model_config = _FROZEN

    alertmanager_url: str | None = Field(None, description="e.g. http://127.0.0.1:9093")
    webhook_url: str | None = Field(None, description="receives Alertmanager webhook v4 payloads")
    webhook_token: SecretStr | None = Field(
        None, description="sent as a bearer token to the webhook"
    )
    resend_interval_s: float = Field(60.0, gt=0, description="firing alerts are re-sent this often")


class WarehouseSettings(BaseModel):
    """The DuckDB warehouse, its sink, and the BI snapshot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path | None = Field(
        None, description="the warehouse file (default <data dir>/warehouse.duckdb)"
    )
    serving_path: Path | None = Field(
        None, description="the read-only BI snapshot (default <data dir>/serving.duckdb)"
    )
    batch_events: int = Field(
        200_000,
        ge=1,
        le=5_000_000,
        description="most events per sink transaction (a caught-up sink's batches are what "
        "arrived within batch_within_s, far fewer); with the quality gate on, a refused batch "
        "is quarantined whole",
    )
    batch_within_s: float = Field(2.0, gt=0, description="longest wait to fill a sink batch")
    build_interval_s: float = Field(
        60.0,
        gt=0,
        description="how often an idle running sink builds (time alone breaches unanswered "
        "requests and makes channels idle) and at most how often it refreshes the BI snapshot; "
        "a caught-up sink builds with every batch",
    )
    publish_after_build: bool = Field(
        True, description="a running sink refreshes the BI snapshot after its builds"
    )
    quality_gate: Literal["off", "quarantine"] = Field(
        "off",
        description="quarantine: the sink checks each batch with the events suite and "
        "keeps a failing one in ops.quarantine instead of loading it",
    )


class PrivacySettings(BaseModel):
    model_config = _FROZEN

    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key for actor pseudonyms; generated into the data dir if unset"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COMMPULSE_",
        env_nested_delimiter="__",
        toml_file=DEFAULT_CONFIG_FILE,
        frozen=True,
        extra="forbid",
    )

    data_dir: Path = Field(Path(".commpulse"), description="broker data, warehouse, secrets")
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    topics: TopicSettings = TopicSettings()
    ingest: IngestSettings = IngestSettings()
    privacy: PrivacySettings = PrivacySettings()
    stream: StreamSettings = StreamSettings()
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertSettings = AlertSettings()
    warehouse: WarehouseSettings = WarehouseSettings()

    @property
    def warehouse_path(self) -> Path:
        return self.warehouse.path or self.data_dir / "warehouse.duckdb"

    @property
    def serving_path(self) -> Path:
        return self.warehouse.serving_path or self.data_dir / "serving.duckdb"

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, the TOML file and ``overrides``.

    ``config`` names a TOML file that must exist; without it,
    ``./commpulse.toml`` is read when present. Errors become one
    :class:`ConfigurationError` naming the setting.
    """
    toml_file = DEFAULT_CONFIG_FILE
    if config is not None:
        if not config.is_file():
            raise ConfigurationError(f"config file not found: {config}")
        toml_file = config
    cls = type(
        "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": toml_file}}
    )
    try:
        return cls(**overrides)  # type: ignore[no-any-return]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(f"invalid settings: {problems}") from exc
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigurationError(f"invalid config file {toml_file}: {exc}") from exc


def child_environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment for a child ``commpulse`` process that should see ``settings``.

    Every setting is written out as its ``COMMPULSE_…`` variable (secrets
    included), replacing the parent's own, so a child sees exactly what the
    parent resolved from its flags, config file and environment.
    ``overrides`` are dotted setting names, e.g. ``{"stream.web_port": "0"}``
    given as ``stream__web_port="0"``.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(_PREFIX)}
    env |= _flatten(settings, _PREFIX)
    env |= {_PREFIX + key.upper(): value for key, value in overrides.items()}
    return env


_PREFIX = "COMMPULSE_"


def _flatten(model: BaseModel, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            out |= _flatten(value, key + "__")
        elif value is None:
            continue
        elif isinstance(value, SecretStr):
            out[key] = value.get_secret_value()
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, list | tuple | dict):
            out[key] = json.dumps(value, default=str)
        else:
            out[key] = str(value)
    return out
