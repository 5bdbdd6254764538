"""Quality: great-expectations suites and the quality gate.

Not built yet (issue: data-quality gate).
"""

__all__: list[str] = []
