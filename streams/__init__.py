"""Streams: the stream worker — rolling KPI windows and idle-channel alerts.

``build_app`` (in :mod:`streams.app`, which loads faust) builds the worker from a
:class:`streams.app.StreamConfig`; the engine in :mod:`streams.engine` is the
KPI state machine itself, free of Kafka and faust. Alert records and their
delivery live in :mod:`streams.alerting` and :mod:`streams.delivery`.
"""

from streams.engine import AlertTransition, EngineConfig, KpiUpdate, PartitionEngine
from streams.records import KpiRecord

__all__ = ["AlertTransition", "EngineConfig", "KpiRecord", "KpiUpdate", "PartitionEngine"]
