"""Territory attribution of a flush's cells, vectorised.

With territory on, every cell (track, use, base window, country) adds each holder of its
track's plan to a holder x right x use x country field (uses and weighted micro-shares)
and its genre to a genre x ai_origin x use x country field. Done per cell and holder with
dict additions, that cost three times the rest of a flush (issue 20's budget: territory
on at least 90 % of the throughput with it off). Here the Python loop per cell only
appends two integers; numpy expands the cells over their plans' holders, sums per
(territory window, holder, country, use) exactly in int64 (a flush's base windows of one
territory window summed together, as Redis would), and each distinct field is named once
(names cached). A plan's holder ids and catalog version are made once per plan, not per
flush. The result equals the cell-by-cell definition
(tests/unit/test_flush_aggregate_parity.py checks whole flushes against an oracle, also
while these tables are replaced).
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter

import numpy as np

from streamer.pipeline.attribution import FIRST_HOLDER, USE_SLOT, plan_version
from streamer.state.catalog import Plan
from streamer.state.keys import territory_genre_field

# A sort key: base index (bits 40+), holder or genre id (bits 11-39), country id (bits
# 1-10: at most 676 two-letter codes), use (bit 0).
_ID_SHIFT = 11
_BASE_SHIFT = 40
_NAME_MASK = (1 << _BASE_SHIFT) - 1
_ID_MASK = (1 << (_BASE_SHIFT - _ID_SHIFT)) - 1
# ~150 bytes a name pair: at most ~150 MB of names, then they are made again.
_NAMES_LIMIT = 1_000_000
# Plans whose catalog version and ids are kept (as attribution.plan_version keeps its
# versions): a plan is read by every flush with a use of its track.
_PLANS_LIMIT = 400_000

# What a flush needs of a plan: (plan, catalog version, entry JSON, holder ids,
# micro-shares, genre id or -1). The plan is kept so that an id() reused by another
# object after the plan is freed is not mistaken for it.
_PlanInfo = tuple[Plan, str, str, tuple[int, ...], tuple[int, ...], int]


class _Tables:
    """Holders, genres and countries as small ints, the field names of each (id, country,
    use) once made, and per plan its ids and catalog version; replaced whole when the
    names are full (ids index the names)."""

    __slots__ = ("countries", "country_ids", "genre_ids", "genre_names", "genres",
                 "holder_ids", "holders", "plans", "uses_names", "weight_names")

    def __init__(self) -> None:
        self.holder_ids: dict[str, int] = {}
        # per holder id, per field of its plan fields (create u, create w, play u, play w):
        # what its territory field has before and after the country
        self.holders: list[tuple[tuple[str, str], ...]] = []
        self.genre_ids: dict[str, int] = {}
        self.genres: list[tuple[str, str]] = []
        self.country_ids: dict[str, int] = {}
        self.countries: list[str] = []
        # name key (a sort key without its base) -> a holder's uses field, its weight
        # field, a genre's field
        self.uses_names: dict[int, str] = {}
        self.weight_names: dict[int, str] = {}
        self.genre_names: dict[int, str] = {}
        self.plans: dict[int, _PlanInfo] = {}  # id(plan) -> its info

    def plan(self, plan: Plan) -> _PlanInfo:
        """The plan's info, made once per plan (``_PLANS_LIMIT`` at a time)."""
        known = self.plans.get(id(plan))
        if known is not None and known[0] is plan:
            return known
        holder_ids = self.holder_ids
        holders = self.holders
        ids: list[int] = []
        micros: list[int] = []
        for index in range(FIRST_HOLDER, len(plan), 2):
            fields = plan[index]
            # A holder's first field (create uses) names its right and holder: a str key
            # hashes once, a tuple of four at every lookup.
            holder = holder_ids.get(fields[0])
            if holder is None:
                holder = holder_ids[fields[0]] = len(holders)
                holders.append(tuple(map(_around_country, fields)))
            ids.append(holder)
            micros.append(plan[index + 1])
        genre = -1
        if plan[0] is not None:
            genre = self.genre_ids.get(plan[0], -1)
            if genre < 0:
                genre = self.genre_ids[plan[0]] = len(self.genres)
                self.genres.append((plan[0], plan[1]))
        # Cached there too: a track's pending uses resolved by its TrackCreated asked first.
        version, entry = plan_version(plan)
        info = (plan, version, entry, tuple(ids), tuple(micros), genre)
        if len(self.plans) >= _PLANS_LIMIT:
            self.plans.clear()
        self.plans[id(plan)] = info
        return info

    def country(self, country: str) -> int:
        known = self.country_ids.get(country)
        if known is None:
            known = self.country_ids[country] = len(self.countries)
            self.countries.append(country)
        return known


_tables = _Tables()


def _reset_if_full() -> _Tables:
    global _tables
    if len(_tables.uses_names) + len(_tables.genre_names) > _NAMES_LIMIT:
        _tables = _Tables()
    return _tables


