"""Turning counted uses into per-track, per-holder, per-genre and trending increments.

Attribution is exact integer arithmetic: a use adds ``share_micro`` to each holder
of a right and the unclaimed rest to ``_unclaimed``, so per right the weights of one
use add up to exactly 1,000,000.

A track's *plan* lists, per use, every holder and genre counter field a use of it
increments and by how much (1 for ``u`` fields, the micro-share for ``w`` fields).
It is built once per track metadata, so a flush attributes a cell with a few dict
additions and no string formatting.
"""

from __future__ import annotations

from sys import intern

from streamer.events.shares import MICRO
from streamer.events.validation import USE_CREATE, USES, TrackMeta
from streamer.state.deltas import GENRES, HOLDERS, TRACKS, CounterDeltas
from streamer.state.keys import genre_field, holder_field, track_field

UNCLAIMED = "_unclaimed"
UNATTRIBUTED = "_unattributed"

Windows = tuple[tuple[str, int], ...]
Plan = dict[str, tuple[tuple[str, int], ...]]


def _build_plan(meta: TrackMeta | None) -> tuple[Plan, dict[str, str | None]]:
    # Field names are interned: a holder's fields are one string object however many of
    # its tracks sit in the catalog cache.
    holders: Plan = {}
    genres: dict[str, str | None] = {}
    for use in USES:
        fields: list[tuple[str, int]] = []
        if meta is None:
            for right in ("master", "publishing"):
                fields.append((holder_field(right, use, "u", UNATTRIBUTED), 1))
                fields.append((holder_field(right, use, "w", UNATTRIBUTED), MICRO))
            genres[use] = None
        else:
            for right, shares in (("master", meta.master), ("publishing", meta.publishing)):
                claimed = 0
                for holder_id, micro in shares:
                    fields.append((intern(holder_field(right, use, "u", holder_id)), 1))
                    fields.append((intern(holder_field(right, use, "w", holder_id)), micro))
                    claimed += micro
                if claimed < MICRO:
                    fields.append((intern(holder_field(right, use, "u", UNCLAIMED)), 1))
                    rest = MICRO - claimed
                    fields.append((intern(holder_field(right, use, "w", UNCLAIMED)), rest))
            genres[use] = intern(genre_field(meta.ai_origin, use, meta.genre))
        holders[use] = tuple(fields)
    return holders, genres


_UNATTRIBUTED_PLAN = _build_plan(None)


def plan_for(meta: TrackMeta | None) -> tuple[Plan, dict[str, str | None]]:
    """Holder fields with multipliers, and the genre field (None: not counted), per use."""
    if meta is None:
        return _UNATTRIBUTED_PLAN
    cached = meta.plan
    if cached is None:
        built = _build_plan(meta)
        # The plan is derived data: caching it on the frozen metadata object is safe.
        object.__setattr__(meta, "plan", built)
        return built
    return cached  # type: ignore[return-value]


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
    holder_plan, genre_plan = plan_for(meta)
    genre = genre_plan[use]
    for name, size in windows:
        start = base_start - base_start % size
        holders = deltas.hash(HOLDERS, name, start)
        for field, multiplier in holder_plan[use]:
            holders[field] += uses * multiplier
        if genre is not None:
            deltas.hash(GENRES, name, start)[genre] += uses
