"""Every suite, by name, in the order they run: events, then core tables, then metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from quality.checks import Suite
from quality.suites.core import core_suites
from quality.suites.events import batch_frame, events_suite
from quality.suites.metrics import metrics_suite

__all__ = ["SUITE_NAMES", "QualityOptions", "batch_frame", "events_suite", "suites"]


@dataclass(frozen=True)
class QualityOptions:
    """What the checks need to know from the settings."""

    #: how far an event time may be ahead of its load time (``ingest.future_tolerance_s``)
    future_tolerance_s: float = 86_400.0
    #: the reporting time zone days are cut in (``metrics.timezone``)
    timezone: str = "UTC"


def suites(options: QualityOptions | None = None) -> tuple[Suite, ...]:
    options = options or QualityOptions()
    return (
        events_suite(options.future_tolerance_s),
        *core_suites(),
        metrics_suite(options.timezone),
    )


SUITE_NAMES: Final = tuple(suite.name for suite in suites())
