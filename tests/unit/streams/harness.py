"""Feed hand-written events to a partition engine and read its KPI records back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metrics.catalog import Result
from metrics.channels import ChannelCatalog
from metrics.windows import WindowClock
from streams.engine import AlertTransition, EngineConfig, KpiUpdate, PartitionEngine


def ts(text: str) -> float:
    """'2026-11-16 09:00' (UTC) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@dataclass
class Run:
    """One engine, events applied in the order given, offsets counted per source partition."""

    catalog: ChannelCatalog = field(default_factory=ChannelCatalog)
    grace_s: float = 600.0
    timezone: str = "UTC"
    #: partitions of the events topic (a kind window waits for its group in each)
    sources: int = 1
    engine: PartitionEngine = field(init=False)
    updates: list[KpiUpdate] = field(default_factory=list)
    alerts: list[AlertTransition] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)
    now: float = 0.0
    #: the packed offset of the next tick
    packed: int = 0
    #: the state as written to the changelog after each batch (latest value per key)
    table: dict[bytes, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        config = EngineConfig(
            self.catalog,
            WindowClock(self.timezone),
            grace_s=self.grace_s,
            emit_interval_s=0.0,
            sources=self.sources,
        )
        self.engine = PartitionEngine(0, config)

    def event(
        self, at: str, event_type: str, channel: str, kind: str, **fields: Any
    ) -> dict[str, Any]:
        return {
            "event_type": event_type,
            "channel_id": channel,
            "channel_kind": kind,
            "scope": fields.pop("scope", "external"),
            "actor_id": fields.pop("actor", "someone"),
            "actor_role": fields.pop("role", "agent"),
            "_t": ts(at),
            **fields,
        }

    def feed(self, *events: dict[str, Any], src: int = 0, clock: str | None = None) -> None:
        """Apply ``events`` as one envelope; ``clock``: the worker's wall clock then."""
        stamped = []
        for event in events:
            offset = self.offsets.get(src, 0)
            self.offsets[src] = offset + 1
            stamped.append({**event, "_o": offset})
        self.engine.apply(src, stamped, None if clock is None else ts(clock))
        self.collect()

    def replay(self, events: list[dict[str, Any]], src: int = 0) -> None:
        """Apply events that already carry their offsets (a packer re-sending)."""
        self.engine.apply(src, events)
        self.collect()

    def tick(
        self,
        at: str,
        sources: list[int],
        assigned: list[int] | None = None,
        *,
        offset: int | None = None,
        backfill: list[int] | None = None,
    ) -> int:
        """A tick at the next packed offset (or again at ``offset``: a replay); its offset."""
        if offset is None:
            offset, self.packed = self.packed, self.packed + 1
        self.engine.tick(ts(at), sources, assigned, offset=offset, backfill=backfill or ())
        self.collect()
        return offset

    def collect(self) -> None:
        self.now += 10.0
        kpis, alerts = self.engine.updates(self.now)
        self.updates += kpis
        self.alerts += alerts
        for key, value in self.engine.checkpoint():
            if value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = value

    def restart(self) -> None:
        """A crash: the engine comes back from the state it wrote, as a restarted worker's does."""
        self.engine = PartitionEngine.restore(0, self.engine.config, self.table.items())

    def finish(self, kind: str, src: int = 0) -> None:
        """Push the group's watermark far ahead so every window of ``kind`` from ``src`` is final.

        Then ``src`` is found caught up at two ticks: its channels have delivered all they had
        and follow the group (a channel with events since then follows its own watermark).
        The ticks call it backfilling, so that they judge no channel idle.
        """
        self.feed(
            self.event("2027-03-01 00:00", "channel_created", f"zz-clock-{kind}", kind), src=src
        )
        for _ in range(2):
            self.tick("2027-03-01 00:00", sources=[src], backfill=[src])

    def final(self, subject: str, kpi: str, granularity: str, start: str) -> Result:
        """The final value of a channel's (or '*kind/scope') window starting at ``start``."""
        found = [u for u in self.updates if u.final and _subject(u) == subject and u.kpi == kpi
                 and u.window.granularity == granularity and u.window.start == ts(start)]  # fmt: skip
        assert len(found) == 1, (
            f"{len(found)} final records for {subject} {kpi} {granularity} {start}"
        )
        return found[0].result

    def finals_for(self, subject: str, kpi: str, granularity: str) -> dict[str, float | None]:
        return {
            datetime.fromtimestamp(u.window.start, UTC).strftime("%Y-%m-%d %H:%M"): u.result.value
            for u in self.updates
            if u.final
            and _subject(u) == subject
            and u.kpi == kpi
            and u.window.granularity == granularity
        }


def _subject(update: KpiUpdate) -> str:
    return (
        update.channel_id
        if update.channel_id is not None
        else f"*{update.channel_kind}/{update.scope}"
    )


def catalog_from(tmp_path: Path, toml: str) -> ChannelCatalog:
    path = tmp_path / "channels.toml"
    path.write_text(toml)
    return ChannelCatalog.load(path)
