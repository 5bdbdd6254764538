"""Streams: the faust app, rolling KPI windows, idle-channel detection, alert delivery.

Not built yet (issue: streaming KPIs and idle-channel alerts).
"""

__all__: list[str] = []
