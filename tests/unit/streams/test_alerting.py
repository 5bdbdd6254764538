"""Pins the alert record on ``commpulse.alerts`` and the two payloads built from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from streams.alerting import (
    ZERO_TIME,
    AlertDecodeError,
    IdleAlert,
    alertmanager_payload,
    label_fingerprint,
    rfc3339,
    webhook_payload,
)

# The record exactly as fixed for commpulse.alerts.
FIRING = (
    b'{"alert":"ChannelIdle","status":"firing","channel_id":"hotline-main",'
    b'"channel_kind":"hotline","scope":"external","channel_name":"Main hotline",'
    b'"severity":"warning","last_activity_at":"2026-11-20T09:14:03Z",'
    b'"threshold_business_s":7200.0,"idle_business_s":7260.5,'
    b'"starts_at":"2026-11-20T11:15:03Z","ends_at":null,"emitted_at":"2026-11-20T11:15:04Z"}'
)
RESOLVED = (
    b'{"alert":"ChannelIdle","status":"resolved","channel_id":"hotline-main",'
    b'"channel_kind":"hotline","scope":"external","channel_name":null,'
    b'"severity":"warning","last_activity_at":"2026-11-20T09:14:03Z",'
    b'"threshold_business_s":7200.0,"idle_business_s":9000.0,'
    b'"starts_at":"2026-11-20T11:15:03Z","ends_at":"2026-11-20T11:45:03Z",'
    b'"emitted_at":"2026-11-20T11:45:04Z"}'
)
LABELS = {
    "alertname": "ChannelIdle",
    "channel_id": "hotline-main",
    "channel_kind": "hotline",
    "scope": "external",
    "severity": "warning",
}
NOW = datetime(2026, 11, 20, 11, 16, 0, tzinfo=UTC)


def _record(**changes: object) -> bytes:
    data = orjson.loads(FIRING) | changes
    return orjson.dumps(data)


def test_record_round_trips_byte_for_byte() -> None:
    for raw in (FIRING, RESOLVED):
        alert = IdleAlert.from_json(raw)
        assert alert.to_json() == raw


def test_times_are_normalised_to_utc_with_z() -> None:
    alert = IdleAlert.from_json(_record(last_activity_at="2026-11-20T17:14:03+08:00"))
    assert alert.last_activity_at == datetime(2026, 11, 20, 9, 14, 3, tzinfo=UTC)
    assert b'"last_activity_at":"2026-11-20T09:14:03Z"' in alert.to_json()


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"status": "pending"}, "status"),
        ({"ends_at": "2026-11-20T12:00:00Z"}, "a firing alert has no ends_at"),
        ({"status": "resolved"}, "needs ends_at"),
        ({"starts_at": "2026-11-20T11:15:03"}, "starts_at"),  # no time zone
        ({"threshold_business_s": -1.0}, "threshold_business_s"),
        ({"channel_kind": "pigeon"}, "channel_kind"),
        ({"scope": "both"}, "scope"),
        ({"severity": "page"}, "severity"),
        ({"alert": "Other"}, "alert"),
        ({"unknown": 1}, "unknown"),
        ({"channel_id": ""}, "channel_id"),
        ({"idle_business_s": "7260"}, "idle_business_s"),  # strict: no numbers as text
    ],
)
def test_invalid_records_raise_one_clear_error(changes: dict[str, object], where: str) -> None:
    with pytest.raises(AlertDecodeError, match=r"^cannot decode alert: .*") as info:
        IdleAlert.from_json(_record(**changes))
    assert where in str(info.value)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # What Alertmanager 0.25 reported for these label sets.
        ({"alertname": "ChannelIdle", "channel_id": "x"}, "bbd58db04906d3d4"),
        (LABELS, "7aa11d603c4d9f1a"),
        (LABELS | {"channel_id": "客服热线"}, "493e89d145314522"),
    ],
)
def test_fingerprint_is_alertmanagers(labels: dict[str, str], expected: str) -> None:
    assert label_fingerprint(labels) == expected


def test_an_alert_keeps_its_fingerprint_from_firing_to_resolved() -> None:
    assert IdleAlert.from_json(FIRING).fingerprint == "7aa11d603c4d9f1a"
    assert IdleAlert.from_json(RESOLVED).fingerprint == "7aa11d603c4d9f1a"


def test_alertmanager_payload_for_a_firing_alert() -> None:
    alert = IdleAlert.from_json(FIRING)
    body = alertmanager_payload([alert], resend_ttl=timedelta(minutes=4), now=NOW)
    assert body == [
        {
            "labels": LABELS,
            "annotations": {
                "summary": "hotline-main (hotline, external) has been idle for "
                "2.0 business hours; threshold 2.0 h",
                "last_activity": "2026-11-20T09:14:03Z",
                "threshold_business_s": "7200.0",
                "idle_business_s": "7260.5",
                "channel_name": "Main hotline",
            },
            "startsAt": "2026-11-20T11:15:03Z",
            "endsAt": "2026-11-20T11:20:00Z",  # now + resend_ttl
        }
    ]


def test_alertmanager_payload_for_a_resolved_alert_ends_when_activity_returned() -> None:
    alert = IdleAlert.from_json(RESOLVED)
    [item] = alertmanager_payload([alert], resend_ttl=timedelta(minutes=4), now=NOW)
    assert item["endsAt"] == "2026-11-20T11:45:03Z"
    assert item["annotations"] == {
        "summary": "hotline-main (hotline, external) is active again after "
        "2.5 business hours idle; threshold 2.0 h",
        "last_activity": "2026-11-20T09:14:03Z",
        "threshold_business_s": "7200.0",
        "idle_business_s": "9000.0",
    }  # no channel_name: unknown


def test_activity_that_returned_before_the_alert_fired_ends_it_when_it_started() -> None:
    # A late event can resolve an alert at an event time before the alert fired;
    # the record keeps that time, Alertmanager (which refuses endsAt < startsAt) gets startsAt.
    alert = IdleAlert.from_json(RESOLVED.replace(b"11:45:03Z", b"10:00:00Z"))
    assert alert.ends_at == datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    [item] = alertmanager_payload([alert], resend_ttl=timedelta(minutes=4), now=NOW)
    assert item["endsAt"] == item["startsAt"] == "2026-11-20T11:15:03Z"
    assert webhook_payload([alert])["alerts"][0]["endsAt"] == "2026-11-20T11:15:03Z"


def test_firing_alert_never_ends_before_it_starts() -> None:
    alert = IdleAlert.from_json(FIRING)
    early = datetime(2026, 11, 20, 11, 0, 0, tzinfo=UTC)  # a clock behind the emitter's
    [item] = alertmanager_payload([alert], resend_ttl=timedelta(minutes=1), now=early)
    assert item["endsAt"] == "2026-11-20T11:16:03Z"


def test_summary_uses_minutes_below_an_hour() -> None:
    alert = IdleAlert.from_json(_record(threshold_business_s=1800.0, idle_business_s=1830.0))
    assert alert.summary == (
        "hotline-main (hotline, external) has been idle for 30 business minutes; threshold 30 min"
    )


def test_webhook_payload_has_alertmanagers_version_4_shape() -> None:
    firing = IdleAlert.from_json(FIRING)
    payload = webhook_payload([firing], receiver="ops", external_url="http://am:9093")
    assert payload == {
        "version": "4",
        "groupKey": '{}:{alertname="ChannelIdle"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ops",
        "groupLabels": {"alertname": "ChannelIdle"},
        "commonLabels": LABELS,
        "commonAnnotations": firing.annotations,
        "externalURL": "http://am:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": LABELS,
                "annotations": firing.annotations,
                "startsAt": "2026-11-20T11:15:03Z",
                "endsAt": ZERO_TIME,
                "generatorURL": "",
                "fingerprint": firing.fingerprint,
            }
        ],
    }


def test_webhook_payload_of_several_alerts_keeps_only_common_pairs() -> None:
    firing = IdleAlert.from_json(FIRING)
    other = IdleAlert.from_json(
        _record(channel_id="chat-1", channel_kind="live_chat", status="resolved",
                ends_at="2026-11-20T12:00:00Z")
    )  # fmt: skip
    payload = webhook_payload([firing, other])
    assert payload["status"] == "firing"  # any firing makes the notification firing
    assert payload["receiver"] == "commpulse"
    assert payload["commonLabels"] == {
        "alertname": "ChannelIdle",
        "scope": "external",
        "severity": "warning",
    }
    assert payload["commonAnnotations"] == {
        "last_activity": "2026-11-20T09:14:03Z",
        "threshold_business_s": "7200.0",
        "idle_business_s": "7260.5",
        "channel_name": "Main hotline",
    }
    assert [a["endsAt"] for a in payload["alerts"]] == [ZERO_TIME, "2026-11-20T12:00:00Z"]
    assert webhook_payload([other])["status"] == "resolved"


def test_payloads_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one alert"):
        webhook_payload([])
    with pytest.raises(ValueError, match="positive"):
        alertmanager_payload([], resend_ttl=timedelta(0), now=NOW)
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2026, 1, 1))


def test_rfc3339_keeps_fractions_only_when_present() -> None:
    assert rfc3339(datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))) == (
        "2026-01-01T00:00:00Z"
    )
    assert rfc3339(datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)) == (
        "2026-01-01T00:00:00.250000Z"
    )


def test_a_listed_channel_that_never_had_an_event_says_so() -> None:
    firing = IdleAlert.from_json(_record(last_activity_at=None))
    assert firing.last_activity_at is None
    assert IdleAlert.from_json(firing.to_json()) == firing
    [item] = alertmanager_payload([firing], resend_ttl=timedelta(minutes=4), now=NOW)
    assert item["annotations"]["last_activity"] == "never"
    assert item["annotations"]["summary"] == (
        "hotline-main (hotline, external) has had no activity since it was listed: "
        "idle for 2.0 business hours; threshold 2.0 h"
    )
    resolved = IdleAlert.from_json(RESOLVED.replace(b'"2026-11-20T09:14:03Z"', b"null"))
    assert webhook_payload([resolved])["alerts"][0]["annotations"]["summary"] == (
        "hotline-main (hotline, external) is no longer idle after 2.5 business hours "
        "with no activity since it was listed; threshold 2.0 h"
    )
