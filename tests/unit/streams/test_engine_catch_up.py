"""The engine catching up on a long history equals the polars reference in every final window.

50,000 simulated events over 90 days, fed as a packer catching up feeds them: the source
partitions take turns of 2,000 events each, so the groups of one kind (one per source
partition) are days apart in event time, and a kind's windows turn final well after its
channels' own. Days expire on the way (the history is twice the state's retention), and
twice every engine restarts from the state it wrote, its last turn replayed. The reference
(tests/integration/kpi_reference.py) sees every event at once; every window the engine made
final must equal it, and never change: with the default calendar, and with business hours,
holidays and make-up days in Shanghai reported in Shanghai's time zone, and in Berlin over
the end of summer time.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.simulator import SimulationConfig, simulate
from metrics.channels import ChannelCatalog
from metrics.windows import WindowClock
from streams.engine import EngineConfig, KpiUpdate, PartitionEngine
from streams.envelopes import packed_partition, slim_event
from tests.integration.kpi_reference import Key, Value, reference_kpis
from tests.scenarios import BERLIN
from tests.unit.streams.harness import catalog_from

SOURCES = 8
PACKED = 12
TURN = 2_000
#: the turns after which every engine restarts from its table
RESTART_AFTER = (1, 2)
END = datetime(2026, 11, 1, tzinfo=UTC)


def _json(event: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in event.items()}
    )


def _key(update: KpiUpdate) -> Key:
    subject = update.channel_id or f"{update.channel_kind} ({update.scope})"
    start = datetime.fromtimestamp(update.window.start, UTC).isoformat()
    return subject, update.kpi, update.window.granularity, start


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


#: business hours in Shanghai with the 2026 National Day holidays and their make-up days
SHANGHAI = """
[calendars.default]
timezone = "Asia/Shanghai"
periods = ["09:00-12:00", "13:30-18:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri"]
holidays = [2026-10-01, 2026-10-02, 2026-10-05, 2026-10-06, 2026-10-07]
makeup_days = [2026-09-27, 2026-10-10]
"""


@pytest.mark.parametrize(
    ("catalog_toml", "timezone", "seed"),
    [(None, "UTC", 1), (SHANGHAI, "Asia/Shanghai", 3), (BERLIN, "Europe/Berlin", 5)],
    ids=[
        "defaults",
        "shanghai-calendar-and-reporting-zone",
        "berlin-calendar-and-reporting-zone-over-a-clock-change",
    ],
)
def test_every_final_window_of_a_long_catch_up_equals_the_reference(
    tmp_path: Path, catalog_toml: str | None, timezone: str, seed: int
) -> None:
    events = list(simulate(SimulationConfig(events=50_000, days=90, seed=seed, end=END)))
    by_source: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_source[zlib.crc32(event["channel_id"].encode()) % SOURCES].append(event)
    catalog = ChannelCatalog() if catalog_toml is None else catalog_from(tmp_path, catalog_toml)
    config = EngineConfig(catalog, WindowClock(timezone), sources=SOURCES)
    engines = {p: PartitionEngine(p, config) for p in range(PACKED)}
    #: each partition's table, as its changelog holds it (latest value per key)
    tables: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PACKED)}
    finals: dict[Key, Value] = {}

    def collect(now: float) -> None:
        for partition, engine in engines.items():
            kpis, _ = engine.updates(now, behind=True)
            for update in kpis:
                if update.final:
                    result = update.result
                    value = (result.value, result.numerator, result.denominator)
                    assert finals.setdefault(_key(update), value) == value  # never changes
            for key, written in engine.checkpoint():
                if written is None:
                    tables[partition].pop(key, None)
                else:
                    tables[partition][key] = written

    def apply(turn: int) -> None:
        for source, of_source in sorted(by_source.items()):
            packed: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for offset in range(turn, min(turn + TURN, len(of_source))):
                event = slim_event(_json(of_source[offset]), offset)
                packed[packed_partition(event["channel_kind"], PACKED)].append(event)
            for partition, slim in packed.items():
                engines[partition].apply(source, slim)

    now = END.timestamp()
    for turn in range(0, max(len(of_source) for of_source in by_source.values()), TURN):
        apply(turn)
        now += 2.0
        collect(now)
        if turn // TURN in RESTART_AFTER:
            # A crash after the state was written but before the offsets were: the engines
            # come back from their tables, and the turn is read and applied again.
            for partition in engines:
                engines[partition] = PartitionEngine.restore(
                    partition, config, tables[partition].items()
                )
            apply(turn)
            now += 2.0
            collect(now)
    for _ in range(2):  # every source caught up at two ticks in a row: idle, the kinds move on
        now += 10.0
        for engine in engines.values():
            engine.tick(now, range(SOURCES), range(SOURCES))
        collect(now)

    assert sum(engine.late_dropped for engine in engines.values()) == 0
    kept = sum(len(engine.buckets) for engine in engines.values())
    assert kept < 0.7 * len({(e["channel_id"], e["occurred_at"].date()) for e in events})  # expired
    reference = reference_kpis(
        events,
        grace_s=config.grace_s,
        timezone=timezone,
        calendar=catalog.calendars["default"],
    )
    differ = [
        (key, got, reference.get(key))
        for key, got in sorted(finals.items())
        if key not in reference or not all(map(_same, got, reference[key]))
    ]
    assert len(finals) > 100_000
    if timezone == "Europe/Berlin":  # the day of 25 hours, and both of its hours from 02:00
        starts = {(granularity, start) for _, _, granularity, start in finals}
        assert ("day", "2026-10-24T22:00:00+00:00") in starts
        assert {
            ("hour", "2026-10-25T00:00:00+00:00"),
            ("hour", "2026-10-25T01:00:00+00:00"),
        } <= starts
    assert differ == [], f"{len(differ)} of {len(finals)} final windows differ: {differ[:5]}"
