"""The counters the pipeline should hold, computed independently of the pipeline.

``GroundTruth`` follows the counting rules of the pipeline spec (issue 3) on its own:
it shares no code with ``streamer.pipeline.attribution`` or ``streamer.events.shares``,
and reads rights shares with :class:`decimal.Decimal` itself. The caller decides which
events count (valid, not a duplicate, not late or from the future) and feeds exactly
those, in the order the pipeline applies them per track.

Memory stays small whatever the number of events: uses are aggregated per
``(track, use, base window)`` cell and expanded into counters only when a track's
metadata changes and when ``expected()`` is asked for.

Attribution rules modelled here:

* a use of a track with metadata is attributed with the metadata known at that moment;
* a newer TrackCreated replaces the metadata for uses after it (uses before it keep the
  metadata they were counted with);
* uses of a track without any TrackCreated yet are counted per track (and in trending)
  at once, and attributed to holders and genre with the first TrackCreated that arrives;
* if no TrackCreated arrives before ``finish()`` (or ``expected()``), they go to holder
  ``_unattributed`` with full weight in both rights, and not to any genre.

Territory: a use that carries a ``country`` is also counted per country, by the same
rules, for the territory windows (default ``1d``, the worker's default) and per UTC day
in the ledger's shapes (``expected_territory()``, ``expected_ledger()``; key shapes in
:mod:`streamer.verify`). Replaced metadata and ``_unattributed`` apply per country as
they do to the totals.

``PartitionedTruth`` keeps one ``GroundTruth`` per input partition. A track never changes
partition and the worker keeps each partition's counters in its own Redis shard, so a
large run is reconciled one partition at a time: a simulated day expands into some 32M
counters, which need not all be in memory at once.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

DEFAULT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000))
DAY_MS = 86_400_000
# The worker's default STREAMER_TERRITORY_WINDOWS (when its windows count 1d).
DEFAULT_TERRITORY_WINDOWS: tuple[tuple[str, int], ...] = (("1d", DAY_MS),)
WHOLE_RIGHT_MICRO = 1_000_000
RIGHT_NAMES = ("master", "publishing")
UNCLAIMED_HOLDER = "_unclaimed"
UNATTRIBUTED_HOLDER = "_unattributed"

CounterKey = tuple[Any, ...]


def share_to_micro(value: object) -> int:
    """A share (JSON number or decimal string) as an exact count of millionths.

    Raises ValueError for anything the contract does not allow; the caller is meant to
    pass only TrackCreated events the pipeline accepts, so this catches test mistakes.
    """
    if isinstance(value, bool):
        raise ValueError(f"share must not be a boolean: {value!r}")
    try:
        if isinstance(value, int | Decimal):
            exact = Decimal(value)
        elif isinstance(value, float):
            # JSON text "0.3" becomes the float 0.3; str() gives back the shortest
            # decimal that reads as the same float, i.e. the text that was sent.
            exact = Decimal(str(value))
        elif isinstance(value, str):
            exact = Decimal(value)
        else:
            raise ValueError(f"share must be a number or a decimal string: {value!r}")
    except InvalidOperation:
        raise ValueError(f"share is not a decimal: {value!r}") from None
    if not exact.is_finite():
        raise ValueError(f"share must be finite: {value!r}")
    scaled = exact.scaleb(6)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"share has more than 6 decimals: {value!r}")
    micro = int(scaled)
    if not 0 < micro <= WHOLE_RIGHT_MICRO:
        raise ValueError(f"share outside (0, 1]: {value!r}")
    return micro


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What attribution needs: genre, origin and per right the weights adding up to 1e6."""

    genre: str
    ai_origin: str
    # (right, holder_id, micro) including the _unclaimed remainder of each right.
    weights: tuple[tuple[str, str, int], ...]

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> TrackInfo:
        per_right: dict[str, dict[str, int]] = {right: {} for right in RIGHT_NAMES}
        for entry in event["rights"]:
            right = entry["right"]
            if right not in per_right:
                raise ValueError(f"unknown right {right!r}")
            holder = entry["holder_id"]
            if holder in per_right[right]:
                raise ValueError(f"holder {holder!r} listed twice for {right}")
            per_right[right][holder] = share_to_micro(entry["share"])
        weights: list[tuple[str, str, int]] = []
        for right in RIGHT_NAMES:
            holders = per_right[right]
            claimed = sum(holders.values())
            if claimed > WHOLE_RIGHT_MICRO:
                raise ValueError(f"{right} shares add up to more than 1: {claimed} micro")
            weights.extend((right, holder, micro) for holder, micro in holders.items())
            if claimed < WHOLE_RIGHT_MICRO:
                weights.append((right, UNCLAIMED_HOLDER, WHOLE_RIGHT_MICRO - claimed))
        return cls(str(event["genre"]), str(event["ai_origin"]), tuple(weights))


