"""Tumbling event-time windows aligned to the UTC epoch.

A window of size ``s`` containing time ``t`` is ``[t - t % s, t - t % s + s)``.
Because every configured size is a multiple of the smallest one (the *base*),
the base window of an event fixes its window in every other size; the hot path
therefore aggregates by base window only and expands to all sizes at flush time.
"""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*([0-9]+)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str) -> int:
    """``"90s"`` -> 90000. Durations are whole numbers with one unit: ms, s, m, h or d."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 5m, 1h, 1d)")
    value = int(match.group(1)) * _UNITS_MS[match.group(2)]
    if value <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return value


def window_start(timestamp_ms: int, size_ms: int) -> int:
    return timestamp_ms - timestamp_ms % size_ms


def window_bounds(timestamp_ms: int, size_ms: int) -> tuple[int, int]:
    start = timestamp_ms - timestamp_ms % size_ms
    return start, start + size_ms
