"""Idle alerts, and state that survives a restart or a replay unchanged."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from metrics.channels import ChannelCatalog
from metrics.windows import WindowClock
from streams.engine import EngineConfig, PartitionEngine
from streams.engine.state import chunk_key, parse_chunk_key, parse_key, read_chunk_head
from tests.unit.streams.harness import Run, catalog_from, ts


def test_an_idle_channel_fires_once_and_resolves_on_activity() -> None:
    run = Run()
    e = run.event
    hot = {"channel": "hot-2", "kind": "hotline"}
    run.feed(
        e(
            "2026-11-16 10:00",
            "call_received",
            **hot,
            conversation_id="k",
            actor="x",
            role="customer",
        )
    )
    run.tick(
        "2026-11-16 13:00", sources=[0]
    )  # 2 business hours (10-12): not more than the threshold
    assert run.alerts == []
    run.tick("2026-11-16 13:30", sources=[0])
    run.tick("2026-11-16 14:00", sources=[0])
    [firing] = run.alerts
    assert (firing.channel_id, firing.status) == ("hot-2", "firing")
    assert firing.starts_at == ts("2026-11-16 12:00")  # 10:00 + 2 business hours
    assert (firing.threshold_business_s, firing.idle_business_s) == (7200.0, 9000.0)
    run.feed(
        e(
            "2026-11-16 14:10",
            "call_received",
            **hot,
            conversation_id="k2",
            actor="y",
            role="customer",
        )
    )
    resolved = run.alerts[-1]
    assert (resolved.status, resolved.ends_at, len(run.alerts)) == (
        "resolved",
        ts("2026-11-16 14:10"),
        2,
    )


def test_no_alert_while_a_source_delivers_history_then_one_alert_from_its_last_activity() -> None:
    run = Run()
    hot = {"channel": "hot-2", "kind": "hotline", "actor": "x", "role": "customer"}
    run.feed(run.event("2026-11-16 10:00", "call_received", **hot, conversation_id="k"))
    run.tick("2026-11-16 14:00", sources=[0], backfill=[0])  # caught up between two parts
    run.feed(run.event("2026-11-16 10:30", "call_received", **hot, conversation_id="k2"))
    run.tick("2026-11-16 14:00:10", sources=[0], backfill=[0])
    assert run.alerts == []
    run.tick("2026-11-16 14:00:20", sources=[0], backfill=[3])  # the import is over here
    run.tick("2026-11-16 14:00:30", sources=[0])
    [firing] = run.alerts
    assert (firing.status, firing.last_activity_at) == ("firing", ts("2026-11-16 10:30"))
    assert firing.starts_at == ts("2026-11-16 13:30")  # 10:30 + 2 business hours (10:30-12, 13-)
    assert firing.idle_business_s == 2.5 * 3600 + 20


def test_a_tick_of_another_worker_whose_clock_is_a_little_behind_still_judges_its_sources() -> None:
    run = Run(sources=2)
    hot = {"channel": "hot-2", "kind": "hotline", "actor": "x", "role": "customer"}
    run.feed(run.event("2026-11-16 10:00", "call_received", **hot, conversation_id="k"), src=1)
    run.tick("2026-11-16 14:00:05", sources=[0], assigned=[0])  # worker A's packer
    run.tick("2026-11-16 14:00:00", sources=[1], assigned=[1])  # B's, its clock 5 s behind
    [firing] = run.alerts
    assert (firing.channel_id, firing.idle_business_s) == ("hot-2", 3 * 3600)


def test_old_activity_resolves_an_alert_only_if_it_ends_the_silence() -> None:
    run = Run()
    hot = {"channel": "hot-2", "kind": "hotline", "actor": "x", "role": "customer"}
    run.feed(run.event("2026-11-16 10:00", "call_received", **hot, conversation_id="k"))
    run.tick("2026-11-16 14:00", sources=[0])
    assert [a.status for a in run.alerts] == ["firing"]  # 3 business hours idle
    run.feed(run.event("2026-11-16 10:30", "call_received", **hot, conversation_id="k2"))
    assert [a.status for a in run.alerts] == ["firing"]  # still 2.5 business hours idle at 14:00
    run.feed(run.event("2026-11-16 12:30", "call_received", **hot, conversation_id="k3"))
    firing, resolved = run.alerts  # 1 business hour (13-14) is within the threshold
    assert (resolved.status, resolved.ends_at) == ("resolved", ts("2026-11-16 12:30"))
    assert resolved.last_activity_at == firing.last_activity_at == ts("2026-11-16 10:00")


def test_no_alert_while_a_source_lags_or_for_an_archived_channel() -> None:
    run = Run()
    e = run.event
    run.feed(
        e(
            "2026-11-16 10:00",
            "message_sent",
            channel="old",
            kind="im",
            scope="internal",
            message_id="m",
            actor="u",
        ),
        e(
            "2026-11-16 10:05",
            "channel_archived",
            channel="gone",
            kind="im",
            scope="internal",
            actor="admin",
        ),
    )
    run.tick("2026-11-30 10:00", sources=[7])  # source partition 0 not caught up: no judgement
    assert run.alerts == []
    run.tick("2026-11-30 10:01", sources=[0])
    assert [a.channel_id for a in run.alerts] == ["old"]


def _events() -> list[dict[str, Any]]:
    run = Run()
    e = run.event
    tk = {"channel": "tk", "kind": "ticket"}
    events = [
        e(
            "2026-11-16 09:00",
            "ticket_opened",
            **tk,
            conversation_id="r1",
            actor="c1",
            role="customer",
        ),
        e("2026-11-16 09:30", "ticket_replied", **tk, conversation_id="r1", actor="a1"),
        e("2026-11-16 10:00", "ticket_resolved", **tk, conversation_id="r1", actor="a1"),
        e(
            "2026-11-16 11:00",
            "ticket_opened",
            **tk,
            conversation_id="r2",
            actor="c2",
            role="customer",
        ),
        e(
            "2026-11-17 09:00",
            "ticket_reopened",
            **tk,
            conversation_id="r1",
            actor="c1",
            role="customer",
        ),
        e("2026-11-17 15:00", "ticket_replied", **tk, conversation_id="r2", actor="a2"),
        e(
            "2026-11-17 16:00",
            "message_sent",
            channel="mail",
            kind="ticket",
            message_id="x",
            actor="a2",
        ),
        e("2027-03-01 00:00", "channel_created", channel="zz", kind="ticket"),
    ]
    return [{**event, "_o": offset} for offset, event in enumerate(events)]


def _finals(engine: PartitionEngine, batches: list[list[dict[str, Any]]]) -> set[Any]:
    """The final records of ``batches``, and of the partition found idle after them."""
    finals = set()
    for batch in batches:
        engine.apply(0, batch)
        kpis, _ = engine.updates(1e12)
        finals |= {(u.channel_id, u.kpi, u.window, u.result) for u in kpis if u.final}
    _idle(engine)
    kpis, _ = engine.updates(1e12)
    return finals | {(u.channel_id, u.kpi, u.window, u.result) for u in kpis if u.final}


def _idle(engine: PartitionEngine) -> None:
    """Partition 0 caught up at two ticks: its channels have delivered all they had."""
    for _ in range(2):
        engine.tick(2e9, [0], [0], backfill=[0])


def _four_then_checkpoint(
    config: EngineConfig, events: list[dict[str, Any]]
) -> tuple[set[Any], PartitionEngine, set[Any], dict[bytes, bytes | None]]:
    """The finals of all ``events`` uninterrupted; an engine given the first four, its finals
    and its checkpoint."""
    uninterrupted = _finals(PartitionEngine(0, config), [events])
    first = PartitionEngine(0, config)
    before = _finals(first, [events[:4]])
    return uninterrupted, first, before, dict(first.checkpoint())


def test_restart_from_the_checkpoint_gives_the_same_final_kpis() -> None:
    config = EngineConfig(Run().catalog, WindowClock("UTC"), emit_interval_s=0.0)
    events = _events()
    uninterrupted, _, before, table = _four_then_checkpoint(config, events)
    restarted = PartitionEngine.restore(
        0, config, [(k, v) for k, v in table.items() if v is not None]
    )
    # The worker died after its checkpoint: the packer re-sends events 2-3 as well.
    after = _finals(restarted, [events[2:]])
    assert before | after == uninterrupted
    assert len(uninterrupted) > 20


def test_a_checkpoint_cut_short_by_a_kill_restores_and_replays_to_the_same_final_kpis() -> None:
    """kill -9 after a batch's day pieces reached the changelog, before its channel pieces
    and clock: a channel new in that batch comes back with its days and no channel piece.
    It must wait for the replay (which gives it one) and not break the batch before that."""
    config = EngineConfig(Run().catalog, WindowClock("UTC"), emit_interval_s=0.0)
    events = _events()
    uninterrupted, first, before, table = _four_then_checkpoint(config, events)
    _finals(first, [events[4:7]])  # event 6 is the first of channel "mail"
    cut_short = [(k, v) for k, v in first.checkpoint() if parse_key(k)[1] == "b"]
    assert ("mail" in {parse_key(k)[3] for k, _ in cut_short}) and "mail" not in {
        parse_key(k)[3] for k in table
    }
    table |= dict(cut_short)
    restarted = PartitionEngine.restore(0, config, [(k, v) for k, v in table.items() if v])
    # The first batch after the restart replays only part of what the kill cut short.
    after = _finals(restarted, [events[4:5], events[4:]])
    assert before | after == uninterrupted


def test_a_replayed_batch_changes_nothing() -> None:
    config = EngineConfig(Run().catalog, WindowClock("UTC"), emit_interval_s=0.0)
    events = _events()
    once = _finals(PartitionEngine(0, config), [events])
    twice = _finals(PartitionEngine(0, config), [events[:6], events[:6], events[3:]])
    assert once == twice


def _im(run: Run, at: str, channel: str, message_id: str) -> dict[str, Any]:
    return run.event(
        at, "message_sent", channel, "im", scope="internal", role="employee", message_id=message_id
    )


def test_a_kind_window_waits_for_every_source_partition_until_the_quiet_one_is_idle() -> None:
    run = Run(sources=2)
    run.feed(_im(run, "2026-11-16 10:00", "im-a", "a1"), _im(run, "2026-11-16 12:00", "im-a", "a2"))
    # im-a's 10:00 hour is final; the kind's waits: partition 1 could still hold an im event.
    assert run.final("im-a", "volume", "hour", "2026-11-16 10:00").value == 1
    assert "2026-11-16 10:00" not in run.finals_for("*im/internal", "volume", "hour")

    run.tick("2026-11-21 08:00:00", sources=[1])  # the packer has read all of partition 1 ...
    assert "2026-11-16 10:00" not in run.finals_for("*im/internal", "volume", "hour")
    run.tick("2026-11-21 08:00:10", sources=[1])  # ... and still has at the next tick: idle
    assert run.final("*im/internal", "volume", "hour", "2026-11-16 10:00").value == 1
    assert "2026-11-16 12:00" not in run.finals_for("*im/internal", "volume", "hour")

    # A new channel of partition 1 with older history is not late: its own watermark rules
    # it. Its own windows count the event; the kind's window is final and stays as it was.
    run.feed(_im(run, "2026-11-16 10:30", "im-b", "b1"), src=1)
    assert run.engine.late_dropped == 0
    run.tick("2026-11-21 08:00:20", sources=[1])
    run.tick("2026-11-21 08:00:30", sources=[1])  # im-b has delivered all it had
    assert run.final("im-b", "volume", "hour", "2026-11-16 10:00").value == 1
    assert run.final("*im/internal", "volume", "hour", "2026-11-16 10:00").value == 1
    # Since then im-b follows its group, which has moved on: an older event is late now.
    run.feed(_im(run, "2026-11-16 11:00", "im-b", "b2"), src=1)
    assert run.engine.late_dropped == 1


def test_an_idle_partition_moves_only_to_where_the_kind_stood_a_tick_earlier() -> None:
    run = Run(sources=2)
    run.feed(_im(run, "2026-11-16 10:00", "im-a", "a1"))
    run.tick("2026-11-21 08:00:00", sources=[1], assigned=[1])
    # A burst: partition 0's part is read before partition 1's has been written.
    run.feed(_im(run, "2026-11-16 15:00", "im-a", "a2"))
    run.tick("2026-11-21 08:00:10", sources=[1], assigned=[1])
    run.feed(_im(run, "2026-11-16 14:00", "im-b", "b1"), src=1)  # partition 1's part
    assert run.engine.late_dropped == 0
    assert run.engine.clock.watermarks == {
        "0/im": ts("2026-11-16 15:00"),
        "1/im": ts("2026-11-16 14:00"),
    }


def test_ticks_replayed_after_a_restart_change_nothing() -> None:
    run = Run(sources=2)
    a1, a2 = _im(run, "2026-11-16 10:00", "im-a", "a1"), _im(run, "2026-11-16 15:00", "im-a", "a2")
    run.feed(a1)
    first = run.tick("2026-11-21 08:00:00", sources=[1], assigned=[1])
    run.feed(a2)
    second = run.tick("2026-11-21 08:00:10", sources=[1], assigned=[1])  # partition 1 is idle
    # A crash. The state was written after each batch, the offsets were last committed
    # before the first event: the restarted worker reads it all again. Judged against the
    # newer state, the first tick would move partition 1 up to 15:00, and its 14:00 event
    # (written during the burst, packed after the ticks) would be late; a1 would count as late.
    run.restart()
    run.replay([a1 | {"_o": 0}])
    run.tick("2026-11-21 08:00:00", sources=[1], assigned=[1], offset=first)
    run.replay([a2 | {"_o": 1}])
    run.tick("2026-11-21 08:00:10", sources=[1], assigned=[1], offset=second)
    assert run.engine.late_dropped == 0
    run.feed(_im(run, "2026-11-16 14:00", "im-b", "b1"), src=1)
    assert run.engine.late_dropped == 0
    assert run.engine.clock.watermarks == {
        "0/im": ts("2026-11-16 15:00"),
        "1/im": ts("2026-11-16 14:00"),
    }
    assert run.final("im-a", "volume", "hour", "2026-11-16 10:00").value == 1  # sent once


def test_a_partition_that_falls_behind_is_not_idle_any_more() -> None:
    run = Run(sources=2)
    run.feed(_im(run, "2026-11-16 10:00", "im-a", "a1"))
    run.tick("2026-11-21 08:00:00", sources=[1], assigned=[1])
    run.feed(_im(run, "2026-11-16 15:00", "im-a", "a2"))
    run.tick("2026-11-21 08:00:10", sources=[], assigned=[1])  # partition 1 is being written
    run.tick("2026-11-21 08:00:20", sources=[1], assigned=[1])  # caught up again: not yet idle
    run.feed(_im(run, "2026-11-16 14:00", "im-b", "b1"), src=1)
    assert run.engine.late_dropped == 0


def test_changed_windows_are_sent_less_often_while_the_worker_is_behind() -> None:
    run = Run()
    engine = run.engine
    engine.config = replace(engine.config, emit_interval_s=1.0, behind_emit_interval_s=10.0)

    def changed_after(offset: int, at: float, *, behind: bool) -> int:
        event = run.event("2026-11-16 10:00", "message_sent", "im-a", "im", message_id=f"m{offset}")
        engine.apply(0, [event | {"_o": offset}])
        kpis, _ = engine.updates(at, behind=behind)
        assert not any(update.final for update in kpis)
        return len(kpis)

    assert changed_after(0, 100.0, behind=False) > 0  # the first change goes out at once
    assert changed_after(1, 102.0, behind=True) == 0  # 2 s later, but behind: held back
    assert changed_after(2, 109.0, behind=True) == 0
    assert changed_after(3, 110.0, behind=True) > 0  # 10 s after the last: sent
    assert changed_after(4, 110.5, behind=False) == 0  # within the second
    assert changed_after(5, 111.0, behind=False) > 0  # not behind any more: once a second


def test_days_past_every_rule_are_forgotten_and_deleted_from_the_changelog() -> None:
    engine = PartitionEngine(0, EngineConfig(ChannelCatalog(), WindowClock("UTC")))
    events = _events()
    engine.apply(0, events[:-1])
    engine.updates(1e12)
    engine.checkpoint()
    days = {day for _, day in engine.buckets}
    assert len(days) == 2 and engine.resolved_on("tk", min(days)) is not None
    assert len(engine._resolutions) == 1

    engine.apply(0, events[-1:])  # 2027-03-01: both November days are past every rule
    engine.updates(1e12)
    _idle(engine)  # ... once the channels have delivered all they had
    engine.updates(1e12)
    assert set(engine.buckets) == {("zz", max(day for _, day in engine.buckets))}
    assert engine._resolutions == {}  # nothing of those days is kept
    deleted = [key for key, value in engine.checkpoint() if value is None]
    assert len(deleted) == 3  # tk's two days and mail's one


def test_a_day_is_kept_while_a_kind_window_that_counts_its_people_is_not_final() -> None:
    """A kind's 28-day active users read the people of its channels' 27 days before; a day
    that has expired for its channel must still be there when the kind's window turns final
    (which waits for the kind in every source partition)."""
    run = Run(sources=2)
    run.feed(
        {**_im(run, "2026-09-01 10:00", "im-a", "m1"), "actor_id": "first"},
        _im(run, "2026-09-11 10:00", "im-a", "m2"),
        {**_im(run, "2026-09-11 11:00", "im-a", "m3"), "actor_id": "second"},
    )
    run.feed(_im(run, "2026-09-02 12:00", "im-b", "m4"), src=1)  # partition 1 lags behind
    # Partition 0 runs months ahead: im-a's September days are past every rule for im-a.
    run.feed(_im(run, "2026-12-01 10:00", "im-a", "m5"))
    assert "2026-09-11 00:00" not in run.finals_for("*im/internal", "active_users_28d", "day")
    run.tick("2026-12-01 10:10:00", sources=[1])
    run.tick("2026-12-01 10:10:10", sources=[1])  # partition 1 is idle: the kind moves on

    # On 11 September im-a had "someone" and "second"; in the 27 days before, "first".
    assert run.final("im-a", "active_users_28d", "day", "2026-09-11 00:00").value == 3
    assert run.final("*im/internal", "active_users_28d", "day", "2026-09-11 00:00").value == 3
    assert run.final("*im/internal", "active_users_1d", "day", "2026-09-11 00:00").value == 2


def test_a_day_is_kept_while_a_kind_window_that_counts_its_requests_resolutions_is_not_final() -> (
    None
):
    """A request stays in the day it opened; its resolution counts (first-contact resolution)
    in the day it was resolved, up to 30 days later, and the kind's window of that day can
    turn final long after the channel's rules for the opening day have run out."""
    run = Run(sources=2)
    tk = {"channel": "tk", "kind": "ticket", "conversation_id": "r1"}
    run.feed(
        run.event("2026-09-01 09:00", "ticket_opened", **tk, actor="c1", role="customer"),
        run.event("2026-09-01 09:30", "ticket_replied", **tk, actor="a1"),
        run.event("2026-09-21 10:00", "ticket_resolved", **tk, actor="a1"),
    )
    run.feed(run.event("2026-09-02 12:00", "ticket_opened", "tk-2", "ticket"), src=1)  # lags
    run.feed(run.event("2026-12-10 10:00", "channel_created", "tk", "ticket"))
    assert "2026-09-21 00:00" not in run.finals_for("*ticket/external", "fcr_rate", "day")
    run.tick("2026-12-10 10:10:00", sources=[1])
    run.tick("2026-12-10 10:10:10", sources=[1])  # partition 1 is idle: the kind moves on

    assert run.final("tk", "fcr_rate", "day", "2026-09-21 00:00") == (1.0, 1.0, 1.0)
    assert run.final("*ticket/external", "fcr_rate", "day", "2026-09-21 00:00") == (1.0, 1.0, 1.0)
    assert run.final("*ticket/external", "fcr_rate", "hour", "2026-09-21 10:00").value == 1.0


