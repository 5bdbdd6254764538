"""Quality: great-expectations suites over ingest batches and warehouse tables, and the gate.

``commpulse quality`` runs :func:`check_warehouse`; the sink runs a
:class:`BatchGate` on each batch when ``warehouse.quality_gate`` is
``"quarantine"``. great-expectations is imported on first use, never by
importing this package (it takes seconds). See docs/quality.md.
"""

from quality.checks import Check, CheckResult, QualityError, Suite
from quality.gate import BatchGate
from quality.runner import QualityReport, SuiteResult, check_snapshot, check_warehouse, run_suites
from quality.suites import SUITE_NAMES, QualityOptions, suites

__all__ = [
    "SUITE_NAMES",
    "BatchGate",
    "Check",
    "CheckResult",
    "QualityError",
    "QualityOptions",
    "QualityReport",
    "Suite",
    "SuiteResult",
    "check_snapshot",
    "check_warehouse",
    "run_suites",
    "suites",
]
