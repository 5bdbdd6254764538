"""KPI window records on ``commpulse.kpis``: one per update of one KPI in one window.

Value (JSON)::

    {"v": 1, "channel_id": "ticket-support-2", "channel_kind": "ticket", "scope": "external",
     "kpi": "first_response_sla_rate", "granularity": "day",
     "window_start": "2026-11-16T00:00:00Z", "window_end": "2026-11-17T00:00:00Z",
     "value": 0.5, "numerator": 1.0, "denominator": 2.0, "final": false,
     "emitted_at": "2026-11-16T13:10:02.5Z"}

``channel_id`` is null for a whole kind (within a scope). The key names the
window (channel or kind/scope, KPI, granularity, start), so the latest record
per key is the current value; ``final`` is true once the window cannot change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict

from streams.engine import KpiUpdate

__all__ = ["KpiRecord", "encode_update", "record_key"]

VERSION = 1


@lru_cache(maxsize=4096)
def _iso(t: float) -> str:
    # Cached: the records of a batch share their emission time and a few window bounds.
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def record_key(
    channel_id: str | None, kind: str, scope: str, kpi: str, granularity: str, start: float
) -> bytes:
    subject = channel_id if channel_id is not None else f"*{kind}/{scope}"
    return f"{subject}|{kpi}|{granularity}|{int(start)}".encode()


def encode_update(update: KpiUpdate, emitted_at: float) -> tuple[bytes, bytes]:
    """Key and value of the record for ``update``."""
    window = update.window
    result = update.result
    value = orjson.dumps(
        {
            "v": VERSION,
            "channel_id": update.channel_id,
            "channel_kind": update.channel_kind,
            "scope": update.scope,
            "kpi": update.kpi,
            "granularity": window.granularity,
            "window_start": _iso(window.start),
            "window_end": _iso(window.end),
            "value": result.value,
            "numerator": result.numerator,
            "denominator": result.denominator,
            "final": update.final,
            "emitted_at": _iso(emitted_at),
        }
    )
    key = record_key(
        update.channel_id,
        update.channel_kind,
        update.scope,
        update.kpi,
        window.granularity,
        window.start,
    )
    return key, value


class KpiRecord(BaseModel):
    """A KPI record read back (for ``commpulse kpis``, reconcile and tests)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1]
    channel_id: str | None
    channel_kind: str
    scope: str
    kpi: str
    granularity: Literal["hour", "day"]
    window_start: AwareDatetime
    window_end: AwareDatetime
    value: float | None
    numerator: float | None
    denominator: float | None
    final: bool
    emitted_at: AwareDatetime

    @classmethod
    def decode(cls, value: bytes) -> KpiRecord:
        return cls.model_validate_json(value)

    @property
    def subject(self) -> str:
        return (
            self.channel_id
            if self.channel_id is not None
            else f"{self.channel_kind} ({self.scope})"
        )

    @property
    def window_key(self) -> tuple[str | None, str, str, str, str, datetime]:
        return (
            self.channel_id,
            self.channel_kind,
            self.scope,
            self.kpi,
            self.granularity,
            self.window_start,
        )
