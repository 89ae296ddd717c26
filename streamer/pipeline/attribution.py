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
    master_create, master_play = (_RIGHTS["master"].get(meta.master)
                                  or _right_plan("master", meta.master))
    publishing_create, publishing_play = (_RIGHTS["publishing"].get(meta.publishing)
                                          or _right_plan("publishing", meta.publishing))
    genre_key = (meta.ai_origin, meta.genre)
    genres = _GENRES.get(genre_key) or _genre_fields(*genre_key)
    return ({USE_CREATE: master_create + publishing_create,
             USE_PLAY: master_play + publishing_play}, genres)


# Made once and shared by the plans (read only), because formatting field names took
# most of a plan's time and a plan's many small tuples kept the garbage collector busy:
# * per right, the plan part of a whole list of holders with their shares: splits
#   repeat (a label owning the whole master; a label and its distributor at 70/30);
# * per holder, its field names (hot holders such as labels own many tracks), with the
#   ``u`` entries, whose multiplier is always 1;
# * per genre, the genre field of each use.
# Field names are interned: a holder's fields are one string object however many of its
# tracks sit in the catalog cache. Each cache is cleared when full (rebuilt on demand).
_Part = tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]
_RIGHTS: dict[str, dict[tuple[tuple[str, int], ...], _Part]] = {"master": {}, "publishing": {}}
_FIELDS: dict[str, dict[str, tuple[tuple[str, int], str, tuple[str, int], str]]] = {
    "master": {}, "publishing": {}}
_GENRES: dict[tuple[str, str], dict[str, str | None]] = {}
_FIELDS_LIMIT = 100_000


def _right_plan(right: str, shares: tuple[tuple[str, int], ...]) -> _Part:
    """The ``(create, play)`` plan entries of one right's holders, with the unclaimed rest."""
    known = _FIELDS[right]
    create: list[tuple[str, int]] = []
    play: list[tuple[str, int]] = []
    claimed = 0
    for holder_id, micro in shares:
        create_u, create_w, play_u, play_w = known.get(holder_id) or _holder_fields(
            right, holder_id)
        create += (create_u, (create_w, micro))
        play += (play_u, (play_w, micro))
        claimed += micro
    if claimed < MICRO:
        create_u, create_w, play_u, play_w = known.get(UNCLAIMED) or _holder_fields(
            right, UNCLAIMED)
        create += (create_u, (create_w, MICRO - claimed))
        play += (play_u, (play_w, MICRO - claimed))
    parts = _RIGHTS[right]
    if len(parts) >= _FIELDS_LIMIT:
        parts.clear()
    part = parts[shares] = (tuple(create), tuple(play))
    return part


def _holder_fields(right: str, holder_id: str) -> tuple[tuple[str, int], str, tuple[str, int], str]:
    """A holder's ``(u field, 1)`` and ``w`` field for create, then for play."""
    known = _FIELDS[right]
    if len(known) >= _FIELDS_LIMIT:
        known.clear()
    create_u, create_w, play_u, play_w = (
        intern(holder_field(right, use, kind, holder_id))
        for use in (USE_CREATE, USE_PLAY) for kind in ("u", "w"))
    fields = known[holder_id] = ((create_u, 1), create_w, (play_u, 1), play_w)
    return fields


def _genre_fields(ai_origin: str, genre: str) -> dict[str, str | None]:
    """The genre field per use."""
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
