"""The quality gate of the sink: the events suite on each batch before it loads.

The sink (``warehouse.quality_gate = "quarantine"``) hands each batch of
decoded rows to a :class:`BatchGate`; a batch that fails a critical check is
quarantined whole: kept in ``ops.quarantine`` with the reason, not loaded, its
offsets committed all the same. Warnings are logged and the batch loads.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from quality.checks import CheckResult
from quality.suites.events import batch_frame, events_suite
from quality.validation import Validator

if TYPE_CHECKING:
    import polars as pl

__all__ = ["BatchGate"]

log = logging.getLogger(__name__)


class BatchGate:
    """Checks batches with the events suite; great-expectations loads on the first batch."""

    def __init__(self, *, future_tolerance_s: float = 86_400.0) -> None:
        self.suite = events_suite(future_tolerance_s)
        self._validate = Validator()

    def check(self, batch: pl.DataFrame, now: datetime) -> list[CheckResult]:
        """Every check's result on ``batch`` (rows as the sink decodes them), loaded at ``now``."""
        return self._validate(self.suite, {"events": batch_frame(batch, now)})

    def __call__(self, batch: pl.DataFrame, now: datetime) -> str | None:
        """Why ``batch`` must be quarantined, or None when it may load."""
        results = self.check(batch, now)
        for result in results:
            if not result.success and not result.critical:
                log.warning(
                    "quality warning check=%s unexpected=%s sample=%s",
                    result.check,
                    result.unexpected_count,
                    result.sample[:2],
                )
        failed = [result for result in results if result.critical and not result.success]
        if not failed:
            return None
        return "critical checks failed: " + "; ".join(_describe(result) for result in failed)


def _describe(result: CheckResult) -> str:
    if result.unexpected_count is None:  # the check could not run
        return f"{result.check} ({result.sample[0] if result.sample else 'error'})"
    return f"{result.check} ({result.unexpected_count} rows, e.g. {result.sample[:1]})"
