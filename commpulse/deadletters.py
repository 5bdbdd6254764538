"""The dead-letter topic read back: every letter with its place, filtered, counted, exported.

``commpulse dlq`` is the face of this module; the record format is
:class:`ingest.DeadLetter`'s.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from commpulse.kafka import connect, read_all
from commpulse.settings import Settings
from ingest import DeadLetter

__all__ = ["Letter", "LetterCount", "count", "export", "matching", "read_letters", "source_kind"]


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter and where it sits in the topic."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def place(self) -> str:
        """``partition:offset``, as ``dlq --show`` takes it."""
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class LetterCount:
    error: str
    source: str
    letters: int
    first: datetime
    last: datetime


def read_letters(settings: Settings) -> list[Letter]:
    """Every letter of the dead-letter topic, partition by partition, oldest first."""
    with connect(settings) as target:
        return [
            Letter(
                record.partition,
                record.offset,
                DeadLetter.from_record(record.value, record.headers),
            )
            for record in read_all(target, settings.topics.dlq)
        ]


def source_kind(source: str) -> str:
    """What a source is, without the line or position: ``events.csv:17`` → ``events.csv``,
    ``http[2]`` → ``http``, ``sink:commpulse.events/3@1234`` → ``sink``."""
    return re.split(r"[:\[]", source, maxsplit=1)[0]


def matching(
    letters: Iterable[Letter], *, error: str | None = None, source: str | None = None
) -> Iterator[Letter]:
    """The letters of class ``error`` (e.g. ``missing_field``) whose source contains
    ``source``."""
    for letter in letters:
        if error is not None and letter.letter.rejection.code.value != error:
            continue
        if source is not None and source not in letter.letter.source:
            continue
        yield letter


def count(letters: Iterable[Letter]) -> list[LetterCount]:
    """Letters per (error class, source kind), the most first, with the first and last time
    one arrived."""
    counts: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], datetime] = {}
    last: dict[tuple[str, str], datetime] = {}
    for item in letters:
        key = (item.letter.rejection.code.value, source_kind(item.letter.source))
        counts[key] += 1
        at = item.letter.received_at
        first[key] = min(first.get(key, at), at)
        last[key] = max(last.get(key, at), at)
    return [
        LetterCount(error, source, n, first[(error, source)], last[(error, source)])
        for (error, source), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def export(letters: Iterable[Letter], path: Path) -> tuple[int, list[Letter]]:
    """Write each letter's input, one per line, to ``path`` (to fix and replay); returns
    how many were written, and the letters left out (cut at the size limit, not UTF-8
    text, or holding a line break: they would not be themselves as one line)."""
    written, left_out = 0, []
    with path.open("wb") as file:
        for item in letters:
            raw = item.letter.raw
            if item.letter.truncated or b"\n" in raw or b"\r" in raw or not _is_text(raw):
                left_out.append(item)
                continue
            file.write(raw + b"\n")
            written += 1
    return written, left_out


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
