"""Territory attribution of a flush's cells, vectorised.

With territory on, every cell (track, use, base window, country) adds each holder of its
track's plan to a holder x right x use x country field (uses and weighted micro-shares)
and its genre to a genre x ai_origin x use x country field. Done per cell and holder with
dict additions, that cost three times the rest of a flush (issue 20's budget: territory
on at least 90 % of the throughput with it off). Here the Python loop per cell only
appends two integers; numpy expands the cells over their plans' holders, sums per
(base, holder, country, use) exactly in int64, and each distinct field is named once
(names cached). The result equals the cell-by-cell definition
(tests/unit/test_flush_aggregate_parity.py checks the whole flush against an oracle).
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from sys import intern

import numpy as np

from streamer.pipeline.attribution import USE_SLOT, holder_slots
from streamer.state.catalog import Plan
from streamer.state.keys import territory_genre_field, territory_holder_field

# A sort key: base index (bits 40+), holder or genre id (bits 11-39), country id (bits
# 1-10: at most 676 two-letter codes), use (bit 0).
_ID_SHIFT = 11
_BASE_SHIFT = 40
_NAME_MASK = (1 << _BASE_SHIFT) - 1
_ID_MASK = (1 << (_BASE_SHIFT - _ID_SHIFT)) - 1
# ~150 bytes a name pair: at most ~150 MB of names, then they are made again.
_NAMES_LIMIT = 1_000_000


class _Tables:
    """Holders, genres and countries as small ints, and the field names of each
    (id, country, use) once made; replaced whole when full (ids index the names). Plans
    are not kept: a flush reads each of its tracks' plans once (``TerritoryCells``), and
    keeping them here would keep the catalog cache's evicted plans alive."""

    __slots__ = ("countries", "country_ids", "genre_ids", "genre_names", "genres",
                 "holder_ids", "holder_names", "holders")

    def __init__(self) -> None:
        self.holder_ids: dict[str, int] = {}
        self.holders: list[tuple[str, ...]] = []
        self.genre_ids: dict[str, int] = {}
        self.genres: list[tuple[str, str]] = []
        self.country_ids: dict[str, int] = {}
        self.countries: list[str] = []
        # name key (a sort key without its base) -> the fields: (uses, weight) of a
        # holder, (uses, "") of a genre
        self.holder_names: dict[int, tuple[str, str]] = {}
        self.genre_names: dict[int, tuple[str, str]] = {}

    def plan(self, plan: Plan) -> tuple[Plan, tuple[int, ...], tuple[int, ...], int]:
        """(plan, holder ids, micro-shares, genre id or -1)."""
        holder_ids = self.holder_ids
        slots = holder_slots(plan)
        # A holder's first field (create uses) names its right and holder: a str key
        # hashes once, a tuple of four at every lookup.
        ids = [holder_ids.get(fields[0]) for fields, _ in slots]
        if None in ids:
            for at, (fields, _) in enumerate(slots):
                if ids[at] is None:
                    ids[at] = holder_ids[fields[0]] = len(self.holders)
                    self.holders.append(fields)
        micros = [micro for _, micro in slots]
        genre = -1
        if plan[0] is not None:
            genre = self.genre_ids.get(plan[0], -1)
            if genre < 0:
                genre = self.genre_ids[plan[0]] = len(self.genres)
                self.genres.append((plan[0], plan[1]))
        return plan, tuple(ids), tuple(micros), genre  # type: ignore[arg-type]  # no None

    def country(self, country: str) -> int:
        known = self.country_ids.get(country)
        if known is None:
            known = self.country_ids[country] = len(self.countries)
            self.countries.append(country)
        return known


_tables = _Tables()


def _reset_if_full() -> _Tables:
    global _tables
    if len(_tables.holder_names) + len(_tables.genre_names) > _NAMES_LIMIT:
        _tables = _Tables()
    return _tables


