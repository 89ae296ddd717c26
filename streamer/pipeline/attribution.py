"""Turning counted uses into per-track, per-holder, per-genre and trending increments.

Attribution is exact integer arithmetic: a use adds ``share_micro`` to each holder
of a right and the unclaimed rest to ``_unclaimed``, so per right the weights of one
use add up to exactly 1,000,000.
"""

from __future__ import annotations

from streamer.events.shares import MICRO
from streamer.events.validation import USE_CREATE, TrackMeta
from streamer.state.deltas import GENRES, HOLDERS, TRACKS, CounterDeltas
from streamer.state.keys import genre_field, holder_field, track_field

UNCLAIMED = "_unclaimed"
UNATTRIBUTED = "_unattributed"

Windows = tuple[tuple[str, int], ...]


def count_track_uses(
    deltas: CounterDeltas, windows: Windows, track_id: str, use: str, base_start: int, uses: int
) -> None:
    """Per-track counters and trending: counted as soon as a use is, metadata or not."""
    field = track_field(use, track_id)
    for name, size in windows:
        start = base_start - base_start % size
        deltas.hash(TRACKS, name, start)[field] += uses
        if use == USE_CREATE:
            deltas.trending[(name, start)][track_id] += uses


def attribute_uses(
    deltas: CounterDeltas,
    windows: Windows,
    meta: TrackMeta | None,
    use: str,
    base_start: int,
    uses: int,
) -> None:
    """Holder and genre counters; ``meta=None`` attributes to ``_unattributed`` only."""
    for name, size in windows:
        start = base_start - base_start % size
        holders = deltas.hash(HOLDERS, name, start)
        if meta is None:
            for right in ("master", "publishing"):
                holders[holder_field(right, use, "u", UNATTRIBUTED)] += uses
                holders[holder_field(right, use, "w", UNATTRIBUTED)] += uses * MICRO
            continue
        for right, shares in (("master", meta.master), ("publishing", meta.publishing)):
            claimed = 0
            for holder_id, micro in shares:
                holders[holder_field(right, use, "u", holder_id)] += uses
                holders[holder_field(right, use, "w", holder_id)] += uses * micro
                claimed += micro
            if claimed < MICRO:
                holders[holder_field(right, use, "u", UNCLAIMED)] += uses
                holders[holder_field(right, use, "w", UNCLAIMED)] += uses * (MICRO - claimed)
        deltas.hash(GENRES, name, start)[genre_field(meta.ai_origin, use, meta.genre)] += uses
