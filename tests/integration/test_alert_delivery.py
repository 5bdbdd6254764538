"""Idle-channel alerts delivered to a real Alertmanager and to a webhook served here.

Alertmanager is Debian's ``prometheus-alertmanager`` (``scripts/system-packages.sh``
installs it), started on a free loopback port. Without it these tests skip,
except in CI (``CI=true``), where they fail instead.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from infra.alertmanager import AlertmanagerError, AlertmanagerProcess, alertmanager_binary
from infra.ports import free_port
from ingest import ChannelKind, ConfigurationError, Scope
from streams.alerting import IdleAlert, rfc3339, webhook_payload
from streams.delivery import AlertDelivery, DeliveryReport
from tests.integration.support import require_alertmanager

EXAMPLE_CONFIG = (
    Path(__file__).resolve().parents[2] / "infra" / "alertmanager" / "alertmanager.example.yml"
)
TOKEN = "s3cret-token"


# --- helpers ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _firing(now: datetime, channel_id: str | None = None) -> IdleAlert:
    return IdleAlert(
        status="firing",
        channel_id=channel_id or f"hotline-{uuid.uuid4().hex[:8]}",
        channel_kind=ChannelKind.HOTLINE,
        scope=Scope.EXTERNAL,
        channel_name="Main hotline",
        severity="warning",
        last_activity_at=now - timedelta(hours=2, seconds=1),
        threshold_business_s=7200.0,
        idle_business_s=7201.0,
        starts_at=now - timedelta(seconds=1),
        emitted_at=now,
    )


def _resolved(firing: IdleAlert, ends_at: datetime) -> IdleAlert:
    data = firing.model_dump() | {"status": "resolved", "ends_at": ends_at, "emitted_at": ends_at}
    return IdleAlert.model_validate(data)


async def _alerts_in(alertmanager: AlertmanagerProcess) -> dict[str, dict[str, Any]]:
    """What ``GET /api/v2/alerts`` lists (every filter on), by fingerprint."""
    query = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{alertmanager.url}/api/v2/alerts", params=query) as response,
    ):
        assert response.status == 200
        listed: list[dict[str, Any]] = await response.json()
    return {alert["fingerprint"]: alert for alert in listed}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Sink:
    """A webhook receiver: records each POST, answers the given statuses, then 200."""

    statuses: list[int]
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(dict(request.headers), await request.json()))
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "sink says no")


@asynccontextmanager
async def _running_sink(*statuses: int, port: int = 0) -> AsyncIterator[Sink]:
    sink = Sink(list(statuses))
    app = web.Application()
    app.router.add_post("/hook", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        host, bound = runner.addresses[0][:2]
        sink.url = f"http://{host}:{bound}/hook"
        yield sink
    finally:
        await runner.cleanup()


# --- Alertmanager ----------------------------------------------------------------------------


def test_alert_fires_then_resolves_in_alertmanager(alertmanager: AlertmanagerProcess) -> None:
    async def scenario() -> None:
        now = _now()
        firing = _firing(now)
        last_activity = firing.last_activity_at
        assert last_activity is not None
        async with AlertDelivery(
            alertmanager_url=alertmanager.url, resend_interval=timedelta(minutes=1)
        ) as delivery:
            report = await delivery.deliver(firing)
            assert report.ok and report.sent == 1
            assert delivery.firing == (firing,)

            listed = await _alerts_in(alertmanager)
            assert firing.fingerprint in listed  # our fingerprint is Alertmanager's
            shown = listed[firing.fingerprint]
            assert shown["labels"] == {
                "alertname": "ChannelIdle",
                "channel_id": firing.channel_id,
                "channel_kind": "hotline",
                "scope": "external",
                "severity": "warning",
            }
            assert shown["annotations"] == {
                "summary": f"{firing.channel_id} (hotline, external) has been idle for "
                "2.0 business hours; threshold 2.0 h",
                "last_activity": rfc3339(last_activity),
                "threshold_business_s": "7200.0",
                "idle_business_s": "7201.0",
                "channel_name": "Main hotline",
            }
            assert shown["status"]["state"] == "active"
            assert _parse(shown["startsAt"]) == firing.starts_at
            # Active only for four resend intervals unless re-sent.
            ends_at = _parse(shown["endsAt"])
            assert now + timedelta(minutes=4) <= ends_at <= datetime.now(UTC) + timedelta(minutes=4)

            resolved = _resolved(firing, _now())
            report = await delivery.deliver(resolved)
            assert report.ok
            assert not delivery.firing
            # Alertmanager 0.25's v2 API lists no resolved alerts at all (whatever the
            # filters): the alert is gone from the list as soon as its endsAt has passed.
            assert firing.fingerprint not in await _alerts_in(alertmanager)

    asyncio.run(scenario())


def test_a_late_event_resolving_before_the_alert_fired_is_accepted(
    alertmanager: AlertmanagerProcess,
) -> None:
    async def scenario() -> None:
        firing = _firing(_now())
        early = _resolved(firing, firing.starts_at - timedelta(minutes=5))
        async with AlertDelivery(alertmanager_url=alertmanager.url) as delivery:
            assert (await delivery.deliver(firing)).ok
            assert (await delivery.deliver(early)).ok  # not a 400 for endsAt < startsAt
        assert firing.fingerprint not in await _alerts_in(alertmanager)

    asyncio.run(scenario())


def test_resend_keeps_a_firing_alert_active(alertmanager: AlertmanagerProcess) -> None:
    async def scenario() -> None:
        firing = _firing(_now())
        resend = timedelta(milliseconds=500)  # so Alertmanager keeps it for 2 s
        async with AlertDelivery(alertmanager_url=alertmanager.url, resend_interval=resend) as am:
            assert (await am.deliver(firing)).ok
            first_end = _parse((await _alerts_in(alertmanager))[firing.fingerprint]["endsAt"])
            for _ in range(5):  # 2.5 s of re-sending
                await asyncio.sleep(0.5)
                report = await am.resend_firing()
                assert report.ok and report.results[0].alerts == 1
            shown = (await _alerts_in(alertmanager))[firing.fingerprint]
            assert shown["status"]["state"] == "active"
            assert _parse(shown["endsAt"]) > first_end

            # Not re-sent: Alertmanager resolves it by itself after its endsAt.
            await asyncio.sleep(2.5)
            assert firing.fingerprint not in await _alerts_in(alertmanager)

            assert (await am.deliver(_resolved(firing, _now()))).ok
            assert await am.resend_firing() == DeliveryReport()  # nothing firing, nothing sent

    asyncio.run(scenario())


def test_resend_posts_every_firing_channel_once(alertmanager: AlertmanagerProcess) -> None:
    async def scenario() -> None:
        now = _now()
        alerts = [_firing(now) for _ in range(3)]
        async with AlertDelivery(alertmanager_url=alertmanager.url) as delivery:
            for alert in alerts:
                await delivery.deliver(alert)
            again = _firing(now + timedelta(seconds=1), channel_id=alerts[0].channel_id)
            await delivery.deliver(again)  # the same channel: replaced, not added
            assert delivery.firing == (again, alerts[1], alerts[2])
            report = await delivery.resend_firing()
        assert report.ok and report.results[0].alerts == 3
        listed = await _alerts_in(alertmanager)
        assert all(listed[alert.fingerprint]["status"]["state"] == "active" for alert in alerts)

    asyncio.run(scenario())


# --- the webhook -----------------------------------------------------------------------------


def test_webhook_gets_the_v4_payload_with_the_bearer_token() -> None:
    async def scenario() -> None:
        firing = _firing(_now())
        resolved = _resolved(firing, _now())
        async with (
            _running_sink() as sink,
            AlertDelivery(webhook_url=sink.url, webhook_token=TOKEN) as delivery,
        ):
            assert (await delivery.deliver(firing)).ok
            assert (await delivery.deliver(resolved)).ok
        assert [r.headers["Authorization"] for r in sink.requests] == [f"Bearer {TOKEN}"] * 2
        assert [r.body for r in sink.requests] == [
            webhook_payload([firing]),
            webhook_payload([resolved]),
        ]
        assert sink.requests[1].body["status"] == "resolved"
        assert resolved.ends_at is not None
        assert sink.requests[1].body["alerts"][0]["endsAt"] == rfc3339(resolved.ends_at)

    asyncio.run(scenario())


def test_our_webhook_payload_has_the_shape_alertmanager_sends(tmp_path: Path) -> None:
    """Alertmanager forwards our alert to its own webhook receiver; both payloads agree."""
    require_alertmanager()
    sink_port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: commpulse\n"
        "  group_by: [alertname]\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "receivers:\n"
        "  - name: commpulse\n"
        "    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{sink_port}/hook\n"
    )

    async def scenario(alertmanager: AlertmanagerProcess) -> None:
        firing = _firing(_now())
        resolved = _resolved(firing, _now())
        async with (
            _running_sink(port=sink_port) as sink,
            AlertDelivery(alertmanager_url=alertmanager.url) as delivery,
        ):
            assert (await delivery.deliver(firing)).ok
            await asyncio.wait_for(sink.arrived.wait(), timeout=20)
            sink.arrived.clear()
            assert (await delivery.deliver(resolved)).ok
            await asyncio.wait_for(sink.arrived.wait(), timeout=20)
        theirs = [received.body for received in sink.requests]
        ours = [webhook_payload([firing]), webhook_payload([resolved])]
        # Everything agrees but Alertmanager's backlink to itself. Even the endsAt of a
        # firing alert: Alertmanager sends Go's zero time, not the endsAt it was given.
        for their, our in zip(theirs, ours, strict=True):
            assert their.pop("externalURL").startswith("http://")
            del our["externalURL"]
        assert theirs == ours
        assert theirs[0]["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
        assert theirs[1]["status"] == "resolved"

    with AlertmanagerProcess(tmp_path / "am", config_file=config) as alertmanager:
        asyncio.run(scenario(alertmanager))


# --- failures --------------------------------------------------------------------------------


def test_a_target_that_is_down_is_retried_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        down = f"http://127.0.0.1:{free_port()}"
        async with (
            _running_sink() as sink,
            AlertDelivery(
                alertmanager_url=down, webhook_url=sink.url, retries=2, backoff_s=0.01
            ) as delivery,
        ):
            report = await delivery.deliver(_firing(_now()))
        assert report.sent == 1 and report.failed == 1 and not report.ok
        failed = report.result("alertmanager")
        assert failed is not None and not failed.ok
        assert failed.attempts == 3 and failed.status is None
        assert failed.error is not None and "ClientConnectorError" in failed.error
        assert len(sink.requests) == 1  # the other target still got it

    with caplog.at_level(logging.WARNING, logger="streams.delivery"):
        asyncio.run(scenario())
    [line] = [r.getMessage() for r in caplog.records if r.name == "streams.delivery"]
    assert line.startswith("alert delivery failed target=alertmanager url=http://127.0.0.1:")
    assert "attempts=3" in line


def test_5xx_is_retried_and_4xx_is_not(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with _running_sink(503, 502) as flaky, _running_sink(400) as refusing:
            async with AlertDelivery(webhook_url=flaky.url, retries=3, backoff_s=0.01) as d:
                recovered = (await d.deliver(_firing(_now()))).results[0]
            async with AlertDelivery(webhook_url=refusing.url, retries=3, backoff_s=0.01) as d:
                refused = (await d.deliver(_firing(_now()))).results[0]
        assert recovered.ok and recovered.attempts == 3 and recovered.status == 200
        assert not refused.ok and refused.attempts == 1 and refused.status == 400
        assert refused.error == "HTTP 400: sink says no"
        assert len(refusing.requests) == 1

    with caplog.at_level(logging.WARNING, logger="streams.delivery"):
        asyncio.run(scenario())
    assert len(caplog.records) == 1 and "error=HTTP 400" in caplog.records[0].getMessage()


def test_webhook_credentials_in_the_url_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        url = f"http://127.0.0.1:{free_port()}/robot/send?access_token=very-secret"
        async with AlertDelivery(webhook_url=url, retries=0) as delivery:
            assert (await delivery.deliver(_firing(_now()))).failed == 1

    with caplog.at_level(logging.WARNING, logger="streams.delivery"):
        asyncio.run(scenario())
    assert "very-secret" not in caplog.text and "/robot/send" in caplog.text


def test_delivery_needs_start_and_does_nothing_before() -> None:
    delivery = AlertDelivery(alertmanager_url="http://127.0.0.1:1", webhook_url=None)

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="not started"):
            await delivery.deliver(_firing(_now()))
        await delivery.close()  # closing what never started is fine

    asyncio.run(scenario())
    assert not delivery.firing  # the refused alert was not taken in
    with pytest.raises(ConfigurationError, match="must be http"):
        AlertDelivery(webhook_url="ftp://example.org/hook")
    with pytest.raises(ConfigurationError, match="token"):
        AlertDelivery(webhook_url="http://127.0.0.1:1/hook", webhook_token="two\nlines")


# --- the Alertmanager process and the example config ------------------------------------------


def test_alertmanager_process_starts_on_loopback_and_stops(tmp_path: Path) -> None:
    require_alertmanager()
    process = AlertmanagerProcess(tmp_path / "am", stop_timeout=5)
    with pytest.raises(AlertmanagerError, match="not running"):
        _ = process.url
    with process:
        assert process.url.startswith("http://127.0.0.1:")
        pid = process.pid
        assert pid is not None
        assert (tmp_path / "am" / "alertmanager.yml").is_file()  # the minimal config
    assert process.pid is None and not process.is_running()
    assert not Path(f"/proc/{pid}").exists()  # gone and reaped


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("infra.alertmanager._DEBIAN_BINARY", Path("/nonexistent/alertmanager"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AlertmanagerError, match=r"apt-get install -y prometheus-alertmanager"):
        alertmanager_binary()


def test_example_config_is_valid_and_routes_as_documented(tmp_path: Path) -> None:
    require_alertmanager()
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed (it comes with prometheus-alertmanager)")
    check = subprocess.run(
        [amtool, "check-config", str(EXAMPLE_CONFIG)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr

    def receivers(*labels: str) -> str:
        command = [amtool, "config", "routes", "test", f"--config.file={EXAMPLE_CONFIG}", *labels]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    assert receivers("alertname=ChannelIdle", "scope=internal", "channel_id=im-1") == (
        "wecom-ops,dingtalk-ops,email-internal-comms"
    )
    assert receivers("alertname=ChannelIdle", "scope=external", "channel_id=hotline-main") == (
        "wecom-ops,dingtalk-ops"
    )
    assert receivers("alertname=SomethingElse") == "null"
    # The real binary loads it too (no alert is sent, so nothing leaves the machine).
    with AlertmanagerProcess(tmp_path / "am", config_file=EXAMPLE_CONFIG) as alertmanager:
        assert alertmanager.is_running()
