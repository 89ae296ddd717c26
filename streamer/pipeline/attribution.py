"""Turning counted uses into per-track, per-holder, per-genre and trending increments.

Attribution is exact integer arithmetic: a use adds ``share_micro`` to each holder
of a right and the unclaimed rest to ``_unclaimed``, so per right the weights of one
use add up to exactly 1,000,000.

A track's *plan* is everything a use of it increments besides its own counter, built
once per track metadata, so a flush attributes a cell with a few dict additions and no
string formatting. The catalog cache keeps one plan per track, up to a million tracks,
so a plan is one flat tuple of shared objects (~100 bytes with 3 holders)::

    (genre field of a create, genre field of a play, report names,
     holder fields, micro-share, holder fields, micro-share, ...)

``report names`` is None, or the track's title, ISRC, artist and label as a JSON
object in bytes (the only per-track object in a plan): attribution never reads it, the ledger's
catalog entry (``plan_version``) does.

``holder fields`` is ``(create u, create w, play u, play w)``, one tuple per holder and
right shared by every plan that names the holder; the unclaimed rest of a right is
one more holder. The ``u`` field counts uses, the ``w`` field adds uses x micro-share.
Equal metadata gives equal plans, and equal plans attribute alike: comparing plans
tells whether a new TrackCreated changes how a track's uses are attributed.
"""

from __future__ import annotations

from collections.abc import Mapping
from sys import getsizeof, intern
from typing import Any

import msgspec
import orjson

from streamer.events.shares import MICRO
from streamer.events.validation import USE_CREATE, USES, TrackMeta
from streamer.state.catalog import CatalogCache, Plan
from streamer.state.deltas import (
    GENRE_RANKS,
    GENRES,
    HOLDERS,
    LEDGER_ATTRIBUTIONS,
    TERRITORY_GENRES,
    TERRITORY_HOLDERS,
    TERRITORY_TRACKS,
    TRACKS,
    CounterDeltas,
)
from streamer.state.keys import (
    DAY_MS,
    DAY_WINDOW,
    HOLDER_MEASURES,
    attribution_entry_field,
    attribution_field,
    genre_field,
    genre_trending_field,
    holder_field,
    territory_genre_field,
    territory_holder_field,
    territory_track_field,
    track_field,
)

UNCLAIMED = "_unclaimed"
UNATTRIBUTED = "_unattributed"

Windows = tuple[tuple[str, int], ...]

# A use's index in a plan's genre fields and in each holder's fields.
USE_SLOT = {use: slot for slot, use in enumerate(USES)}
_FIRST_HOLDER = 3
_REPORT = 2

_HolderFields = tuple[str, str, str, str]

# Made once and shared by the plans (read only), because formatting field names took
# most of a plan's time and a million plans' copies of them would not fit in memory:
# per right and holder its fields, per genre its fields, and the micro-shares (most
# are a few common splits; an int above 256 is otherwise one object per plan). Field
# names are interned. Each table is cleared when full (rebuilt on demand; plans keep
# what they reference).
_FIELDS: dict[str, dict[str, _HolderFields]] = {"master": {}, "publishing": {}}
_GENRES: dict[tuple[str, str], tuple[str, str]] = {}
_GENRE_OF: dict[str, str] = {}  # a plan's create genre field -> its genre
_MICROS: dict[int, int] = {}
_FIELDS_LIMIT = 100_000


# Per right, its four holder fields without the holder id: a new holder's fields are
# these plus the id (formatting each from its parts cost a third of a TrackCreated
# whose creator is a holder; docs/BENCHMARKS.md).
_FIELD_PREFIXES = {right: tuple(holder_field(right, use, kind, "") for use in USES
                                for kind in HOLDER_MEASURES) for right in _FIELDS}


