"""Channels the catalog lists that never had an event still go idle (streams/engine/listed.py).

The default calendar: 09:00-12:00 and 13:00-18:00 UTC, Monday to Friday; a hotline's idle
threshold is 2 business hours. 2026-11-16 is a Monday.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from metrics.channels import ChannelCatalog
from streams.engine import PartitionEngine
from streams.envelopes import packed_partition
from tests.unit.streams.harness import Run, catalog_from, ts

CATALOG = """
[channels."hotline-b"]
kind = "hotline"
name = "Backup hotline"

[channels."wiki"]
kind = "knowledge_base"
idle_threshold = "4h business"

[channels."no-kind"]
name = "A channel the catalog gives no kind: its partition is unknown, so it is not listed"
"""


def _run(tmp_path: Path) -> Run:
    return Run(catalog=catalog_from(tmp_path, CATALOG))


def _call(run: Run, at: str) -> None:
    run.feed(
        run.event(at, "call_received", "hotline-b", "hotline", conversation_id=at, role="customer")
    )


def test_a_listed_channel_with_no_event_fires_once_its_threshold_has_passed_since_listing(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    run.tick("2026-11-16 09:00", sources=[0])  # listed now
    assert sorted(run.engine.listed) == ["hotline-b", "wiki"]
    run.tick("2026-11-16 11:00", sources=[0])  # 2 business hours: not more than the threshold
    assert run.alerts == []
    run.tick("2026-11-16 13:30", sources=[0])  # 3.5 business hours (9-12, 13-13:30)
    [firing] = run.alerts
    assert (firing.channel_id, firing.channel_kind, firing.scope, firing.status) == (
        "hotline-b",
        "hotline",
        "external",  # the catalog gives none: a hotline's usual scope
        "firing",
    )
    assert firing.last_activity_at is None
    assert firing.starts_at == ts("2026-11-16 11:00")  # 09:00 + 2 business hours
    assert (firing.threshold_business_s, firing.idle_business_s) == (7200.0, 3.5 * 3600)
    run.tick("2026-11-16 15:00", sources=[0])  # fires once; the wiki reaches 4 h only at 14:00
    assert [(a.channel_id, a.starts_at) for a in run.alerts] == [
        ("hotline-b", ts("2026-11-16 11:00")),
        ("wiki", ts("2026-11-16 14:00")),
    ]

    _call(run, "2026-11-16 15:10")  # the first event ends the silence
    resolved = run.alerts[-1]
    assert (resolved.channel_id, resolved.status, resolved.ends_at) == (
        "hotline-b",
        "resolved",
        ts("2026-11-16 15:10"),
    )
    assert (resolved.last_activity_at, resolved.starts_at) == (None, firing.starts_at)
    assert "hotline-b" not in run.engine.listed
    assert b"0/l/hotline-b" not in run.table and b"0/m/hotline-b" in run.table

    run.tick("2026-11-17 09:00", sources=[0])  # an ordinary channel now: idle from its call
    idle_again = run.alerts[-1]
    assert (idle_again.channel_id, idle_again.status, idle_again.last_activity_at) == (
        "hotline-b",
        "firing",
        ts("2026-11-16 15:10"),
    )
    assert idle_again.starts_at == ts("2026-11-16 17:10")  # 15:10 + 2 business hours
    assert idle_again.idle_business_s == 2 * 3600 + 50 * 60  # 15:10-18:00


def test_a_restart_keeps_when_a_channel_was_listed_and_its_open_alert(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.tick("2026-11-16 09:00", sources=[0])
    run.restart()
    run.tick("2026-11-16 10:00", sources=[0])  # listed at 09:00 still, not at 10:00
    run.tick("2026-11-16 11:30", sources=[0])
    assert [(a.channel_id, a.starts_at) for a in run.alerts] == [
        ("hotline-b", ts("2026-11-16 11:00"))
    ]
    run.restart()
    run.tick("2026-11-16 16:00", sources=[0])  # no second firing for the same silence
    assert [a.channel_id for a in run.alerts] == ["hotline-b", "wiki"]


def test_an_old_first_event_carries_the_alert_over_and_a_current_one_resolves_it(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    run.tick("2026-11-16 09:00", sources=[0])
    run.tick("2026-11-16 13:30", sources=[0])
    assert [a.status for a in run.alerts if a.channel_id == "hotline-b"] == ["firing"]
    _call(run, "2026-11-13 10:00")  # history from Friday: the silence goes on
    assert [a.status for a in run.alerts if a.channel_id == "hotline-b"] == ["firing"]
    run.tick("2026-11-16 14:00", sources=[0])  # and does not fire a second time
    assert [a.status for a in run.alerts if a.channel_id == "hotline-b"] == ["firing"]
    _call(run, "2026-11-16 14:05")
    statuses = [(a.status, a.last_activity_at) for a in run.alerts if a.channel_id == "hotline-b"]
    assert statuses == [("firing", None), ("resolved", None)]


def test_a_channel_that_leaves_the_catalog_is_unlisted_and_its_alert_resolved(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    run.tick("2026-11-16 09:00", sources=[0])
    run.tick("2026-11-16 14:30", sources=[0])
    assert sorted(a.channel_id for a in run.alerts) == ["hotline-b", "wiki"]
    smaller = catalog_from(tmp_path, '[channels."wiki"]\nkind = "knowledge_base"\n')
    config = replace(run.engine.config, catalog=smaller)
    run.engine = PartitionEngine.restore(0, config, run.table.items())  # restarted with it
    run.tick("2026-11-16 15:00", sources=[0])
    gone = run.alerts[-1]
    assert (gone.channel_id, gone.status, gone.ends_at) == (
        "hotline-b",
        "resolved",
        ts("2026-11-16 15:00"),
    )
    assert list(run.engine.listed) == ["wiki"] and b"0/l/hotline-b" not in run.table


def test_a_listed_channel_is_judged_only_on_its_own_partition_once_it_is_read(
    tmp_path: Path,
) -> None:
    """Each engine lists only its packed partition's kinds, and a listed channel is judged
    only when the packer has read its partition of the events topic to the end."""
    catalog = catalog_from(tmp_path, CATALOG)
    run = Run(catalog=catalog, sources=4)
    config = replace(run.engine.config, packed_partitions=12)
    hotline = packed_partition("hotline", 12)
    engines = {p: PartitionEngine(p, config) for p in (hotline, packed_partition("forum", 12))}
    for engine in engines.values():
        engine.tick(ts("2026-11-16 09:00"), [0, 1, 2, 3])
    assert {p: list(e.listed) for p, e in engines.items()} == {
        hotline: ["hotline-b"],
        packed_partition("forum", 12): [],
    }
    listing = engines[hotline].listed["hotline-b"]
    others = [s for s in range(4) if s != listing.source]
    engines[hotline].tick(ts("2026-11-16 16:00"), others)
    assert engines[hotline].updates(0.0)[1] == []
    engines[hotline].tick(ts("2026-11-16 16:01"), [listing.source])
    [firing] = engines[hotline].updates(0.0)[1]
    assert (firing.channel_id, firing.status) == ("hotline-b", "firing")


def test_without_a_catalog_nothing_is_listed() -> None:
    run = Run(catalog=ChannelCatalog())
    run.tick("2026-11-16 09:00", sources=[0])
    run.tick("2026-11-20 09:00", sources=[0])
    assert run.engine.listed == {} and run.alerts == []


def test_events_of_another_kind_than_the_catalogs_are_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _run(tmp_path)
    run.tick("2026-11-16 09:00", sources=[0])
    for at in ("2026-11-16 09:10", "2026-11-16 09:20"):
        run.feed(run.event(at, "message_sent", "wiki", "im", scope="internal", message_id=at))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        (
            "channel=wiki its events say kind=im, the catalog says kind=knowledge_base: the "
            "stream counts them under im, the warehouse under knowledge_base, and the catalog's "
            "entry stays without events (it will be reported idle); correct the catalog"
        )
    ]
