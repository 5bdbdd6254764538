"""The stream's KPI state machine, independent of faust and Kafka."""

from streams.engine.partition import AlertTransition, EngineConfig, KpiUpdate, PartitionEngine

__all__ = ["AlertTransition", "EngineConfig", "KpiUpdate", "PartitionEngine"]