def _holder_fields(right: str, holder_id: str) -> _HolderFields:
    known = _FIELDS[right]
    fields = known.get(holder_id)
    if fields is None:
        if len(known) >= _FIELDS_LIMIT:
            known.clear()
        create_uses, create_weight, play_uses, play_weight = _FIELD_PREFIXES[right]
        fields = known[holder_id] = (
            intern(create_uses + holder_id), intern(create_weight + holder_id),
            intern(play_uses + holder_id), intern(play_weight + holder_id))
    return fields


def _genre_fields(ai_origin: str, genre: str) -> tuple[str, str]:
    fields = _GENRES.get((ai_origin, genre))
    if fields is None:
        if len(_GENRES) >= _FIELDS_LIMIT:
            _GENRES.clear()
            _GENRE_OF.clear()
        create, play = (intern(genre_field(ai_origin, use, genre)) for use in USES)
        fields = _GENRES[(ai_origin, genre)] = (create, play)
        _GENRE_OF[create] = genre
    return fields


def genre_of(plan: Plan) -> str | None:
    """The genre a plan attributes to; None for ``UNATTRIBUTED_PLAN``."""
    create_field = plan[0]
    if create_field is None:
        return None
    genre = _GENRE_OF.get(create_field)
    # After the tables were cleared (full), older plans' fields are read instead.
    return genre if genre is not None else str(create_field).split("|", 2)[2]


def _micro(value: int) -> int:
    shared = _MICROS.get(value)
    if shared is None:
        if len(_MICROS) >= _FIELDS_LIMIT:
            _MICROS.clear()
        shared = _MICROS[value] = value
    return shared


class _Report(msgspec.Struct, gc=False, omit_defaults=True):
    """A plan's report names as JSON (absent ones left out)."""

    title: str | None = None
    isrc: str | None = None
    artist: str | None = None
    label: str | None = None


_encode_report = msgspec.json.Encoder().encode


def build_plan(meta: TrackMeta) -> Plan:
    """The plan of one track's metadata (see the module docstring).

    One tuple per track and nothing else per holder: the holders' fields, the unclaimed
    rest's and the micro-share ints come from the shared tables (looked up inline: a
    call per holder cost a fifth of the plan; docs/BENCHMARKS.md).
    """
    genres = _GENRES.get((meta.ai_origin, meta.genre))
    if genres is None:
        genres = _genre_fields(meta.ai_origin, meta.genre)
    title, isrc, artist, label = meta.title, meta.isrc, meta.artist, meta.label
    report = (None if title is None and isrc is None and artist is None and label is None
              else _encode_report(_Report(title, isrc, artist, label)))
    plan: list[Any] = [genres[0], genres[1], report]
    append = plan.append
    micros_get = _MICROS.get
    # The two rights written out rather than looped over: a right has 0-4 holders, and
    # the loop's own tuple and lookups were a tenth of the plan.
    known = _FIELDS["master"]
    claimed = 0
    for holder_id, micro in meta.master:
        append(known.get(holder_id) or _holder_fields("master", holder_id))
        append(micros_get(micro) or _micro(micro))
        claimed += micro
    if claimed < MICRO:
        rest = MICRO - claimed
        append(_UNCLAIMED_MASTER)
        append(micros_get(rest) or _micro(rest))
    known = _FIELDS["publishing"]
    claimed = 0
    for holder_id, micro in meta.publishing:
        append(known.get(holder_id) or _holder_fields("publishing", holder_id))
        append(micros_get(micro) or _micro(micro))
        claimed += micro
    if claimed < MICRO:
        rest = MICRO - claimed
        append(_UNCLAIMED_PUBLISHING)
        append(micros_get(rest) or _micro(rest))
    return tuple(plan)


_UNCLAIMED_FIELDS = {right: _holder_fields(right, UNCLAIMED) for right in _FIELDS}
"""Kept here too: a full table is cleared, and the unclaimed rest is in most plans."""
_UNCLAIMED_MASTER = _UNCLAIMED_FIELDS["master"]
_UNCLAIMED_PUBLISHING = _UNCLAIMED_FIELDS["publishing"]

UNATTRIBUTED_PLAN: Plan = (None, None, None,
                           _holder_fields("master", UNATTRIBUTED), MICRO,
                           _holder_fields("publishing", UNATTRIBUTED), MICRO)