class TerritoryCells:
    """A flush's attributed cells as two columns the caller appends to, one row per
    cell: ``codes`` (``track's code | base_code | country_code``) and ``uses``; then
    ``sum_into`` adds their territory holder and genre fields per base window."""

    __slots__ = ("_base_codes", "_bases", "_groups", "_plan_index", "_plans", "_sizes",
                 "_tables", "_tracks", "codes", "uses")

    def __init__(self, sizes: tuple[int, ...] = ()) -> None:
        """``sizes``: the territory window sizes (ms). Base windows that fall into the
        same window of every size are summed together (their fields would meet in
        Redis' same hashes anyway), under the first of them."""
        self._tables = _reset_if_full()
        self._sizes = sizes
        self._plans: list[_PlanInfo] = []
        self._tracks: list[tuple[int, str, str]] = []
        self._plan_index: dict[int, int] = {}
        self._base_codes: dict[int, int] = {}
        self._groups: dict[tuple[int, ...], int] = {}
        self._bases: list[int] = []  # per group, the base its fields are set under
        self.codes: list[int] = []
        self.uses: list[int] = []

    def track(self, plan: Plan) -> tuple[int, str, str]:
        """(the part of a cell's code that names its plan, the plan's catalog version, its
        entry JSON): look it up once per track.

        The code sits where ``sum_into`` puts holder and genre ids, which replace it."""
        index = self._plan_index.get(id(plan))
        if index is None:
            index = self._plan_index[id(plan)] = len(self._plans)
            info = self._tables.plan(plan)
            self._plans.append(info)
            self._tracks.append((index << _ID_SHIFT, info[1], info[2]))
        return self._tracks[index]

    def base_code(self, base_start: int) -> int:
        """The part of a cell's code that names its base window's group."""
        code = self._base_codes.get(base_start)
        if code is None:
            group = tuple(base_start - base_start % size for size in self._sizes)
            index = self._groups.get(group)
            if index is None:
                index = self._groups[group] = len(self._bases)
                self._bases.append(base_start)
            code = self._base_codes[base_start] = index << _BASE_SHIFT
        return code

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
        lengths = np.fromiter(map(len, map(itemgetter(3), plans)), dtype=np.intp,
                              count=len(plans))
        starts = np.cumsum(lengths) - lengths
        holder_ids = np.fromiter(chain.from_iterable(map(itemgetter(3), plans)),
                                 dtype=np.int64, count=int(lengths.sum()))
        micros = np.fromiter(chain.from_iterable(map(itemgetter(4), plans)), dtype=np.int64,
                             count=len(holder_ids))
        # Each cell once per holder slot of its plan.
        per_cell = lengths[which]
        cell_of = np.repeat(np.arange(len(which)), per_cell)
        first = np.cumsum(per_cell) - per_cell
        slot = starts[which][cell_of] + (np.arange(len(cell_of)) - first[cell_of])
        slot_uses = uses[cell_of]
        keys = codes[cell_of] | (holder_ids[slot] << _ID_SHIFT)
        self._emit(keys, slot_uses, slot_uses * micros[slot], holders_of)
        genres = np.fromiter(map(itemgetter(5), plans), dtype=np.int64, count=len(plans))
        cell_genres = genres[which]
        attributed = cell_genres >= 0
        self._emit(codes[attributed] | (cell_genres[attributed] << _ID_SHIFT),
                   uses[attributed], None, genres_of)

    def _emit(self, keys: np.ndarray, uses: np.ndarray, weights: np.ndarray | None,
              target_of: dict[int, dict[str, int]]) -> None:
        """Sum per key; set each sum under its field (holders: ``weights`` given, two
        fields a key; genres: one)."""
        if not len(keys):
            return
        order = np.argsort(keys)  # sums: the order among equal keys does not matter
        keys = keys[order]
        bounds = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        summed = np.add.reduceat(uses[order], bounds).tolist()
        weighed = (np.add.reduceat(weights[order], bounds).tolist()
                   if weights is not None else None)
        keys = keys[bounds]
        tables = self._tables
        name_keys = (keys & _NAME_MASK).tolist()
        names = tables.uses_names if weights is not None else tables.genre_names
        found = list(map(names.get, name_keys))
        if None in found:
            self._name_new(name_keys, found, weights is not None)
            found = list(map(names.get, name_keys))
        fields: list[str] = found  # type: ignore[assignment]  # all named now
        weight_fields: list[str] = (list(map(tables.weight_names.__getitem__, name_keys))
                                    if weighed is not None else [])
        base_of = (keys >> _BASE_SHIFT).tolist()
        if base_of[0] == base_of[-1]:  # one group of base windows (sorted by it first)
            spans = [(base_of[0], 0, len(base_of))]
        else:
            spans = [(base_index, base_of.index(base_index),
                      len(base_of) - base_of[::-1].index(base_index))
                     for base_index in sorted(set(base_of))]
        for base_index, lo, hi in spans:
            target = target_of.setdefault(self._bases[base_index], {})
            whole = lo == 0 and hi == len(base_of)
            target.update(zip(fields if whole else fields[lo:hi],
                              summed if whole else summed[lo:hi], strict=True))
            if weighed is not None:
                target.update(zip(weight_fields if whole else weight_fields[lo:hi],
                                  weighed if whole else weighed[lo:hi], strict=True))

    def _name_new(self, name_keys: list[int], found: list[str | None],
                  is_holder: bool) -> None:
        """Make the fields of the keys not named yet (``found`` None)."""
        tables = self._tables
        countries = tables.countries
        country_mask = (1 << (_ID_SHIFT - 1)) - 1
        missing = [key for key, name in zip(name_keys, found, strict=True) if name is None]
        if is_holder:
            uses_names, weight_names = tables.uses_names, tables.weight_names
            holders = tables.holders
            for key in missing:
                use = key & 1
                country = countries[(key >> 1) & country_mask]
                around = holders[key >> _ID_SHIFT]
                before, after = around[2 * use]
                uses_names[key] = before + country + after
                before, after = around[2 * use + 1]
                weight_names[key] = before + country + after
            return
        genre_names = tables.genre_names
        for key in missing:
            country = countries[(key >> 1) & country_mask]
            genre_names[key] = territory_genre_field(tables.genres[key >> _ID_SHIFT][key & 1],
                                                     country)


def _around_country(holder_field_name: str) -> tuple[str, str]:
    """What a holder field's territory field has before and after its country
    (``keys.territory_holder_field``), so naming one is two concatenations."""
    right, use, rest = holder_field_name.split("|", 2)
    return f"{right}|{use}|", f"|{rest}"
