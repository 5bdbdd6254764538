"""The stream's state, in pieces of the size of one changelog record.

Each piece is one key of the state changelog (one record each time it
changes): a :class:`DayBucket` per channel and local day holds what started
that day; a :class:`ChannelMeta` per channel holds its identity, last
activity, alert state and finalised-window markers; a :class:`Clock` per
partition holds the watermarks. Every piece carries the source offset of the
last event applied to it, so that replaying events after a restart applies
each event to each piece at most once.

A day bucket of a busy channel can outgrow what Kafka takes in one record
(1 MiB by default: about 10,000 messages, or one message read by 10,000
people). Such a bucket is written in *chunks*, each a slice of its bytes under
a key of its own that names the chunk's generation, followed by a small head
under the bucket's key that names the generation and the number of chunks
(:func:`chunk_head`), and then tombstones for the generation before. Read
back, a head takes the chunks of its generation; chunks of another one are
what a crash left behind in the middle of such a write, and are deleted.
"""

from __future__ import annotations

from typing import Final

import orjson

from metrics.messages import MessageState
from metrics.requests import RequestState

__all__ = [
    "ChannelMeta",
    "Clock",
    "DayBucket",
    "bucket_key",
    "chunk_head",
    "chunk_key",
    "clock_key",
    "meta_key",
    "parse_chunk_key",
    "parse_key",
    "read_chunk_head",
]

NONE_APPLIED: Final = -1


def bucket_key(partition: int, channel_id: str, day: int) -> bytes:
    return f"{partition}/b/{day}/{channel_id}".encode()


def chunk_key(partition: int, channel_id: str, day: int, generation: int, index: int) -> bytes:
    return f"{partition}/c/{day}/{generation}/{index}/{channel_id}".encode()


def parse_chunk_key(key: bytes) -> tuple[str, int, int, int]:
    """``(channel_id, day, generation, index)`` of a :func:`chunk_key`."""
    _, _, day, generation, index, channel_id = key.decode().split("/", 5)
    return channel_id, int(day), int(generation), int(index)


_HEAD: Final = b'{"chunks":'


def chunk_head(generation: int, chunks: int) -> bytes:
    """The value under a bucket's key when the bucket is written in ``chunks`` chunks."""
    return orjson.dumps({"chunks": chunks, "gen": generation})


def read_chunk_head(value: bytes) -> tuple[int, int] | None:
    """``(generation, chunks)`` if ``value`` is a :func:`chunk_head`, else None (a whole bucket)."""
    if not value.startswith(_HEAD):
        return None
    head = orjson.loads(value)
    return int(head["gen"]), int(head["chunks"])


def meta_key(partition: int, channel_id: str) -> bytes:
    return f"{partition}/m/{channel_id}".encode()


def clock_key(partition: int) -> bytes:
    return f"{partition}/clock".encode()


def parse_key(key: bytes) -> tuple[int, str, int | None, str | None]:
    """``(partition, kind, day, channel_id)`` of a table key (kind: b, m, l or clock)."""
    text = key.decode()
    partition, kind, *rest = text.split("/", 2)
    if kind == "b":
        day, channel_id = rest[0].split("/", 1)
        return int(partition), "b", int(day), channel_id
    if kind in ("m", "l"):
        return int(partition), kind, None, rest[0]
    return int(partition), kind, None, None


class DayBucket:
    """What started on one channel on one local day."""

    __slots__ = (
        "actors",
        "applied",
        "channel_id",
        "day",
        "meetings",
        "messages",
        "requests",
        "surveys",
        "volume",
    )

    def __init__(self, channel_id: str, day: int) -> None:
        self.channel_id = channel_id
        self.day = day
        self.applied = NONE_APPLIED
        self.volume: dict[float, int] = {}  # hour start -> events
        self.requests: dict[str, RequestState] = {}
        self.messages: dict[str, MessageState] = {}
        self.meetings: list[tuple[float, float, float | None]] = []
        self.surveys: list[tuple[float, int]] = []
        self.actors: set[str] = set()

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "a": self.applied,
                "v": [[hour, count] for hour, count in self.volume.items()],
                "r": {key: state.dump() for key, state in self.requests.items()},
                "m": {key: state.dump() for key, state in self.messages.items()},
                "mt": self.meetings,
                "s": self.surveys,
                "u": sorted(self.actors),
            }
        )

    @classmethod
    def load(cls, channel_id: str, day: int, raw: bytes) -> DayBucket:
        data = orjson.loads(raw)
        bucket = cls(channel_id, day)
        bucket.applied = data["a"]
        bucket.volume = {hour: count for hour, count in data["v"]}
        bucket.requests = {key: RequestState.load(value) for key, value in data["r"].items()}
        bucket.messages = {key: MessageState.load(value) for key, value in data["m"].items()}
        bucket.meetings = [(t, duration, planned) for t, duration, planned in data["mt"]]
        bucket.surveys = [(t, score) for t, score in data["s"]]
        bucket.actors = set(data["u"])
        return bucket