"""Uses whose track never got metadata: no genre, the whole of each right unattributed."""


def plan_bytes(plan: Plan) -> int:
    """What a plan alone keeps alive: its tuple and its report names (the rest is shared
    by the plans), for the catalog cache's memory bound."""
    report = plan[_REPORT]
    return getsizeof(plan) + (getsizeof(report) if report is not None else 0)


def plan_for(meta: TrackMeta | None) -> Plan:
    """The plan of ``meta``, built once per metadata object; None: unattributed."""
    if meta is None:
        return UNATTRIBUTED_PLAN
    cached = meta.plan
    if cached is None:
        cached = build_plan(meta)
        # The plan is derived data: caching it on the metadata object is safe.
        meta.plan = cached
    # TrackMeta types its plan as object: events/ knows nothing of attribution plans.
    return cached  # type: ignore[return-value]


def known_plan(catalog_writes: Mapping[str, TrackMeta], cache: CatalogCache,
               track_id: str) -> Plan | None:
    """The track's plan from this flush interval's own TrackCreated, else from the cache
    (which may have evicted it); None: Redis must be asked."""
    written = catalog_writes.get(track_id)
    return plan_for(written) if written is not None else cache.get(track_id)


# Per country: holder or genre field -> its territory field; shared like _FIELDS.
_TERRITORY_FIELDS: dict[str, dict[str, str]] = {}
_TERRITORY_LIMIT = 100_000


def territory_fields(fields: dict[str, int], country: str, is_holder: bool) -> dict[str, int]:
    """Holder or genre increments of one country, their fields given the country."""
    known = _TERRITORY_FIELDS.get(country)
    if known is None or len(known) >= _TERRITORY_LIMIT:
        known = _TERRITORY_FIELDS[country] = {}
    result = {}
    for name, value in fields.items():
        territory = known.get(name)
        if territory is None:
            make = territory_holder_field if is_holder else territory_genre_field
            territory = known[name] = intern(make(name, country))
        result[territory] = value
    return result


# id(plan) -> (plan, catalog version, entry JSON): a plan is one shared object per
# metadata, so its version (a SHA-256 of the entry) is computed once, not per flush.
_VERSIONS: dict[int, tuple[Plan, str, str]] = {}
# A holder's first field -> (right, holder), read once per field rather than per plan.
_RIGHT_HOLDER: dict[str, tuple[str, str]] = {}
_catalog_entry: Any = None
_VERSIONS_LIMIT = 400_000


def plan_version(plan: Plan) -> tuple[str, str]:
    """The ledger's catalog version of a plan (streamer.ledger.CatalogEntry.version) and
    the entry as JSON (``entry_json``), rebuilt from the plan's fields and shares."""
    known = _VERSIONS.get(id(plan))
    if known is not None and known[0] is plan:
        return known[1], known[2]
    global _catalog_entry
    if _catalog_entry is None:
        from streamer.ledger.model import CatalogEntry  # the ledger's rules, imported late

        _catalog_entry = CatalogEntry
    genre = ai_origin = None
    if plan[0] is not None:
        ai_origin, _, genre = plan[0].split("|", 2)
    master: list[tuple[str, int]] = []
    publishing: list[tuple[str, int]] = []
    for index in range(_FIRST_HOLDER, len(plan), 2):
        first = plan[index][0]
        right_holder = _RIGHT_HOLDER.get(first)
        if right_holder is None:
            if len(_RIGHT_HOLDER) >= _FIELDS_LIMIT:
                _RIGHT_HOLDER.clear()
            right, _, _, holder = first.split("|", 3)
            right_holder = _RIGHT_HOLDER[first] = (right, holder)
        if right_holder[1] != UNCLAIMED:
            (master if right_holder[0] == "master" else publishing).append(
                (right_holder[1], plan[index + 1]))
    report = orjson.loads(plan[_REPORT]) if plan[_REPORT] is not None else {}
    entry = _catalog_entry("", genre, ai_origin, tuple(master), tuple(publishing), **report)
    text = orjson.dumps({"genre": genre, "ai_origin": ai_origin, "master": master,
                         "publishing": publishing, **report}).decode()
    if len(_VERSIONS) >= _VERSIONS_LIMIT:
        _VERSIONS.clear()
    _VERSIONS[id(plan)] = (plan, entry.version, text)
    return entry.version, text