def test_a_day_is_kept_for_a_reopen_window_longer_than_the_state_s_retention(
    tmp_path: Path,
) -> None:
    """With a 30-day reopen window, a request resolved 25 days after it opened settles 55 days
    after its opening day, after that day's retention (51 days by default) has run out."""
    run = Run(catalog=catalog_from(tmp_path, '[rules]\nreopen_window = "30d"\n'))
    tk = {"channel": "tk", "kind": "ticket", "conversation_id": "r1"}
    run.feed(
        run.event("2026-09-01 09:00", "ticket_opened", **tk, actor="c1", role="customer"),
        run.event("2026-09-01 09:30", "ticket_replied", **tk, actor="a1"),
        run.event("2026-09-26 10:00", "ticket_resolved", **tk, actor="a1"),
    )
    run.feed(run.event("2026-10-24 10:00", "channel_created", "tk", "ticket"))
    assert ("tk", date(2026, 9, 1).toordinal()) in run.engine.buckets
    run.finish("ticket")

    assert run.final("tk", "fcr_rate", "day", "2026-09-26 00:00") == (1.0, 1.0, 1.0)
    assert run.final("*ticket/external", "fcr_rate", "day", "2026-09-26 00:00") == (1.0, 1.0, 1.0)


def _compacted(table: dict[bytes, bytes], writes: list[tuple[bytes, bytes | None]]) -> None:
    """``writes`` as a compacted changelog keeps them: the latest value per key, tombstones delete."""
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def _chunk_keys(table: dict[bytes, bytes]) -> set[bytes]:
    return {key for key in table if parse_key(key)[1] == "c"}


