"""Pseudonymisation at ingest.

The rule (also in docs/events.md):

* ``actor_id`` always becomes ``p_`` + the first 32 hex digits of
  HMAC-SHA256(key, actor_id). The same person keeps the same pseudonym for as
  long as the key stays the same, so distinct-user KPIs still work; without
  the key the pseudonym cannot be turned back into the id.
* ``conversation_id``, ``message_id`` and ``in_reply_to`` are join keys; when
  one contains ``@`` (an e-mail Message-ID or an address) or whitespace (a
  subject or a name used as an id) it is pseudonymised the same way, so
  threads still join. Opaque tokens such as ``TICKET-1234`` stay readable.
* ``department`` may not hold an ``@``: an address there is rejected.
* A value that already is a pseudonym is left alone, so re-ingesting events
  read back from the log changes nothing.
* The event schema has no field for names, addresses, subjects or bodies, and
  rejects unknown fields, so those cannot pass ingest at all.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Final

from ingest.events import ACTOR_FIELDS, JOIN_KEY_FIELDS, PSEUDONYMISE, Event, plain_join_key

__all__ = ["PSEUDONYM_PATTERN", "Pseudonymiser"]

PSEUDONYM_PATTERN: Final = re.compile(r"p_[0-9a-f]{32}")
MIN_KEY_BYTES: Final = 16


class Pseudonymiser:
    """Keyed, deterministic, idempotent pseudonyms for actor ids and join keys.

    Ingest applies it while validating (:attr:`context` is the validation
    context that does so); :meth:`apply` does the same to a ready event.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonymisation key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        # Actors repeat a lot; caching keeps HMAC off the hot path.
        self.pseudonym = lru_cache(maxsize=262_144)(self._pseudonym)
        self.context: Final[dict[str, Callable[[str], str]]] = {PSEUDONYMISE: self.pseudonym}

    def _pseudonym(self, value: str) -> str:
        if PSEUDONYM_PATTERN.fullmatch(value):
            return value
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return "p_" + digest[:32]

    def apply(self, event: Event) -> Event:
        """The event with its actor id (and any address-like join key) pseudonymised."""
        changes: dict[str, str] = {}
        for name in ACTOR_FIELDS:
            value = getattr(event, name)
            if (pseudonym := self.pseudonym(value)) != value:
                changes[name] = pseudonym
        for name in JOIN_KEY_FIELDS:
            value = getattr(event, name)
            if value is not None and not plain_join_key(value):
                changes[name] = self.pseudonym(value)
        return event.model_copy(update=changes) if changes else event