_UNATTRIBUTED_WEIGHTS = tuple(
    (right, UNATTRIBUTED_HOLDER, WHOLE_RIGHT_MICRO) for right in RIGHT_NAMES)


class GroundTruth:
    """Expected counters from the events that should count; see the module docstring."""

    def __init__(
        self,
        windows: Iterable[tuple[str, int]] = DEFAULT_WINDOWS,
        allowed_lateness_ms: int = 3_600_000,
        territory_windows: Iterable[tuple[str, int]] = DEFAULT_TERRITORY_WINDOWS,
    ) -> None:
        self.windows = tuple((str(name), int(size)) for name, size in windows)
        if not self.windows:
            raise ValueError("at least one window is needed")
        self.territory_windows = tuple((str(n), int(size)) for n, size in territory_windows)
        # Territory cells are kept per UTC day at least (the ledger's grain).
        self._tgrain = math.gcd(DAY_MS, *(size for _, size in self.territory_windows))
        # Territory cells whose metadata was replaced (or settled): (track, info, cells).
        self._tsealed: list[tuple[str, TrackInfo | None, Counter[tuple[str, int, str]]]] = []
        # track_id -> (use, territory grain start, country) -> uses not yet expanded
        self._tcells: dict[str, Counter[tuple[str, int, str]]] = {}
        # Kept for callers deciding what is late; attribution does not depend on it.
        self.allowed_lateness_ms = allowed_lateness_ms
        # Every window start is a function of the event time rounded down to the gcd.
        self._grain = math.gcd(*(size for _, size in self.windows))
        self._sealed: defaultdict[CounterKey, int] = defaultdict(int)
        # track_id -> (use, grain start) -> uses not yet expanded into counters
        self._cells: dict[str, Counter[tuple[str, int]]] = {}
        self._tracks: dict[str, TrackInfo] = {}
        # Uses the pipeline must not count, kept for peers without dedupe or lateness:
        # (track, use, occurred_at) of each duplicate, and each late use with the
        # partition's watermark when it was sent.
        self.duplicates: Counter[tuple[str, str, int]] = Counter()
        self.late: list[tuple[str, str, int, int]] = []
        self.uses_counted = 0
        self.tracks_created = 0
        self.finished = False

    # -- input ----------------------------------------------------------------------

    def track_created(self, event: Mapping[str, Any]) -> None:
        """Apply an accepted TrackCreated: new or replaced metadata for its track."""
        track_id = str(event["track_id"])
        info = TrackInfo.from_event(event)
        previous = self._tracks.get(track_id)
        cells = self._cells.get(track_id)
        if previous is not None and previous != info and cells:
            # Uses before the replacement keep the metadata they were counted with.
            self._expand(track_id, previous, cells, self._sealed)
            del self._cells[track_id]
        tcells = self._tcells.get(track_id)
        if previous is not None and previous != info and tcells:
            self._tsealed.append((track_id, previous, tcells))
            del self._tcells[track_id]
        # Uses that waited for metadata (previous is None) get this one.
        self._tracks[track_id] = info
        self.tracks_created += 1

    def use(self, event: Mapping[str, Any]) -> None:
        """Count one SoundUsed that the pipeline should count."""
        track_id = str(event["track_id"])
        occurred_at = int(event["occurred_at"])
        use = str(event["use"])
        cells = self._cells.get(track_id)
        if cells is None:
            cells = self._cells[track_id] = Counter()
        cells[(use, occurred_at - occurred_at % self._grain)] += 1
        self.uses_counted += 1
        country = event.get("country")
        if country is not None:
            tcells = self._tcells.get(track_id)
            if tcells is None:
                tcells = self._tcells[track_id] = Counter()
            tcells[(use, occurred_at - occurred_at % self._tgrain, country)] += 1

    def duplicate(self, event: Mapping[str, Any]) -> None:
        """Note a duplicate of a counted use (not counted)."""
        self.duplicates[(str(event["track_id"]), str(event["use"]),
                         int(event["occurred_at"]))] += 1

    def late_use(self, event: Mapping[str, Any], watermark: int) -> None:
        """Note a use sent late, behind ``watermark`` minus the allowed lateness (not counted)."""
        self.late.append((str(event["track_id"]), str(event["use"]),
                          int(event["occurred_at"]), watermark))

    def finish(self) -> None:
        """No more TrackCreated will come: attribute what still waits to ``_unattributed``.

        Later calls keep working (the waiting uses are settled once and for all).
        """
        for track_id, cells in self._cells.items():
            self._expand(track_id, self._tracks.get(track_id), cells, self._sealed)
        self._cells = {}
        for track_id, tcells in self._tcells.items():
            self._tsealed.append((track_id, self._tracks.get(track_id), tcells))
        self._tcells = {}
        self.finished = True

    # -- output ---------------------------------------------------------------------

    def pending_tracks(self) -> set[str]:
        """Tracks with uses and no TrackCreated yet."""
        return {track for track, cells in self._cells.items()
                if cells and track not in self._tracks}

    @property
    def countries(self) -> Counter[str]:
        """Counted uses per country (of the uses that carried one)."""
        total: Counter[str] = Counter()
        for _, _, tcells in self._tsealed:
            for (_, _, country), uses in tcells.items():
                total[country] += uses
        for tcells in self._tcells.values():
            for (_, _, country), uses in tcells.items():
                total[country] += uses
        return total

    def expected_territory(self) -> dict[CounterKey, int]:
        """Every non-zero territory counter of the territory windows (``tt``/``th``/``tg``
        in Redis), as ``read_territory_counters`` returns them."""
        return self._territory(self.territory_windows, "t")

    def expected_ledger(self) -> dict[CounterKey, int]:
        """Per UTC day (epoch ms of its start), the ledger's ``tracks``, ``holders`` and
        ``genres`` rows, as ``streamer.verify.ledger_files`` reads them."""
        return self._territory((("1d", DAY_MS),), "ledger")

    def _territory(self, windows: tuple[tuple[str, int], ...], shape: str
                   ) -> dict[CounterKey, int]:
        result: defaultdict[CounterKey, int] = defaultdict(int)
        live = [(track_id, self._tracks.get(track_id), tcells)
                for track_id, tcells in self._tcells.items()]
        for track_id, info, tcells in self._tsealed + live:
            weights = info.weights if info is not None else _UNATTRIBUTED_WEIGHTS
            for name, size in windows:
                per_window: defaultdict[tuple[str, int, str], int] = defaultdict(int)
                for (use, grain_start, country), uses in tcells.items():
                    if uses:
                        per_window[(use, grain_start - grain_start % size, country)] += uses
                for (use, start, country), uses in per_window.items():
                    if shape == "ledger":
                        result[("tracks", start, track_id, country, use)] += uses
                        for right, holder, micro in weights:
                            result[("holders", start, holder, right, use, country,
                                    "uses")] += uses
                            result[("holders", start, holder, right, use, country,
                                    "weighted_micro")] += uses * micro
                        if info is not None:
                            result[("genres", start, info.genre, info.ai_origin, use,
                                    country)] += uses
                        continue
                    result[("ttrack", name, start, track_id, country, use)] += uses
                    for right, holder, micro in weights:
                        result[("tholder", name, start, holder, right, use, country,
                                "uses")] += uses
                        result[("tholder", name, start, holder, right, use, country,
                                "weighted_micro")] += uses * micro
                    if info is not None:
                        result[("tgenre", name, start, info.genre, info.ai_origin, use,
                                country)] += uses
        return {key: value for key, value in result.items() if value}

    def expected(self) -> dict[CounterKey, int]:
        """Every non-zero counter, as if ``finish()`` were called now (nothing is mutated)."""
        result: defaultdict[CounterKey, int] = defaultdict(int, self._sealed)
        for track_id, cells in self._cells.items():
            self._expand(track_id, self._tracks.get(track_id), cells, result)
        return {key: value for key, value in result.items() if value}

    def _expand(
        self,
        track_id: str,
        info: TrackInfo | None,
        cells: Mapping[tuple[str, int], int],
        into: defaultdict[CounterKey, int],
    ) -> None:
        weights = info.weights if info is not None else _UNATTRIBUTED_WEIGHTS
        for name, size in self.windows:
            # Uses per (use, window start) first: the holder counters of an hour or a day
            # are then added once per window, not once per base-window cell.
            per_window: defaultdict[tuple[str, int], int] = defaultdict(int)
            for (use, grain_start), uses in cells.items():
                if uses:
                    per_window[(use, grain_start - grain_start % size)] += uses
            for (use, start), uses in per_window.items():
                into[("track", name, start, track_id, use)] += uses
                if use == "create":
                    into[("trending", name, start, track_id)] += uses
                for right, holder, micro in weights:
                    into[("holder", name, start, holder, right, use, "uses")] += uses
                    into[("holder", name, start, holder, right, use, "weighted_micro")] += (
                        uses * micro)
                if info is not None:
                    into[("genre", name, start, info.genre, info.ai_origin, use)] += uses

