"""Tumbling event-time windows aligned to the UTC epoch.

A window of size ``s`` containing time ``t`` is ``[t - t % s, t - t % s + s)``.
Because every configured size is a multiple of the smallest one (the *base*),
the base window of an event fixes its window in every other size; the hot path
therefore aggregates by base window only and expands to all sizes at flush time
(``spread_over_windows``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

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


def spread_over_windows(
    by_base: Mapping[int, dict[str, int]],
    windows: Sequence[tuple[str, int]],
    extra: Mapping[tuple[str, int], Mapping[str, int]],
) -> dict[tuple[str, int], dict[str, int]]:
    """Spread increments per base window over every window size, summing where they
    meet, then add ``extra``, increments already per (window name, start).

    Returns fields per (window name, start). Usually all increments of a flush share
    one base window; then each window size gets the very same dict, and nothing is
    copied (the caller must not change the result's dicts).
    """
    result: dict[tuple[str, int], dict[str, int]] = {}
    shared: set[tuple[str, int]] = set()
    for base_start, fields in by_base.items():
        if not fields:
            continue
        for name, size in windows:
            target = (name, base_start - base_start % size)
            existing = result.get(target)
            if existing is None:
                result[target] = fields
                shared.add(target)
                continue
            if target in shared:
                existing = result[target] = dict(existing)
                shared.discard(target)
            for field, value in fields.items():
                existing[field] = existing.get(field, 0) + value
    for target, more in extra.items():
        existing = result.get(target)
        if existing is None:
            result[target] = dict(more)
            continue
        if target in shared:
            existing = result[target] = dict(existing)
            shared.discard(target)
        for field, value in more.items():
            existing[field] = existing.get(field, 0) + value
    return result
