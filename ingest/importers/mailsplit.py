"""Split mbox archives into messages and read their headers (never their bodies).

pipermail (Mailman 2) writes one separator line before every message::

    From murdoch@dunc@n @end|ng |rom gm@||@com  Sat Jan  1 20:11:56 2022

— the envelope sender (obfuscated by the archive host, so it may contain
spaces), two spaces, and an asctime date. It does not escape body lines that
begin with "From ", so splitting on every such line (as :class:`mailbox.mbox`
does) cuts about 0.4 % of the messages in two. Here a line separates messages
only if it has the whole shape — ``From``, sender, an asctime date at the end
— *and* the line after it is a header line. Every other "From " line stays in
its message and is counted (:attr:`RawMessage.from_lines`).

Headers are unfolded (a line starting with a space or tab continues the one
before) and decoded as UTF-8, undecodable bytes replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

__all__ = ["SEPARATOR", "Preamble", "RawMessage", "envelope_time", "split_mbox"]

_DAY: Final = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
#: ``From <sender> <asctime>``; pipermail puts two spaces before the date.
SEPARATOR: Final = re.compile(
    rb"From (?P<sender>\S.*?) +(?P<date>" + _DAY.encode() + rb" (?:"
    + "|".join(_MONTHS).encode() + rb") [ \d]\d \d\d:\d\d:\d\d \d{4})\s*"
)  # fmt: skip
_HEADER: Final = re.compile(rb"[!-9;-~]+:")


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message: where its separator line is, its envelope date and its headers."""

    line: int
    envelope_date: str
    headers: Mapping[str, str]
    #: body lines (numbers in the file) that start with "From " but separate nothing
    from_lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Preamble:
    """Text before the first separator line, which belongs to no message."""

    line: int


@dataclass
class _Builder:
    line: int
    envelope_date: str
    headers: dict[str, str] = field(default_factory=dict)
    from_lines: list[int] = field(default_factory=list)
    in_body: bool = False
    _last: str | None = None

    def feed(self, number: int, line: bytes) -> None:
        if self.in_body:
            if line.startswith(b"From "):
                self.from_lines.append(number)
        elif not line.strip():
            self.in_body = True
        elif line[:1] in (b" ", b"\t"):  # a folded header continues
            if self._last is not None:
                self.headers[self._last] += _text(line)
        elif _HEADER.match(line):
            name, _, value = _text(line).partition(":")
            self._last = name.strip().lower()
            if self._last not in self.headers:  # the first of a repeated header counts
                self.headers[self._last] = value.lstrip()
            else:
                self._last = None
        else:  # not a header: the headers ended without a blank line
            self.in_body = True
            self.feed(number, line)

    def build(self) -> RawMessage:
        headers = {name: value.strip() for name, value in self.headers.items()}
        return RawMessage(self.line, self.envelope_date, headers, tuple(self.from_lines))


def split_mbox(lines: Iterable[bytes]) -> Iterator[RawMessage | Preamble]:
    """The messages of an mbox file, given its lines (with or without line ends)."""
    current: _Builder | None = None
    preamble: int | None = None
    pending: tuple[int, bytes, str] | None = None  # a separator-shaped line, not yet confirmed

    def feed(number: int, line: bytes) -> None:
        nonlocal preamble
        if current is not None:
            current.feed(number, line)
        elif preamble is None and line.strip():
            preamble = number

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\r\n")
        if pending is not None:
            candidate, pending = pending, None
            if _HEADER.match(line):
                if preamble is not None and current is None:
                    yield Preamble(preamble)
                if current is not None:
                    yield current.build()
                current = _Builder(candidate[0], candidate[2])
            else:
                feed(candidate[0], candidate[1])
        if line.startswith(b"From ") and (match := SEPARATOR.fullmatch(line)):
            pending = (number, line, match["date"].decode("ascii"))
            continue
        feed(number, line)
    if pending is not None:
        feed(pending[0], pending[1])
    if preamble is not None and current is None:
        yield Preamble(preamble)
    if current is not None:
        yield current.build()


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")


def envelope_time(date: str) -> datetime | None:
    """A separator line's asctime date, read as UTC (the line carries no zone)."""
    try:
        _, month, day, clock, year = date.split()
        hour, minute, second = (int(part) for part in clock.split(":"))
        return datetime(
            int(year), _MONTHS.index(month) + 1, int(day), hour, minute, second, tzinfo=UTC
        )
    except ValueError:
        return None