class PartitionedTruth:
    """One ``GroundTruth`` per input partition; see the module docstring.

    Load generator processes each own some partitions; their truths are joined with
    ``update`` (partitions must not overlap, as a partition has one sender).
    """

    def __init__(
        self,
        windows: Iterable[tuple[str, int]] = DEFAULT_WINDOWS,
        allowed_lateness_ms: int = 3_600_000,
        territory_windows: Iterable[tuple[str, int]] = DEFAULT_TERRITORY_WINDOWS,
    ) -> None:
        self.windows = tuple((str(name), int(size)) for name, size in windows)
        self.allowed_lateness_ms = allowed_lateness_ms
        self.territory_windows = tuple((str(n), int(size)) for n, size in territory_windows)
        self.parts: dict[int, GroundTruth] = {}

    def part(self, partition: int) -> GroundTruth:
        truth = self.parts.get(partition)
        if truth is None:
            truth = self.parts[partition] = GroundTruth(
                self.windows, self.allowed_lateness_ms, self.territory_windows)
        return truth

    def track_created(self, event: Mapping[str, Any], partition: int) -> None:
        self.part(partition).track_created(event)

    def use(self, event: Mapping[str, Any], partition: int) -> None:
        self.part(partition).use(event)

    def duplicate(self, event: Mapping[str, Any], partition: int) -> None:
        self.part(partition).duplicate(event)

    def late(self, event: Mapping[str, Any], partition: int, watermark: int) -> None:
        self.part(partition).late_use(event, watermark)

    def update(self, other: PartitionedTruth) -> None:
        """Take over the partitions of another sender's truth."""
        if other.windows != self.windows:
            raise ValueError(f"windows differ: {other.windows} != {self.windows}")
        overlap = self.parts.keys() & other.parts.keys()
        if overlap:
            raise ValueError(f"partitions {sorted(overlap)} are in both truths")
        self.parts.update(other.parts)

    @property
    def uses_counted(self) -> int:
        return sum(truth.uses_counted for truth in self.parts.values())

    @property
    def tracks_created(self) -> int:
        return sum(truth.tracks_created for truth in self.parts.values())

    def expected_for(self, partition: int) -> dict[CounterKey, int]:
        """The counters of one partition's Redis shard (empty if nothing was sent to it)."""
        truth = self.parts.get(partition)
        return truth.expected() if truth is not None else {}

    def expected(self) -> dict[CounterKey, int]:
        """Every counter summed over partitions, as ``read_counters`` returns them."""
        return merge_expected([truth.expected() for truth in self.parts.values()])

    def expected_territory_for(self, partition: int) -> dict[CounterKey, int]:
        """The territory counters of one partition's Redis shard."""
        truth = self.parts.get(partition)
        return truth.expected_territory() if truth is not None else {}

    def expected_ledger_for(self, partition: int) -> dict[CounterKey, int]:
        """The ledger rows (per day) one partition's closes should write."""
        truth = self.parts.get(partition)
        return truth.expected_ledger() if truth is not None else {}

    def expected_territory(self) -> dict[CounterKey, int]:
        """Every territory counter summed over partitions."""
        return merge_expected([truth.expected_territory() for truth in self.parts.values()])

    def expected_ledger(self) -> dict[CounterKey, int]:
        """Every ledger row (per day) summed over partitions."""
        return merge_expected([truth.expected_ledger() for truth in self.parts.values()])

    @property
    def countries(self) -> Counter[str]:
        """Counted uses per country, over all partitions."""
        total: Counter[str] = Counter()
        for truth in self.parts.values():
            total.update(truth.countries)
        return total


