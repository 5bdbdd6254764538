"""Idle-channel alerts from a real worker to a real Alertmanager: fire, then resolve."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from commpulse.settings import Settings
from infra.alertmanager import AlertmanagerProcess
from streams.alerting import IdleAlert
from tests.integration.stream_support import send, worker
from tests.integration.support import consume_all, wait_for
from tests.scenarios import canonical

# A calendar that always works, so "idle for one business minute" does not depend on the
# weekday the test runs on.
CATALOG = """
[calendars.default]
timezone = "UTC"
periods = ["00:00-24:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

[channels.{channel}]
kind = "hotline"
scope = "external"
name = "Test hotline"
idle_threshold = "1min business"
"""


def active_alerts(alertmanager: AlertmanagerProcess, channel: str) -> list[dict[str, Any]]:
    """The channel's active alerts (the Alertmanager is shared by the session's tests)."""
    response = httpx.get(
        f"{alertmanager.url}/api/v2/alerts",
        params={"active": "true", "filter": [f'channel_id="{channel}"']},
        timeout=5,
    )
    response.raise_for_status()
    return [a for a in response.json() if a["labels"].get("alertname") == "ChannelIdle"]


def test_an_idle_channel_fires_in_alertmanager_and_resolves_on_activity(
    settings: Settings, cli_env: dict[str, str], alertmanager: AlertmanagerProcess, tmp_path: Path
) -> None:
    catalog = tmp_path / "channels.toml"
    name = f"a{uuid.uuid4().hex[:8]}"
    hot = f"hot-{name}"
    catalog.write_text(CATALOG.replace("{channel}", hot))
    env = cli_env | {
        "COMMPULSE_TOPICS__PACKED": f"{name}.packed",
        "COMMPULSE_TOPICS__KPIS": f"{name}.kpis",
        "COMMPULSE_TOPICS__ALERTS": f"{name}.alerts",
    }
    now = datetime.now(UTC)
    quiet_since = (now - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    send(
        settings,
        [
            canonical(
                quiet_since,
                "call_received",
                hot,
                "hotline",
                conversation_id="c1",
                actor="x",
                role="customer",
            )
        ],
    )

    with worker(
        env,
        app_id=name,
        metrics__catalog=str(catalog),
        alerts__alertmanager_url=alertmanager.url,
        alerts__resend_interval_s="2",
    ):
        assert wait_for(lambda: active_alerts(alertmanager, hot), timeout=60), "no alert fired"
        [fired] = active_alerts(alertmanager, hot)
        assert fired["labels"] == {
            "alertname": "ChannelIdle",
            "channel_id": hot,
            "channel_kind": "hotline",
            "scope": "external",
            "severity": "warning",
        }
        assert fired["annotations"]["channel_name"] == "Test hotline"
        assert float(fired["annotations"]["threshold_business_s"]) == 60.0

        back = now.strftime("%Y-%m-%d %H:%M:%S")
        send(
            settings,
            [
                canonical(
                    back,
                    "call_received",
                    hot,
                    "hotline",
                    conversation_id="c2",
                    actor="y",
                    role="customer",
                )
            ],
        )
        assert wait_for(lambda: not active_alerts(alertmanager, hot), timeout=60), (
            "the alert did not resolve"
        )

    records = [
        IdleAlert.from_json(r.value)
        for r in consume_all(settings.kafka.bootstrap_servers, f"{name}.alerts")
    ]
    assert [(a.channel_id, a.status) for a in records] == [(hot, "firing"), (hot, "resolved")]
    firing, resolved = records
    assert firing.starts_at == datetime.fromisoformat(quiet_since).replace(tzinfo=UTC) + timedelta(
        minutes=1
    )
    assert resolved.ends_at == datetime.fromisoformat(back).replace(tzinfo=UTC)
