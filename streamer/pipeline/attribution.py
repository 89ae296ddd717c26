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
from streamer.events.validation import USE_CREATE, USE_PLAY, USES, TrackMeta
from streamer.state.deltas import GENRES, HOLDERS, TRACKS, CounterDeltas
from streamer.state.keys import genre_field, holder_field, track_field

UNCLAIMED = "_unclaimed"
UNATTRIBUTED = "_unattributed"

Windows = tuple[tuple[str, int], ...]
Plan = dict[str, tuple[tuple[str, int], ...]]


def _build_plan(meta: TrackMeta | None) -> tuple[Plan, dict[str, str | None]]:
    if meta is None:
        holders: Plan = {}
        genres: dict[str, str | None] = {}
        for use in USES:
            holders[use] = tuple(
                (holder_field(right, use, kind, UNATTRIBUTED), 1 if kind == "u" else MICRO)
                for right in ("master", "publishing") for kind in ("u", "w"))
            genres[use] = None
        return holders, genres
    create: list[tuple[str, int]] = []
    play: list[tuple[str, int]] = []
    for right, shares in (("master", meta.master), ("publishing", meta.publishing)):
        known = _FIELDS[right]
        claimed = 0
        for holder_id, micro in shares:
            names = known.get(holder_id) or _holder_fields(right, holder_id)
            create += ((names[0], 1), (names[1], micro))
            play += ((names[2], 1), (names[3], micro))
            claimed += micro
        if claimed < MICRO:
            names = known.get(UNCLAIMED) or _holder_fields(right, UNCLAIMED)
            rest = MICRO - claimed
            create += ((names[0], 1), (names[1], rest))
            play += ((names[2], 1), (names[3], rest))
    genre_key = (meta.ai_origin, meta.genre)
    genres = _GENRES.get(genre_key) or _genre_fields(*genre_key)
    return {USE_CREATE: tuple(create), USE_PLAY: tuple(play)}, genres


# Field names per holder and per genre, made once: formatting and interning them took
# most of a plan's time, and hot holders (labels, publishers) own many tracks. Field
# names are interned: a holder's fields are one string object however many of its
# tracks sit in the catalog cache. Bounded: cleared when full (rebuilt on demand).
_FIELDS: dict[str, dict[str, tuple[str, str, str, str]]] = {"master": {}, "publishing": {}}
_GENRES: dict[tuple[str, str], dict[str, str | None]] = {}
_FIELDS_LIMIT = 200_000


def _holder_fields(right: str, holder_id: str) -> tuple[str, str, str, str]:
    """``u`` and ``w`` fields of a holder for create, then for play."""
    known = _FIELDS[right]
    if len(known) >= _FIELDS_LIMIT:
        known.clear()
    names = known[holder_id] = tuple(  # type: ignore[assignment]
        intern(holder_field(right, use, kind, holder_id))
        for use in (USE_CREATE, USE_PLAY) for kind in ("u", "w"))
    return names


def _genre_fields(ai_origin: str, genre: str) -> dict[str, str | None]:
    """The genre field per use; one dict shared by the plans (read only)."""
    if len(_GENRES) >= _FIELDS_LIMIT:
        _GENRES.clear()
    fields = _GENRES[(ai_origin, genre)] = {
        use: intern(genre_field(ai_origin, use, genre)) for use in USES}
    return fields


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
