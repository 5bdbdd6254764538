"""Actor ids become keyed, deterministic, idempotent pseudonyms at ingest."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ingest import Event, Pseudonymiser, RejectCode, Rejection, Validator, encode
from ingest.pseudonym import PSEUDONYM_PATTERN
from tests.helpers import event_dict

KEY = b"k" * 32


def expected(value: str, key: bytes = KEY) -> str:
    return "p_" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def test_actor_id_becomes_the_keyed_hmac() -> None:
    event = Pseudonymiser(KEY).apply(
        Event.model_validate(event_dict(actor_id="alice@corp.example"))
    )
    assert event.actor_id == expected("alice@corp.example")
    assert PSEUDONYM_PATTERN.fullmatch(event.actor_id)


def test_same_id_same_pseudonym_other_key_other_pseudonym() -> None:
    one, other = Pseudonymiser(KEY), Pseudonymiser(b"x" * 32)
    assert one.pseudonym("bob") == one.pseudonym("bob") != other.pseudonym("bob")
    assert one.pseudonym("bob") != one.pseudonym("bob ")


def test_pseudonymising_twice_changes_nothing() -> None:
    p = Pseudonymiser(KEY)
    once = p.apply(Event.model_validate(event_dict()))
    assert p.apply(once) is once


def test_address_like_join_keys_are_pseudonymised_consistently() -> None:
    p = Pseudonymiser(KEY)
    msg_id = "<CAxyz123@mail.gmail.com>"
    sent = p.apply(Event.model_validate(event_dict(event_type="message_sent", message_id=msg_id)))
    reply = p.apply(
        Event.model_validate(
            event_dict(1, event_type="message_sent", message_id="m-2", in_reply_to=msg_id)
        )
    )
    assert sent.message_id == reply.in_reply_to == expected(msg_id)
    assert reply.message_id == "m-2"  # plain ids stay readable


def test_no_raw_identity_reaches_the_wire() -> None:
    p = Pseudonymiser(KEY)
    raw = event_dict(
        actor_id="carol.smith@corp.example", conversation_id="thread-of-carol@corp.example"
    )
    wire = encode(p.apply(Event.model_validate(raw)))
    assert b"carol" not in wire and b"@" not in wire


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymiser(b"short")


def test_validation_with_the_context_pseudonymises_json_and_rows() -> None:
    from ingest import Validator

    p = Pseudonymiser(KEY)
    raw = event_dict(
        actor_id="dave@corp.example", conversation_id="t@corp.example", message_id="m-5"
    )
    for event in (
        Validator().from_json(encode_raw(raw), p.context),
        Validator().from_mapping(raw, p.context),
    ):
        assert isinstance(event, Event)
        assert event.actor_id == expected("dave@corp.example")
        assert event.conversation_id == expected("t@corp.example") and event.message_id == "m-5"
    assert Validator().from_mapping(raw).actor_id == "dave@corp.example"  # type: ignore[union-attr]


def encode_raw(data: dict[str, object]) -> bytes:
    import orjson

    return orjson.dumps(data)


def test_no_address_subject_or_body_passes_in_a_join_key_or_the_department() -> None:
    pseudonymiser = Pseudonymiser(b"k" * 32)
    base = event_dict(
        event_type="ticket_replied", conversation_id="TICKET-1234", department="Support"
    )
    kept = Validator().from_mapping(base, pseudonymiser.context)
    assert isinstance(kept, Event)
    assert (kept.conversation_id, kept.department) == ("TICKET-1234", "Support")

    texts = {
        "conversation_id": "Re: salary of John Smith",
        "in_reply_to": "Hello Bob, your password is hunter2",
        "message_id": "john@example.com",
    }
    event = Validator().from_mapping({**base, **texts}, pseudonymiser.context)
    assert isinstance(event, Event)
    for name, text in texts.items():
        assert getattr(event, name) == pseudonymiser.pseudonym(text)
    assert not any(text in event.model_dump_json() for text in texts.values())

    rejected = Validator().from_mapping({**base, "department": "john@example.com"})
    assert isinstance(rejected, Rejection) and rejected.code is RejectCode.INVALID_VALUE
    assert "john" not in rejected.reason
