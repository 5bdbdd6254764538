"""Warehouse: DuckDB schema and migrations, the exactly-once sink, facts, replay.

Not built yet (issue: DuckDB warehouse and the quarterly evaluation).
"""

__all__: list[str] = []
