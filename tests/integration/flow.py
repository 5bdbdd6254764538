"""A flow of inputs that goes on while faults happen, and the record of the faults.

:class:`Inputs` are what is sent: valid events with invalid JSON lines spread among them,
each with the outcome it must have. :class:`Flow` sends them from a background thread, in
chunks with a pause between, through one ingest producer (which retries while the broker
is away), and checks each chunk's result: the valid inputs accepted, each invalid one
dead-lettered with its class.

The flow keeps in step with the faults: its chunks are shared out over two parts more
than there are faults; the first two go at once, and part k + 1 only once the k-th fault
is done (:meth:`Flow.fault_done`). So the sender may run a part ahead of the faults but
never past them: however slow the machine and its restarts, inputs are still to be sent
at every fault, and the last part goes after the last one. The :class:`FaultLog` keeps,
for each fault, how many inputs had been handed to the producer when it came; the fault
loop waits (a bounded wait) until more have been handed over since the fault before, so
inputs flow between one fault and the next, and the tests assert all of it from the log.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from commpulse.settings import Settings
from ingest import BatchResult, DeadLetter, IngestCounts, Record, RejectCode, Rejection, Validator
from tests.integration.support import consume_all, producer_for, wait_for

#: (class, raw bytes, reason): a dead letter, as expected and as read back
Letter = tuple[RejectCode, bytes, str]


@dataclass(frozen=True)
class Inputs:
    """What a flow sends, in order, and for each input the class it must be refused with
    (``None``: a valid event, to be accepted)."""

    records: list[Record]
    expected: list[RejectCode | None]

    @classmethod
    def mixed(
        cls, events: Sequence[Mapping[str, Any]], invalid: Sequence[tuple[RejectCode, bytes]]
    ) -> Inputs:
        """``events`` in their order, with the ``invalid`` lines spread evenly among them."""
        every = max(len(events) // (len(invalid) + 1), 1)
        bad = deque(invalid)
        records: list[Record] = []
        expected: list[RejectCode | None] = []
        for index, event in enumerate(events):
            if index and index % every == 0 and bad:
                code, raw = bad.popleft()
                records.append(Record(raw, source="flow"))
                expected.append(code)
            records.append(Record(event, source="flow"))
            expected.append(None)
        for code, raw in bad:
            records.append(Record(raw, source="flow"))
            expected.append(code)
        return cls(records, expected)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def valid(self) -> int:
        return self.expected.count(None)

    @property
    def invalid(self) -> int:
        return len(self.expected) - self.valid

    def dead_letters(self) -> Counter[Letter]:
        """Each invalid input with its class and the reason ingest gives (clock left out)."""
        validator = Validator()
        letters: Counter[Letter] = Counter()
        for record, code in zip(self.records, self.expected, strict=True):
            if code is None:
                continue
            assert isinstance(record.data, bytes)
            outcome = validator.from_json(record.data)
            assert isinstance(outcome, Rejection) and outcome.code is code, outcome
            letters[(code, record.data, _without_clock(outcome.reason))] += 1
        return letters


def dead_letters(settings: Settings) -> Counter[Letter]:
    """What the dead-letter topic holds: class, raw bytes and reason (clock left out)."""
    letters = [
        DeadLetter.from_record(record.value, record.headers)
        for record in consume_all(settings.kafka.bootstrap_servers, settings.topics.dlq)
    ]
    strays = [letter for letter in letters if letter.source != "flow" or letter.truncated]
    assert not strays, f"{len(strays)} dead letters not sent by the flow, or cut: {strays[:3]}"
    return Counter(
        (letter.rejection.code, letter.raw, _without_clock(letter.rejection.reason))
        for letter in letters
    )


def _without_clock(reason: str) -> str:
    """A future time's reason names the clock's time ('... after now (2026-…)')."""
    return re.sub(r"after now \([^)]*\)", "after now", reason)


@dataclass(frozen=True)
class Fault:
    what: str
    #: seconds since the log started
    at_s: float
    #: inputs handed to the producer when the fault came
    handed_over: int
    #: whether the sender was waiting for this fault before its next part (else it was
    #: sending a chunk or pausing between two: a part ahead at most)
    sender_waiting: bool


@dataclass
class FaultLog:
    """The faults in order, and a readable timeline of them."""

    #: inputs in the flow
    total: int
    started: float = field(default_factory=time.monotonic)
    faults: list[Fault] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.entries.append(f"{time.monotonic() - self.started:6.1f} s  {what}")

    def fault(self, what: str, flow: Flow, detail: str = "") -> None:
        """Records a fault that has just happened, with the state of ``flow``."""
        handed_over, waiting = flow.progress()
        self.faults.append(Fault(what, time.monotonic() - self.started, handed_over, waiting))
        state = "waiting for it" if waiting else "sending"
        self.note(
            f"{what}{detail}; {handed_over} of {self.total} inputs handed over, sender {state}"
        )

    @property
    def handed_over(self) -> int:
        """Inputs handed over when the last fault came (0 before the first)."""
        return self.faults[-1].handed_over if self.faults else 0

    def not_while_sending(self) -> list[Fault]:
        """Faults that came before the first input was handed over, or after the last."""
        return [fault for fault in self.faults if not 0 < fault.handed_over < self.total]

    def without_flow_before(self) -> list[Fault]:
        """Faults with no input handed over since the fault before them."""
        handed = [0] + [fault.handed_over for fault in self.faults]
        return [
            fault
            for fault, before in zip(self.faults, handed[:-1], strict=True)
            if fault.handed_over <= before
        ]

    def __str__(self) -> str:
        return "\n".join(self.entries)


class Flow:
    """Sends :class:`Inputs` from a background thread, in step with a fault loop.

    ``with Flow(...) as flow`` starts the sender; :meth:`fault_done` after each fault
    lets the next part go; :meth:`result` waits for the sender to hand over and deliver
    everything. Leaving the block early (an error) stops the sender after its chunk.
    """

    def __init__(
        self, settings: Settings, inputs: Inputs, *, chunk: int, pause: float, faults: int
    ) -> None:
        self._settings = settings
        self._inputs = inputs
        self._pause = pause
        self._bounds = [
            (start, min(start + chunk, len(inputs))) for start in range(0, len(inputs), chunk)
        ]
        self._parts = faults + 2
        assert len(self._bounds) >= self._parts, "fewer chunks than parts: each needs one"
        self._condition = threading.Condition()
        self._faults_done = 0
        self._stopping = False
        self._handed_over = 0
        self._waiting = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="flow")
        self._sending: Future[IngestCounts] | None = None

    def __enter__(self) -> Self:
        self._sending = self._pool.submit(self._send)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._pool.shutdown(wait=True)

    def progress(self) -> tuple[int, bool]:
        """(inputs handed to the producer so far, whether the sender waits for a fault)."""
        with self._condition:
            return self._handed_over, self._waiting

    def fault_done(self) -> None:
        """One more fault has happened: the next part may go."""
        with self._condition:
            self._faults_done += 1
            self._condition.notify_all()

    def wait_for_more(self, than: int, timeout: float = 120.0) -> int:
        """Until more than ``than`` inputs are handed over; returns how many are."""

        def more() -> bool:
            if self._sending is not None and self._sending.done():
                self._sending.result()  # the sender failed: its error
            return self.progress()[0] > than

        assert wait_for(more, timeout=timeout, interval=0.05), (
            f"the sender handed over no more than {than} inputs in {timeout} s"
        )
        return self.progress()[0]

    def result(self, timeout: float) -> IngestCounts:
        """Once every input is handed over and delivered (or failed): the producer's counts."""
        assert self._sending is not None, "the flow was not started"
        return self._sending.result(timeout=timeout)

    def _send(self) -> IngestCounts:
        with producer_for(self._settings) as producer:
            for index, (start, end) in enumerate(self._bounds):
                if not self._wait_for_part(index * self._parts // len(self._bounds)):
                    break
                result = producer.send_many(self._inputs.records[start:end])
                self._check(result, self._inputs.expected[start:end])
                with self._condition:
                    self._handed_over = end
                time.sleep(self._pause)
            return producer.flush()

    def _wait_for_part(self, part: int) -> bool:
        """Until ``part`` may go: parts 0 and 1 at once, part k after fault k - 1
        (False: stop sending)."""
        faults = max(part - 1, 0)
        with self._condition:
            self._waiting = faults > self._faults_done
            self._condition.wait_for(lambda: self._faults_done >= faults or self._stopping)
            self._waiting = False
            return not self._stopping

    @staticmethod
    def _check(result: BatchResult, expected: list[RejectCode | None]) -> None:
        refused = [(index, rejection.code) for index, _, rejection in result.rejections]
        assert (result.accepted, result.duplicates, refused) == (
            expected.count(None),
            0,
            [(index, code) for index, code in enumerate(expected) if code is not None],
        ), result.rejections
