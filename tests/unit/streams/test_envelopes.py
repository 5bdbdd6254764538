"""The packed topic's records: what :func:`streams.envelopes.unpack` accepts and refuses."""

from __future__ import annotations

import orjson
import pytest

from streams.envelopes import DecodeProblem, pack, slim_event, tick, unpack

EVENT = {
    "event_type": "message_sent",
    "occurred_at": "2026-01-05T09:00:00+01:00",
    "channel_id": "im-eng",
    "channel_kind": "im",
    "scope": "internal",
    "actor_id": "a1",
    "actor_role": "member",
    "message_id": "m1",
    "body": "never packed",
}


def test_an_envelope_and_a_tick_come_back_as_packed() -> None:
    slim = slim_event(orjson.dumps(EVENT), 41)
    assert slim["_o"] == 41 and slim["_t"] == 1767600000.0 and "body" not in slim
    assert unpack(pack(3, [slim])) == {"v": 1, "src": 3, "events": [slim]}
    assert unpack(tick(1.5, [2, 0], [0, 1, 2], backfill=[2])) == {
        "v": 1,
        "tick": 1.5,
        "sources": [0, 2],
        "assigned": [0, 1, 2],
        "backfill": [2],
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a version-1 packed record"),
        (b'{"v": 2, "src": 0, "events": []}', "not a version-1 packed record"),
        (b'{"v": 1, "src": 0}', "an envelope needs an int 'src' and a list of 'events'"),
        (b'{"v": 1, "src": "0", "events": []}', "an envelope needs an int 'src'"),
        (b'{"v": 1, "src": 0, "events": [{"_o": 1}]}', "an envelope's events each need _o, _t"),
        (b'{"v": 1, "src": 0, "events": [7]}', "an envelope's events each need"),
        (b'{"v": 1, "tick": "now", "sources": []}', "a tick needs a number 'tick'"),
        (b'{"v": 1, "tick": 1.0, "sources": ["0"]}', "a tick needs a number 'tick'"),
        (b'{"v": 1, "tick": 1.0, "sources": [], "assigned": 3}', "'assigned' is not a list"),
        (b'{"v": 1, "tick": 1.0, "sources": [], "backfill": [[1]]}', "'backfill' is not a list"),
    ],
)
def test_anything_else_is_a_decode_problem_with_the_reason(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeProblem, match=reason.replace("(", r"\(")):
        unpack(value)
