"""The read rules, once, for the stream and the warehouse.

A message (``message_sent`` with ``recipient_count``) is read by each distinct
reader other than its sender whose first ``message_read`` comes within the
read window after the send; readers are capped at the recipient count. A
``message_bounced`` or ``message_misdelivered`` within the read window takes
the message out of the read rate. Like requests, the state is
order-independent (reads may arrive before their message), and
:mod:`metrics.rules_sql` is the same rule in SQL; the stream keeps at most
:data:`FLAG_CAP` bounces and misdeliveries per message (the earliest).
"""

from __future__ import annotations

from bisect import insort
from typing import Any, Final

from metrics.facts import MessageFact
from metrics.policy import KpiRules

__all__ = ["FLAG_CAP", "MessageState"]

FLAG_CAP: Final = 8


class MessageState:
    """What is known about one message; it is a message once :attr:`sent_at` is set."""

    __slots__ = (
        "_fact",
        "bounces",
        "misdeliveries",
        "readers",
        "recipients",
        "sender",
        "sent_at",
    )

    def __init__(self) -> None:
        self.sent_at: float | None = None
        self.sender: str | None = None
        self.recipients: int | None = None
        self.readers: dict[str, float] = {}  # reader -> first read
        self.bounces: list[float] = []  # the earliest, sorted
        self.misdeliveries: list[float] = []
        self._fact: MessageFact | None = None  # the last fact computed, until the state changes

    def send(self, at: float, sender: str, recipients: int | None) -> bool:
        if self.sent_at is not None and self.sent_at <= at:
            return False
        self.sent_at, self.sender, self.recipients = at, sender, recipients
        self._fact = None
        return True

    def read(self, at: float, reader: str) -> bool:
        first = self.readers.get(reader)
        if first is not None and first <= at:
            return False
        self.readers[reader] = at
        self._fact = None
        return True

    def flag(self, event_type: str, at: float) -> bool:
        """A bounce or misdelivery at ``at``."""
        times = self.bounces if event_type == "message_bounced" else self.misdeliveries
        if len(times) >= FLAG_CAP and at >= times[-1]:
            return False
        insort(times, at)
        if len(times) > FLAG_CAP:
            times.pop()
        self._fact = None
        return True

    def fact(self, channel_id: str, message_id: str, rules: KpiRules) -> MessageFact:
        """The message as a fact; cached until the state changes (windows ask for it often)."""
        cached = self._fact
        if cached is None or cached.channel_id != channel_id or cached.message_id != message_id:
            cached = self._fact = self._compute(channel_id, message_id, rules)
        return cached

    def _compute(self, channel_id: str, message_id: str, rules: KpiRules) -> MessageFact:
        sent = self.sent_at
        assert sent is not None and self.sender is not None, "not sent"
        until = sent + rules.read_window.calendar_seconds
        reads = [
            t for reader, t in self.readers.items() if reader != self.sender and sent <= t <= until
        ]
        readers = len(reads)
        if self.recipients is not None:
            readers = min(readers, self.recipients)
        return MessageFact(
            channel_id=channel_id,
            message_id=message_id,
            sent_at=sent,
            sender=self.sender,
            recipients=self.recipients,
            readers=readers,
            first_read_at=min(reads) if reads else None,
            bounced=any(sent <= t <= until for t in self.bounces),
            misdelivered=any(sent <= t <= until for t in self.misdeliveries),
        )

    def dump(self) -> list[Any]:
        return [
            self.sent_at,
            self.sender,
            self.recipients,
            self.readers,
            self.bounces,
            self.misdeliveries,
        ]

    @classmethod
    def load(cls, data: list[Any]) -> MessageState:
        """A state from :meth:`dump`; also reads the form before 2026-12 (one time per flag)."""
        state = cls()
        (
            state.sent_at,
            state.sender,
            state.recipients,
            state.readers,
            bounces,
            misdeliveries,
        ) = data
        state.bounces = _times(bounces)
        state.misdeliveries = _times(misdeliveries)
        return state


def _times(value: list[float] | float | None) -> list[float]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