def _referenced_chunks(table: dict[bytes, bytes]) -> set[bytes]:
    """The chunk keys the heads in ``table`` name."""
    named = set()
    for key, value in table.items():
        _, kind, day, channel_id = parse_key(key)
        head = read_chunk_head(value) if kind == "b" else None
        if head is not None:
            assert day is not None and channel_id is not None
            generation, count = head
            named |= {chunk_key(0, channel_id, day, generation, i) for i in range(count)}
    return named


def _records_of_100_bytes() -> EngineConfig:
    """State records of at most 100 bytes: every day of :func:`_events` but one goes in chunks."""
    return EngineConfig(
        Run().catalog, WindowClock("UTC"), emit_interval_s=0.0, max_record_bytes=100
    )


def test_a_day_too_big_for_one_record_is_written_in_chunks_and_restored_whole() -> None:
    """A busy channel's day can outgrow the largest record Kafka takes (before this, the
    worker stopped with MessageSizeTooLargeError at 8.8 MB, and again after every restart)."""
    config = _records_of_100_bytes()
    events = _events()
    uninterrupted = _finals(PartitionEngine(0, config), [events])

    engine, table = PartitionEngine(0, config), dict[bytes, bytes]()
    before = _finals(engine, [events[:3]])
    _compacted(table, engine.checkpoint())
    first_chunks = _chunk_keys(table)
    before |= _finals(engine, [events[3:6]])
    _compacted(table, engine.checkpoint())

    assert max(len(value) for key, value in table.items() if parse_key(key)[1] == "c") <= 100
    assert first_chunks and _chunk_keys(table) == _referenced_chunks(table)
    assert not first_chunks & _chunk_keys(table)  # rewritten days: the old chunks are gone
    restored = PartitionEngine.restore(0, config, list(table.items()))
    assert {k: b.dump() for k, b in restored.buckets.items()} == {
        k: b.dump() for k, b in engine.buckets.items()
    }
    assert before | _finals(restored, [events[6:]]) == uninterrupted