class TerritoryCells:
    """A flush's attributed cells as two columns the caller appends to, one row per
    cell: ``codes`` (``plan_code | base_code | country_code``) and ``uses``; then
    ``sum_into`` adds their territory holder and genre fields per base window."""

    __slots__ = ("_bases", "_plan_index", "_plans", "_tables", "codes", "uses")

    def __init__(self) -> None:
        self._tables = _reset_if_full()
        self._plans: list[tuple[Plan, tuple[int, ...], tuple[int, ...], int]] = []
        self._plan_index: dict[int, int] = {}
        self._bases: list[int] = []
        self.codes: list[int] = []
        self.uses: list[int] = []

    def plan_code(self, plan: Plan) -> int:
        """The part of a cell's code that names its plan (look it up once per track).

        It sits where ``sum_into`` puts holder and genre ids, which replace it."""
        index = self._plan_index.get(id(plan))
        if index is None:
            index = self._plan_index[id(plan)] = len(self._plans)
            self._plans.append(self._tables.plan(plan))
        return index << _ID_SHIFT

    def base_code(self, base_start: int) -> int:
        """The part of a cell's code that names its base window."""
        bases = self._bases
        if base_start not in bases:
            bases.append(base_start)
        return bases.index(base_start) << _BASE_SHIFT

    def country_code(self, country: str, use: str) -> int:
        """The part of a cell's code that names its country and use."""
        return self._tables.country(country) << 1 | USE_SLOT[use]

    def sum_into(self, holders_of: dict[int, dict[str, int]],
                 genres_of: dict[int, dict[str, int]]) -> None:
        """Set the cells' territory fields in ``holders_of[base]`` and ``genres_of[base]``
        (fields of this flush alone: each is set once, with its sum)."""
        if not self.codes:
            return
        plans = self._plans
        codes = np.array(self.codes, dtype=np.int64)
        uses = np.array(self.uses, dtype=np.int64)
        which = (codes >> _ID_SHIFT) & _ID_MASK
        codes &= ~(_ID_MASK << _ID_SHIFT)
        lengths = np.fromiter(map(len, map(itemgetter(1), plans)), dtype=np.intp,
                              count=len(plans))
        starts = np.cumsum(lengths) - lengths
        holder_ids = np.fromiter(chain.from_iterable(map(itemgetter(1), plans)),
                                 dtype=np.int64, count=int(lengths.sum()))
        micros = np.fromiter(chain.from_iterable(map(itemgetter(2), plans)), dtype=np.int64,
                             count=len(holder_ids))
        # Each cell once per holder slot of its plan.
        per_cell = lengths[which]
        cell_of = np.repeat(np.arange(len(which)), per_cell)
        first = np.cumsum(per_cell) - per_cell
        slot = starts[which][cell_of] + (np.arange(len(cell_of)) - first[cell_of])
        slot_uses = uses[cell_of]
        keys = codes[cell_of] | (holder_ids[slot] << _ID_SHIFT)
        self._emit(keys, slot_uses, slot_uses * micros[slot], holders_of, True)
        genres = np.fromiter(map(itemgetter(3), plans), dtype=np.int64, count=len(plans))
        cell_genres = genres[which]
        attributed = cell_genres >= 0
        self._emit(codes[attributed] | (cell_genres[attributed] << _ID_SHIFT),
                   uses[attributed], None, genres_of, False)

    def _emit(self, keys: np.ndarray, uses: np.ndarray, weights: np.ndarray | None,
              target_of: dict[int, dict[str, int]], is_holder: bool) -> None:
        if not len(keys):
            return
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        bounds = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        summed = np.add.reduceat(uses[order], bounds).tolist()
        weighed = (np.add.reduceat(weights[order], bounds).tolist()
                   if weights is not None else None)
        keys = keys[bounds]
        tables = self._tables
        names = tables.holder_names if is_holder else tables.genre_names
        name_keys = (keys & _NAME_MASK).tolist()
        found = [names.get(key) for key in name_keys]
        if None in found:
            for at, pair in enumerate(found):
                if pair is None:
                    found[at] = names[name_keys[at]] = self._name(name_keys[at], is_holder)
        known: list[tuple[str, str]] = found  # type: ignore[assignment]  # no None left
        base_of = (keys >> _BASE_SHIFT).tolist()
        for base_index in sorted(set(base_of)):
            lo, hi = base_of.index(base_index), len(base_of) - base_of[::-1].index(base_index)
            target = target_of.setdefault(self._bases[base_index], {})
            part = known[lo:hi]
            target.update(zip([pair[0] for pair in part], summed[lo:hi], strict=True))
            if weighed is not None:
                target.update(zip([pair[1] for pair in part], weighed[lo:hi], strict=True))

    def _name(self, key: int, is_holder: bool) -> tuple[str, str]:
        tables = self._tables
        use = key & 1
        country = tables.countries[(key >> 1) & ((1 << (_ID_SHIFT - 1)) - 1)]
        which = key >> _ID_SHIFT
        if is_holder:
            fields = tables.holders[which]
            return (intern(territory_holder_field(fields[2 * use], country)),
                    intern(territory_holder_field(fields[2 * use + 1], country)))
        return intern(territory_genre_field(tables.genres[which][use], country)), ""