def merge_expected(parts: Iterable[Mapping[CounterKey, int]]) -> dict[CounterKey, int]:
    """Counter maps added up, zeros dropped."""
    total: defaultdict[CounterKey, int] = defaultdict(int)
    for part in parts:
        for key, value in part.items():
            total[key] += value
    return {key: value for key, value in total.items() if value}


# Holders of tracks whose metadata the load generator replaces mid-run (see
# streamer.loadgen.catalog): ``rpl-<track index>-<l0|l1|l2|p0|p1>``.
REPLACED_HOLDER_PREFIX = "rpl-"


def fold_replaced_holders(counters: Mapping[CounterKey, int]) -> dict[CounterKey, int]:
    """Counters with the holders of replaced tracks folded into one per track and right.

    A replaced track's uses are split between its old and new holders by when the
    worker read the replacement, which it reads from another topic than the uses; so
    only their sum is fixed. Folded, such a track has per window, right and use only its
    ``weighted_micro`` (uses x 1e6 whichever holders took them, since both the old and
    the new splits claim each right whole); its ``uses`` counters, which depend on the
    split, are left out. Every other counter is kept as it is.
    """
    out: defaultdict[CounterKey, int] = defaultdict(int)
    for key, value in counters.items():
        at = _HOLDER_AT.get(key[0])
        if at is not None and str(key[at]).startswith(REPLACED_HOLDER_PREFIX):
            if key[-1] != "weighted_micro":
                continue
            track_holder = str(key[at]).rsplit("-", 1)[0]
            out[(*key[:at], track_holder, *key[at + 1:])] += value
        else:
            out[key] += value
    return dict(out)


# Where the holder id is in each holder key shape (plain, territory, ledger rows).
_HOLDER_AT = {"holder": 3, "tholder": 3, "holders": 2}