def test_a_write_of_chunks_cut_short_restores_the_day_before_it_and_deletes_what_it_left() -> None:
    """kill -9 while a day's chunks were being written, before their head: the day comes
    back as it was (its old chunks are still there), the new ones are left over, and the
    next checkpoint deletes them."""
    config = _records_of_100_bytes()
    events = _events()
    uninterrupted = _finals(PartitionEngine(0, config), [events])
    first, table = PartitionEngine(0, config), dict[bytes, bytes]()
    before = _finals(first, [events[:4]])
    _compacted(table, first.checkpoint())
    _finals(first, [events[4:6]])
    writes = first.checkpoint()
    heads = [i for i, (key, value) in enumerate(writes) if value and read_chunk_head(value)]
    cut = heads[0] - 1  # the first rewritten day's chunks but its last, and not its head
    assert parse_key(writes[cut - 1][0])[1] == "c"
    _compacted(table, writes[:cut])
    leftovers = _chunk_keys(table) - _referenced_chunks(table)
    assert leftovers

    restarted = PartitionEngine.restore(0, config, list(table.items()))
    after = _finals(restarted, [events[4:]])  # the replay
    _compacted(table, restarted.checkpoint())
    assert before | after == uninterrupted
    assert _chunk_keys(table) == _referenced_chunks(table)
    assert not leftovers & _chunk_keys(table) - _referenced_chunks(table)