def holder_slots(plan: Plan) -> list[tuple[_HolderFields, int]]:
    """A plan's holder fields, each with its micro-share (the unclaimed rest included)."""
    return [(plan[index], plan[index + 1]) for index in range(_FIRST_HOLDER, len(plan), 2)]


def add_attribution(holders: dict[str, int], genres: dict[str, int], plan: Plan, use: str,
                    uses: int) -> None:
    """Add ``uses`` uses of one track by its plan to holder and genre fields."""
    slot = USE_SLOT[use]
    genre = plan[slot]
    if genre is not None:
        genres[genre] = genres.get(genre, 0) + uses
    count_at = 2 * slot
    for index in range(_FIRST_HOLDER, len(plan), 2):
        fields = plan[index]
        count_field = fields[count_at]
        weight_field = fields[count_at + 1]
        holders[count_field] = holders.get(count_field, 0) + uses
        holders[weight_field] = holders.get(weight_field, 0) + uses * plan[index + 1]


def count_track_uses(
    deltas: CounterDeltas, windows: Windows, track_id: str, use: str, base_start: int,
    uses: int, *, country: str = "", territory: Windows = (),
) -> None:
    """Per-track counters and trending: counted as soon as a use is, metadata or not;
    with ``territory`` windows, per country too."""
    field = track_field(use, track_id)
    for name, size in windows:
        start = base_start - base_start % size
        deltas.hash(TRACKS, name, start)[field] += uses
        if use == USE_CREATE:
            deltas.trending[(name, start)][track_id] += uses
    if territory:
        field = territory_track_field(use, country, track_id)
        for name, size in territory:
            deltas.hash(TERRITORY_TRACKS, name, base_start - base_start % size)[field] += uses


def attribute_uses(
    deltas: CounterDeltas, windows: Windows, plan: Plan, use: str, base_start: int, uses: int,
    track_id: str, *, country: str = "", territory: Windows = (),
) -> None:
    """Holder and genre counters of every window (``UNATTRIBUTED_PLAN``: no metadata), and
    for creates the genre's trending: a track ranks in the genre its uses are attributed to;
    with ``territory`` windows, per country too, and the day's ledger attribution."""
    counts_genre = plan[USE_SLOT[use]] is not None
    ranked = genre_trending_field(genre_of(plan) or "", track_id) \
        if counts_genre and use == USE_CREATE else None
    for name, size in windows:
        start = base_start - base_start % size
        genres = deltas.hash(GENRES, name, start) if counts_genre else {}
        add_attribution(deltas.hash(HOLDERS, name, start), genres, plan, use, uses)
        if ranked is not None:
            deltas.hash(GENRE_RANKS, name, start)[ranked] += uses
    if territory:
        holders: dict[str, int] = {}
        genre_uses: dict[str, int] = {}
        add_attribution(holders, genre_uses, plan, use, uses)
        holders = territory_fields(holders, country, True)
        genre_uses = territory_fields(genre_uses, country, False)
        for name, size in territory:
            start = base_start - base_start % size
            for kind, fields in ((TERRITORY_HOLDERS, holders), (TERRITORY_GENRES, genre_uses)):
                target = deltas.hash(kind, name, start)
                for field, value in fields.items():
                    target[field] += value
        version, entry = plan_version(plan)
        day = base_start - base_start % DAY_MS
        deltas.hash(LEDGER_ATTRIBUTIONS, DAY_WINDOW, day)[
            attribution_field(track_id, country, use, version)] += uses
        deltas.entries[day][attribution_entry_field(track_id, version)] = entry
