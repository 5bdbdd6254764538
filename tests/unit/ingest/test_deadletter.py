from __future__ import annotations

from ingest import DeadLetter, RejectCode, Rejection
from ingest.deadletter import MAX_RAW_BYTES
from tests.helpers import NOW


def test_headers_round_trip() -> None:
    letter = DeadLetter.of(
        b"\xff raw",
        Rejection(RejectCode.MALFORMED_JSON, "bad"),
        source="f.jsonl:3",
        received_at=NOW,
    )
    again = DeadLetter.from_record(letter.raw, letter.headers())
    assert again == letter
    assert dict(letter.headers())["commpulse.error"] == b"malformed_json"


def test_huge_inputs_keep_their_first_bytes_and_size() -> None:
    raw = b"x" * (MAX_RAW_BYTES + 10)
    letter = DeadLetter.of(
        raw, Rejection(RejectCode.OVERSIZED, "big"), source="http", received_at=NOW
    )
    assert len(letter.raw) == MAX_RAW_BYTES
    assert letter.raw_size == MAX_RAW_BYTES + 10 and letter.truncated
