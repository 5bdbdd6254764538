"""Channels the catalog lists that have had no event yet.

A channel is known to the stream from its first event; one that never sent
any (a hotline whose integration broke before its first call) would never go
idle. So each partition's engine also *lists* the catalog's channels with a
``kind`` whose packed partition it owns, at its first tick: from then on such
a channel is silent, and its idle threshold runs from that moment (the
worker's wall clock then; a restarted worker keeps it, since the listing is
state). Its first event makes it an ordinary channel, and an alert it has open
carries over: the event resolves it if it ends the silence, as any event does.

A listing is one changelog record, ``{partition}/l/{channel_id}``. A channel
that leaves the catalog is unlisted at the next start, and its open alert
resolved.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from metrics.channels import ChannelCatalog
from streams.envelopes import packed_partition
from streams.keyed import default_partitions

__all__ = ["Listed", "catalog_listing", "listed_key"]


def listed_key(partition: int, channel_id: str) -> bytes:
    return f"{partition}/l/{channel_id}".encode()


@dataclass(slots=True)
class Listed:
    """A catalog channel without events: where it is, since when it is silent, its alert."""

    kind: str
    scope: str
    #: its partition of the events topic: it is judged only once the packer has read that
    #: partition to the end, as any channel is
    source: int
    #: when this partition's engine listed it (the worker's wall clock at a tick)
    since: float
    #: None, or the open idle alert: {"since": t, "idle_s": s, "threshold_s": s}
    alert: dict[str, float] | None = None

    def dump(self) -> bytes:
        return orjson.dumps(
            {"k": self.kind, "s": self.scope, "src": self.source, "t": self.since, "al": self.alert}
        )

    @classmethod
    def load(cls, raw: bytes) -> Listed:
        data = orjson.loads(raw)
        return cls(data["k"], data["s"], data["src"], data["t"], data["al"])


def catalog_listing(
    catalog: ChannelCatalog, partition: int, packed_partitions: int, sources: int
) -> dict[str, tuple[str, str, int]]:
    """``{channel_id: (kind, scope, source partition)}`` of the catalog channels with a kind
    whose envelopes go to ``partition`` of the packed topic."""
    mine = [
        (channel_id, kind, scope)
        for channel_id, kind, scope in catalog.listed()
        if packed_partition(kind.value, packed_partitions) == partition
    ]
    placed = default_partitions([channel_id.encode() for channel_id, _, _ in mine], sources)
    return {
        channel_id: (kind.value, scope.value, source)
        for (channel_id, kind, scope), source in zip(mine, placed, strict=True)
    }
