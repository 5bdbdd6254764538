"""The idle-channel alert record and the payloads that carry it to Alertmanager and webhooks.

One :class:`IdleAlert` per transition (``firing`` or ``resolved``) is the value
of a record on ``commpulse.alerts`` (key = ``channel_id``): compact JSON, every
field present (``null`` included), times in UTC with a ``Z``.

Two outward shapes are built from it, both pure functions of their arguments:

* :func:`alertmanager_payload` — the body of Alertmanager's ``POST
  /api/v2/alerts``. A firing alert carries ``endsAt = now + resend_ttl``, so
  Alertmanager keeps it active only while we keep re-sending it (as Prometheus
  does); a resolved one carries the time activity returned.
* :func:`webhook_payload` — the JSON body Alertmanager's own ``webhook_config``
  receiver POSTs (protocol ``version "4"``), so a receiver written for
  Alertmanager also takes ours directly.

:attr:`IdleAlert.fingerprint` is Alertmanager's own fingerprint of the label
set, so the id in a webhook payload is the id ``GET /api/v2/alerts`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ingest import ChannelKind, CommpulseError, Scope

__all__ = [
    "ALERT_NAME",
    "ZERO_TIME",
    "AlertDecodeError",
    "AlertStatus",
    "IdleAlert",
    "Severity",
    "alertmanager_payload",
    "label_fingerprint",
    "rfc3339",
    "webhook_payload",
]

ALERT_NAME: Final = "ChannelIdle"
#: What Alertmanager puts in ``endsAt`` of a firing alert that has no end (Go's zero time).
ZERO_TIME: Final = "0001-01-01T00:00:00Z"

AlertStatus = Literal["firing", "resolved"]
Severity = Literal["info", "warning", "critical"]

_FNV64_OFFSET: Final = 0xCBF29CE484222325
_FNV64_PRIME: Final = 0x100000001B3
_SEPARATOR: Final = b"\xff"  # cannot occur in UTF-8, as in prometheus/common model.SeparatorByte

Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class AlertDecodeError(CommpulseError):
    """A record on the alerts topic is not a valid :class:`IdleAlert`."""


class IdleAlert(BaseModel):
    """A channel went quiet for longer than its threshold (``firing``), or came back (``resolved``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert: Literal["ChannelIdle"] = ALERT_NAME
    status: AlertStatus
    channel_id: Annotated[str, Field(min_length=1, max_length=128)]
    channel_kind: ChannelKind
    scope: Scope
    channel_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    severity: Severity = "warning"
    #: None: a channel of the catalog that has had no event since the worker listed it
    last_activity_at: AwareDatetime | None
    threshold_business_s: Seconds
    idle_business_s: Seconds
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    emitted_at: AwareDatetime

    @field_validator("last_activity_at", "starts_at", "ends_at", "emitted_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _ends_with_status(self) -> Self:
        if self.status == "firing" and self.ends_at is not None:
            raise ValueError("a firing alert has no ends_at")
        if self.status == "resolved" and self.ends_at is None:
            raise ValueError("a resolved alert needs ends_at (when activity returned)")
        # ends_at may precede starts_at: a late event can show that activity returned
        # before the alert fired. The payloads clamp it (see _ends_at).
        return self

    def to_json(self) -> bytes:
        """The record value on ``commpulse.alerts``."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_json(cls, value: bytes | str) -> IdleAlert:
        """Parse and validate one record value; raises :class:`AlertDecodeError`."""
        try:
            return cls.model_validate_json(value, strict=True)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "alert"
            raise AlertDecodeError(f"cannot decode alert: {where}: {first['msg']}") from exc

    @property
    def labels(self) -> dict[str, str]:
        """The identity of the alert in Alertmanager (what it deduplicates and groups on)."""
        return {
            "alertname": self.alert,
            "channel_id": self.channel_id,
            "channel_kind": self.channel_kind.value,
            "scope": self.scope.value,
            "severity": self.severity,
        }

    @property
    def annotations(self) -> dict[str, str]:
        """What a person reads; Alertmanager annotation values are strings."""
        notes = {
            "summary": self.summary,
            "last_activity": (
                "never" if self.last_activity_at is None else rfc3339(self.last_activity_at)
            ),
            "threshold_business_s": str(self.threshold_business_s),
            "idle_business_s": str(self.idle_business_s),
        }
        if self.channel_name is not None:
            notes["channel_name"] = self.channel_name
        return notes

    @property
    def summary(self) -> str:
        """One sentence, e.g. ``hotline-main (hotline, external) has been idle for 2.0
        business hours; threshold 2.0 h``."""
        who = f"{self.channel_id} ({self.channel_kind.value}, {self.scope.value})"
        idle = _business_duration(self.idle_business_s)
        threshold = _short_duration(self.threshold_business_s)
        if self.last_activity_at is None:  # listed in the catalog, never active
            if self.status == "firing":
                return (
                    f"{who} has had no activity since it was listed: idle for {idle}; "
                    f"threshold {threshold}"
                )
            return (
                f"{who} is no longer idle after {idle} with no activity since it was listed; "
                f"threshold {threshold}"
            )
        if self.status == "firing":
            return f"{who} has been idle for {idle}; threshold {threshold}"
        return f"{who} is active again after {idle} idle; threshold {threshold}"

    @property
    def fingerprint(self) -> str:
        """Alertmanager's fingerprint of :attr:`labels` (see :func:`label_fingerprint`)."""
        return label_fingerprint(self.labels)


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: 16 hex digits, stable across runs.

    FNV-1a 64 over ``name 0xff value 0xff`` for each label in name order, as
    ``labelSetToFingerprint`` in prometheus/common ``model/signature.go``.
    """
    digest = _FNV64_OFFSET
    for name, value in sorted(labels.items()):
        for byte in name.encode() + _SEPARATOR + value.encode() + _SEPARATOR:
            digest = ((digest ^ byte) * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def rfc3339(moment: datetime) -> str:
    """``2026-11-20T09:14:03Z`` (fractions of a second only when there are any)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: a time zone is required")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(
    alerts: Sequence[IdleAlert], *, resend_ttl: timedelta, now: datetime
) -> list[dict[str, Any]]:
    """The body of Alertmanager's ``POST /api/v2/alerts`` (a list of postable alerts).

    A firing alert ends at ``now + resend_ttl`` (never before it started), so
    Alertmanager resolves it by itself unless it is re-sent in time.
    """
    if resend_ttl <= timedelta(0):
        raise ValueError("resend_ttl must be positive")
    body: list[dict[str, Any]] = []
    for alert in alerts:
        if alert.ends_at is None:
            ends_at = max(now, alert.starts_at) + resend_ttl
        else:
            ends_at = _ends_at(alert)
        body.append(
            {
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": rfc3339(ends_at),
            }
        )
    return body


def webhook_payload(
    alerts: Sequence[IdleAlert], *, receiver: str = "commpulse", external_url: str = ""
) -> dict[str, Any]:
    """A notification in the shape of Alertmanager's webhook receiver, ``version "4"``.

    Sources for the shape: the ``webhook_config`` section of Alertmanager's
    configuration docs (prometheus.io/docs/alerting/latest/configuration/
    #webhook_config), and in prometheus/alertmanager ``notify/webhook/webhook.go``
    (``Message``: ``version``, ``groupKey``, ``truncatedAlerts`` beside the
    embedded ``template.Data``) and ``template/template.go`` (``Data``:
    ``receiver``, ``status``, ``alerts``, ``groupLabels``, ``commonLabels``,
    ``commonAnnotations``, ``externalURL``; ``Alert``: ``status``, ``labels``,
    ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``,
    ``fingerprint``). The group is ``alertname``, as a route with
    ``group_by: [alertname]`` at the root would make it; a firing alert's
    ``endsAt`` is Go's zero time. The shape is checked against a real
    Alertmanager by the integration tests.
    """
    if not alerts:
        raise ValueError("a notification needs at least one alert")
    items = [
        {
            "status": alert.status,
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": rfc3339(alert.starts_at),
            "endsAt": ZERO_TIME if alert.ends_at is None else rfc3339(_ends_at(alert)),
            "generatorURL": "",
            "fingerprint": alert.fingerprint,
        }
        for alert in alerts
    ]
    group_labels = {"alertname": ALERT_NAME}
    return {
        "version": "4",
        "groupKey": "{}:" + _label_set(group_labels),
        "truncatedAlerts": 0,
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": _common([alert.labels for alert in alerts]),
        "commonAnnotations": _common([alert.annotations for alert in alerts]),
        "externalURL": external_url,
        "alerts": items,
    }


def _ends_at(alert: IdleAlert) -> datetime:
    """When a resolved alert ended, never before it started (Alertmanager answers 400 to that)."""
    assert alert.ends_at is not None
    return max(alert.ends_at, alert.starts_at)


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every map has, as Alertmanager computes commonLabels/commonAnnotations."""
    first, *rest = maps
    return {key: value for key, value in first.items() if all(m.get(key) == value for m in rest)}


def _label_set(labels: Mapping[str, str]) -> str:
    """Prometheus' text form of a label set: ``{alertname="ChannelIdle"}``."""
    pairs = ", ".join(f'{name}="{_escape(value)}"' for name, value in sorted(labels.items()))
    return "{" + pairs + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _business_duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} business hours"
    if seconds >= 60:
        return f"{seconds / 60:.0f} business minutes"
    return f"{seconds:.0f} business seconds"


def _short_duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
