"""Read one value from a worker's Prometheus text exposition (``GET /metrics``)."""

from __future__ import annotations

import re


def metric_value(text: str, name: str) -> float:
    """The first sample of ``name`` (any labels); fails the test if it is not exposed."""
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))