def test_a_day_written_in_chunks_leaves_nothing_behind_when_it_expires() -> None:
    engine = PartitionEngine(
        0, EngineConfig(ChannelCatalog(), WindowClock("UTC"), max_record_bytes=100)
    )
    events, table = _events(), dict[bytes, bytes]()
    engine.apply(0, events[:-1])
    engine.updates(1e12)
    _compacted(table, engine.checkpoint())
    assert {parse_chunk_key(key)[0] for key in _chunk_keys(table)} == {"tk", "mail"}

    engine.apply(0, events[-1:])  # 2027-03-01: both November days are past every rule
    engine.updates(1e12)
    _idle(engine)
    engine.updates(1e12)
    _compacted(table, engine.checkpoint())
    assert _chunk_keys(table) == _referenced_chunks(table)
    assert _chunk_keys(table) == set()  # zz's one event fits in a record
    assert {parse_key(key)[3] for key in table if parse_key(key)[1] == "b"} == {"zz"}


def test_history_written_channel_by_channel_is_not_late_and_its_windows_wait_for_it() -> None:
    """An export written one channel after the other: mail-y's history comes after mail-x's,
    in the same partition, and is older. Before channels had watermarks of their own, every
    event of mail-y was late (58 % of 20,000 simulated events written that way)."""
    run = Run()
    e = run.event
    x = [e(f"2026-11-16 {h}:00", "message_sent", "mail-x", "email", message_id=f"x{h}") for h in (10, 11, 12)]  # fmt: skip
    y = [
        e(
            "2026-11-16 09:00",
            "message_sent",
            "mail-y",
            "email",
            message_id="y1",
            recipient_count=1,
        ),
        e("2026-11-16 09:20", "message_read", "mail-y", "email", message_id="y1", actor="r"),
    ]
    run.feed(*x)
    run.feed(y[0])  # one envelope at a time: mail-y's windows must wait for the rest of it
    assert "2026-11-16 09:00" not in run.finals_for("mail-y", "read_rate", "hour")
    run.feed(y[1])
    run.tick("2026-11-16 12:10", sources=[0], backfill=[0])
    run.tick("2026-11-16 12:10:10", sources=[0], backfill=[0])  # all of it has arrived
    run.finish("email")
    assert run.engine.late_dropped == 0
    assert run.final("mail-y", "volume", "hour", "2026-11-16 09:00").value == 2
    assert run.final("mail-y", "read_rate", "hour", "2026-11-16 09:00") == (1.0, 1.0, 1.0)
    assert run.final("mail-x", "volume", "hour", "2026-11-16 11:00").value == 1
    # The kind's windows after 09:00 had turned final before mail-y arrived: they stay so.
    assert "2026-11-16 09:00" not in run.finals_for("*email/external", "volume", "hour")
