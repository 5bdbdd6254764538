"""Idle-channel alerts from a real worker to a real Alertmanager: fire, then resolve."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
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
CALENDAR = """
[calendars.default]
timezone = "UTC"
periods = ["00:00-24:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
"""
HOTLINE = """
[channels.{channel}]
kind = "hotline"
scope = "external"
name = "Test hotline"
idle_threshold = "1min business"
"""
CATALOG = CALENDAR + HOTLINE


def active_alerts(alertmanager: AlertmanagerProcess, channel: str) -> list[dict[str, Any]]:
    """The channel's active alerts (the Alertmanager is shared by the session's tests)."""
    response = httpx.get(
        f"{alertmanager.url}/api/v2/alerts",
        params={"active": "true", "filter": [f'channel_id="{channel}"']},
        timeout=5,
    )
    response.raise_for_status()
    return [a for a in response.json() if a["labels"].get("alertname") == "ChannelIdle"]


def _resolved(alertmanager: AlertmanagerProcess, channel: str) -> bool:
    return not active_alerts(alertmanager, channel)


def test_an_idle_channel_fires_in_alertmanager_and_resolves_on_activity(
    settings: Settings, cli_env: dict[str, str], alertmanager: AlertmanagerProcess, tmp_path: Path
) -> None:
    """Also a channel of the catalog that never had an event: idle from when it was listed."""
    catalog = tmp_path / "channels.toml"
    name = f"a{uuid.uuid4().hex[:8]}"
    hot, listed = f"hot-{name}", f"listed-{name}"
    catalog.write_text(
        CATALOG.replace("{channel}", hot)
        + f'[channels.{listed}]\nkind = "hotline"\nidle_threshold = "5s business"\n'
    )
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
    ) as running:
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
        assert wait_for(lambda: active_alerts(alertmanager, listed), timeout=60), (
            "the listed channel did not fire"
        )
        health = running.health()
        assert (health["channels"], health["listed_without_events"]) == (1, 1)
        [never] = active_alerts(alertmanager, listed)
        assert never["labels"]["scope"] == "external"  # a hotline's usual scope
        assert never["annotations"]["last_activity"] == "never"
        assert float(never["annotations"]["threshold_business_s"]) == 5.0

        back = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")  # activity now ends the silence
        send(
            settings,
            [
                canonical(
                    back,
                    "call_received",
                    channel,
                    "hotline",
                    conversation_id="c2",
                    actor="y",
                    role="customer",
                )
                for channel in (hot, listed)
            ],
        )
        for channel in (hot, listed):
            assert wait_for(partial(_resolved, alertmanager, channel), timeout=60), (
                f"the alert of {channel} did not resolve"
            )

    records = [
        IdleAlert.from_json(r.value)
        for r in consume_all(settings.kafka.bootstrap_servers, f"{name}.alerts")
    ]
    assert [a.status for a in records if a.channel_id == listed] == ["firing", "resolved"]
    assert all(a.last_activity_at is None for a in records if a.channel_id == listed)
    records = [a for a in records if a.channel_id == hot]
    assert [a.status for a in records] == ["firing", "resolved"]
    firing, resolved = records
    assert firing.starts_at == datetime.fromisoformat(quiet_since).replace(tzinfo=UTC) + timedelta(
        minutes=1
    )
    assert resolved.ends_at == datetime.fromisoformat(back).replace(tzinfo=UTC)


def test_history_imported_into_a_running_worker_fires_each_idle_channel_once(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A history import arrives in parts while the worker keeps up: between the parts the
    packer has read everything there is, but the channels' later history is still coming.
    They must not fire and resolve with every part; once the import is over, each channel
    (quiet for a day now) fires once, and only fresh activity resolves it."""
    name = f"h{uuid.uuid4().hex[:8]}"
    channels = [f"hot-{name}-{i}" for i in range(3)]
    catalog = tmp_path / "channels.toml"
    catalog.write_text(CALENDAR + "".join(HOTLINE.replace("{channel}", c) for c in channels))
    env = cli_env | {
        "COMMPULSE_TOPICS__PACKED": f"{name}.packed",
        "COMMPULSE_TOPICS__KPIS": f"{name}.kpis",
        "COMMPULSE_TOPICS__ALERTS": f"{name}.alerts",
    }
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)

    def call(channel: str, at: datetime) -> dict[str, Any]:
        when = at.strftime("%Y-%m-%d %H:%M:%S")
        return canonical(
            when, "call_received", channel, "hotline", conversation_id=f"c-{when}", role="customer"
        )

    # Ticks every 3 s: a source is backfilling for 9 s after it delivered old events.
    with worker(
        env, app_id=name, metrics__catalog=str(catalog), stream__tick_interval_s="3"
    ) as running:
        for part in range(4):  # an hour of history per part, each channel busy every minute
            hour = start + timedelta(hours=part)
            send(
                settings,
                [call(c, hour + timedelta(minutes=m)) for m in range(60) for c in channels],
            )
            applied = 180 * (part + 1)
            assert wait_for(lambda: running.health()["events"] == applied, timeout=30)  # noqa: B023
            assert wait_for(lambda: running.health()["packer_backfill"], timeout=10)
            metrics = httpx.get(f"{running.url}/metrics", timeout=5).text
            assert any(  # the part was read within three ticks
                line.startswith("commpulse_packer_backfill{") and line.endswith(" 1.0")
                for line in metrics.splitlines()
            )
            time.sleep(3.5)  # a tick or more with every partition caught up (the flap's cause)
        assert wait_for(lambda: len(_alerts(settings, name)) >= len(channels), timeout=30)
        time.sleep(7)  # ticks that could fire again, or resolve
        assert running.health()["packer_backfill"] == []
        metrics = httpx.get(f"{running.url}/metrics", timeout=5).text
        assert 'commpulse_packer_backfill{partition="0"} 0.0' in metrics
        back = [call(channels[0], datetime.now(UTC))]
        send(settings, back)
        assert wait_for(lambda: len(_alerts(settings, name)) > len(channels), timeout=30)

    transitions = [(a.channel_id, a.status) for a in _alerts(settings, name)]
    assert sorted(transitions) == sorted(
        [(c, "firing") for c in channels] + [(channels[0], "resolved")]
    )
    last = start + timedelta(hours=3, minutes=59)
    assert {a.last_activity_at for a in _alerts(settings, name)} == {last}


def _alerts(settings: Settings, name: str) -> list[IdleAlert]:
    return [
        IdleAlert.from_json(r.value)
        for r in consume_all(settings.kafka.bootstrap_servers, f"{name}.alerts")
    ]
