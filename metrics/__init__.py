"""Metrics: the KPI catalog, business calendars, SLA policies, views and reports.

Not built yet (shared by the streaming and warehouse issues).
"""

__all__: list[str] = []