class ChannelMeta:
    """One channel: identity, source partition, activity, alert state, finalised windows."""

    __slots__ = (
        "active",
        "alert",
        "applied",
        "archived_at",
        "channel_id",
        "finalized",
        "kind",
        "last_activity_at",
        "mark",
        "scope",
        "source",
    )

    def __init__(self, channel_id: str, kind: str, scope: str, source: int) -> None:
        self.channel_id = channel_id
        self.kind = kind
        self.scope = scope
        self.source = source
        self.applied = NONE_APPLIED
        self.last_activity_at: float | None = None
        self.archived_at: float | None = None
        #: None, or the open idle alert: {"since": t, "last_activity_at": t, "idle_s": s, "threshold_s": s}
        self.alert: dict[str, float] | None = None
        #: "granularity/settle" -> end of the last window whose KPIs of that settle class were emitted final
        self.finalized: dict[str, float] = {}
        #: the channel's own watermark: its latest event time (no later than the worker's clock)
        self.mark: float | None = None
        #: whether it has had events since its source partition was last found idle: while it
        #: has, its own watermark rules its windows, not its group's (see PartitionEngine)
        self.active = False

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "k": self.kind,
                "s": self.scope,
                "src": self.source,
                "a": self.applied,
                "la": self.last_activity_at,
                "ar": self.archived_at,
                "al": self.alert,
                "f": self.finalized,
                "w": self.mark,
                "ac": self.active,
            }
        )

    @classmethod
    def load(cls, channel_id: str, raw: bytes) -> ChannelMeta:
        data = orjson.loads(raw)
        meta = cls(channel_id, data["k"], data["s"], data["src"])
        meta.applied = data["a"]
        meta.last_activity_at = data["la"]
        meta.archived_at = data["ar"]
        meta.alert = data["al"]
        meta.finalized = data["f"]
        # Written before channels had watermarks: the group's rules, as it did then.
        meta.mark = data.get("w")
        meta.active = data.get("ac", False)
        return meta


class Clock:
    """Per partition: event-time watermarks and the kind-level finalised-window markers.

    A watermark belongs to a *group*: the events of one kind from one source
    partition, which arrive in order; lateness and finality are judged per group.
    """

    __slots__ = (
        "idle",
        "kind_finalized",
        "last_tick",
        "next_offset",
        "source_offsets",
        "tick_offset",
        "watermarks",
    )

    def __init__(self) -> None:
        self.watermarks: dict[str, float] = {}  # "source/kind" -> max event time seen
        self.last_tick: float | None = None
        #: "kind/scope/granularity/settle" -> end of the last kind window emitted final
        self.kind_finalized: dict[str, float] = {}
        #: source partition caught up at the last tick -> the kinds' watermarks then
        self.idle: dict[str, dict[str, float]] = {}
        #: packed offset of the last tick applied: a replayed tick is older and changes nothing
        self.tick_offset = -1
        #: packed offset after the last record applied (0: none yet); records before it were
        #: all applied, so a record after it means records in between never arrived
        self.next_offset = 0
        #: source partition -> the offset of the last event applied from it
        self.source_offsets: dict[str, int] = {}

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "w": self.watermarks,
                "t": self.last_tick,
                "kf": self.kind_finalized,
                "i": self.idle,
                "to": self.tick_offset,
                "n": self.next_offset,
                "so": self.source_offsets,
            }
        )

    @classmethod
    def load(cls, raw: bytes) -> Clock:
        data = orjson.loads(raw)
        clock = cls()
        clock.watermarks = data["w"]
        clock.last_tick = data["t"]
        clock.kind_finalized = data["kf"]
        clock.idle = data.get("i", {})
        clock.tick_offset = data.get("to", -1)
        clock.next_offset = data.get("n", 0)
        clock.source_offsets = data.get("so", {})
        return clock
