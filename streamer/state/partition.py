"""Everything a worker holds for one claimed input partition between two flushes.

Partition N of ``sounds.used`` and partition N of ``tracks.created`` share one state:
Faust assigns co-partitioned topics together, and one atomic flush per partition
number covers both topics' offsets.

The state changes only through its methods (tests/unit/test_state_ownership.py checks
that no other module assigns its fields), in three phases:

* claim: ``load`` restores what Redis holds for the partition;
* the record path (the processor, synchronously): ``take_offset``, ``count_uses`` /
  ``count_use``, ``advance_watermark``, ``take_cells_of``, ``seal``, ``write_catalog``,
  ``reject``; the worker moves rejections to the DLQ (``take_rejections``,
  ``sent_to_dlq``);
* a flush (pipeline/flusher.py, under ``flush_lock``): ``take_counts``, the pending
  attributions' ``add_pending`` / ``resolve_pending`` / ``expire_pending`` /
  ``take_pending_changes``, ``take_dedupe_changes``, ``close_interval``, and once Redis
  applied it, ``confirm_flush``.
"""

from __future__ import annotations

import asyncio
from collections import _count_elements  # type: ignore[attr-defined]  # C helper of Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from streamer.events.validation import USES, TrackMeta
from streamer.state.dedupe import Deduper
from streamer.state.deltas import CounterDeltas
from streamer.state.keys import DAY_MS, TRACKS_CODE, USES_CODE

if TYPE_CHECKING:
    from streamer.state.store import RedisStore

__all__ = ["TRACKS_CODE", "USES_CODE", "CellKey", "Cells", "ClosedInterval", "PartitionState",
           "Rejection", "TakenCounts"]

TOPIC_CODES = (USES_CODE, TRACKS_CODE)

# (use, base window start, country) -> uses, for pending attributions of one track
Cells = dict[tuple[str, int, str], int]
# (track_id, use, base window start, country): one counter cell of the hot path. The
# country is always there (the schema requires it); the plain counters sum over it.
CellKey = tuple[str, str, int, str]
# Catalog entries remembered as written (``entries_written``): days, and entries per day
# (~100 bytes each; past it a day's are forgotten and written again, which is harmless).
_ENTRY_DAYS = 3
_ENTRIES_PER_DAY = 100_000
# The country of pending uses persisted before cells had one (ISO 3166 user-assigned
# "unknown"), so an upgrade neither loses them nor invents a real country.
UNKNOWN_COUNTRY = "ZZ"


@dataclass(slots=True)
class Rejection:
    topic: str
    partition: int
    offset: int
    value: bytes
    reason: str
    code: str


@dataclass(slots=True)
class TakenCounts:
    """What a flush swaps out of the state first: counted, not yet attributed uses."""

    cells: dict[CellKey, int]
    sealed: CounterDeltas
    needs_old_meta: dict[str, tuple[dict[CellKey, int], TrackMeta]]


@dataclass(slots=True)
class ClosedInterval:
    """What a flush swaps out last, once it has something to write."""

    offsets: dict[str, int]
    watermarks: dict[str, int]
    catalog_writes: dict[str, TrackMeta]
    dlq_pending: list[Any]
    events: int


@dataclass(slots=True)
class PartitionState:
    partition: int
    owner: str
    seq: int
    dedupe_horizon_ms: int
    # Next offset to count per topic code; records below it were counted before.
    next_offset: dict[str, int] = field(default_factory=dict)
    # Largest occurred_at accepted per topic code.
    watermark: dict[str, int] = field(default_factory=dict)
    # (track_id, use, base window start) -> uses counted since the last flush.
    cells: dict[CellKey, int] = field(default_factory=dict)
    # Base window starts present in ``cells`` (usually one or two).
    bases: set[int] = field(default_factory=set)
    # Countries present in ``cells``, so a track's cells are found without a scan.
    countries: set[str] = field(default_factory=set)
    # Increments already attributed (e.g. sealed before a metadata replacement).
    sealed: CounterDeltas = field(default_factory=CounterDeltas)
    # Uses whose track metadata has not arrived yet, persisted in Redis.
    pending: dict[str, Cells] = field(default_factory=dict)
    pending_dirty: set[str] = field(default_factory=set)
    # Metadata handled since the last flush, newest per track. Not the evictable cache:
    # attribution of this interval's uses must not depend on what the cache still holds.
    catalog_writes: dict[str, TrackMeta] = field(default_factory=dict)
    # Cells of tracks whose metadata arrived while no earlier metadata was known here
    # (not cached, or never seen), with that new metadata: the flusher asks Redis for
    # an older entry; without one, the cells take the new metadata.
    needs_old_meta: dict[str, tuple[dict[CellKey, int], TrackMeta]] = field(
        default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    # Rejections handed to the DLQ producer (pipeline/dlq.py's PendingRejection),
    # confirmed by the next flush.
    dlq_pending: list[Any] = field(default_factory=list)
    unflushed_events: int = 0
    # False while this partition of tracks.created is known to lag behind its end (a
    # backlog): pending attributions then expire by its watermark, not the uses' one.
    tracks_caught_up: bool = True
    # The same for sounds.used: with both read to their ends the partition is idle, and
    # the wall clock stands in for its watermarks when closing days (docs/ARCHITECTURE.md).
    uses_caught_up: bool = False
    # Epoch ms: every day before it is closed (sealed for the ledger) for this partition;
    # a use older than it goes to the DLQ as late. Persisted in the meta hash (``cl``).
    closed_before: int = 0
    # Offsets and watermarks of the last flush, to skip flushes with nothing new.
    flushed_marks: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dedupe: dict[str, Deduper] = field(default_factory=dict)
    # Per UTC day, the fields (``track|version``) of the day's catalog entries that a
    # confirmed flush of this state wrote to Redis: writing one again would change
    # nothing there. Bounded, and empty in a new state (a claim), which writes them again.
    entries_written: dict[int, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for code in TOPIC_CODES:
            self.dedupe.setdefault(code, Deduper(self.dedupe_horizon_ms))
            self.next_offset.setdefault(code, 0)
            self.watermark.setdefault(code, 0)

    # -- claim ---------------------------------------------------------------------

    @classmethod
    async def load(cls, store: RedisStore, partition: int, owner: str,
                   dedupe_horizon_ms: int) -> PartitionState:
        """Claim the partition in Redis for ``owner`` and restore what Redis holds of it:
        offsets, watermarks, pending attributions and the live dedupe hashes."""
        claimed = await store.claim(partition, owner)
        state = cls(partition, owner, claimed.seq, dedupe_horizon_ms)
        for code in TOPIC_CODES:
            state.next_offset[code] = claimed.offsets.get(code, 0)
            state.watermark[code] = claimed.watermarks.get(code, 0)
        state.closed_before = claimed.closed_before
        state.flushed_marks = state._marks()
        for track_id, encoded in (await store.load_pending(partition)).items():
            state.pending[track_id.decode()] = {
                (use, base, rest[0] if rest else UNKNOWN_COUNTRY): uses
                for use, base, uses, *rest in orjson.loads(encoded)
            }
        for code in TOPIC_CODES:
            deduper = state.dedupe[code]
            buckets = deduper.live_buckets(state.watermark[code])
            for bucket, packed in (await store.load_dedupe(partition, code, buckets)).items():
                deduper.load(bucket, packed)
        return state

    def _marks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (tuple(self.next_offset.values()),
                (*self.watermark.values(), self.closed_before))

    # -- the record path ---------------------------------------------------------------

    def take_offset(self, code: str, offset: int) -> bool:
        """Move past a record; False if it was counted before (below the next offset)."""
        next_offset = self.next_offset
        if offset < next_offset[code]:
            return False
        next_offset[code] = offset + 1
        return True

    def advance_watermark(self, code: str, occurred_at: int) -> None:
        """The topic's watermark moves forward only; its dedupe horizon follows it."""
        if occurred_at > self.watermark[code]:
            self.watermark[code] = occurred_at
            self.dedupe[code].advance(occurred_at)

    def count_uses(self, keys: Iterable[CellKey], bases: Iterable[int],
                   countries: Iterable[str], newest: int, events: int | None = None
                   ) -> None:
        """Count one use per cell key (fresh events of one record); ``bases`` and
        ``countries``: those of the record's events, ``newest``: its newest event's time,
        ``events``: how many keys there are (needed when ``keys`` is an iterator)."""
        if events is None:
            keys = list(keys)
            events = len(keys)
        _count_elements(self.cells, keys)
        self.bases.update(bases)
        self.countries.update(countries)
        self.advance_watermark(USES_CODE, newest)
        self.unflushed_events += events

    def count_use(self, key: CellKey, occurred_at: int) -> None:
        """``count_uses`` for one event (a single-event record), without the lists."""
        cells = self.cells
        cells[key] = cells.get(key, 0) + 1
        self.bases.add(key[2])
        self.countries.add(key[3])
        if occurred_at > self.watermark[USES_CODE]:
            self.watermark[USES_CODE] = occurred_at
            self.dedupe[USES_CODE].advance(occurred_at)
        self.unflushed_events += 1

    def take_cells_of(self, track_id: str) -> dict[CellKey, int]:
        """Remove and return the track's unflushed cells (its metadata changed)."""
        cells = self.cells
        keys = [key for base in self.bases for use in USES for country in self.countries
                if (key := (track_id, use, base, country)) in cells]
        return {key: cells.pop(key) for key in keys}

    def wait_for_old_meta(self, track_id: str, cells: dict[CellKey, int],
                          arrived: TrackMeta) -> None:
        """Cells counted before ``arrived`` with no earlier metadata known here: the
        flush asks Redis for an older entry (see ``needs_old_meta``)."""
        self.needs_old_meta[track_id] = (cells, arrived)

    def seal(self, deltas: CounterDeltas) -> None:
        """Add increments already attributed (under metadata that is being replaced)."""
        self.sealed.merge(deltas)

    def take_pending(self, track_id: str) -> Cells | None:
        """Remove the track's pending uses (its metadata arrived); None if it had none."""
        cells = self.pending.pop(track_id, None)
        if cells is not None:
            self.pending_dirty.add(track_id)
        return cells

    def write_catalog(self, track_id: str, meta: TrackMeta) -> None:
        """A TrackCreated applied: its metadata goes to the catalog with the next flush."""
        self.catalog_writes[track_id] = meta
        self.unflushed_events += 1

    def reject(self, rejection: Rejection) -> None:
        self.rejections.append(rejection)

    def take_rejections(self) -> list[Rejection]:
        rejections, self.rejections = self.rejections, []
        return rejections

    def sent_to_dlq(self, pending: Any) -> None:
        """A rejection handed to the DLQ producer; the next flush confirms it arrived."""
        self.dlq_pending.append(pending)

    # -- a flush -----------------------------------------------------------------------

    def note_tracks_caught_up(self, caught_up: bool) -> None:
        self.tracks_caught_up = caught_up

    def note_uses_caught_up(self, caught_up: bool) -> None:
        self.uses_caught_up = caught_up

    def closable_before(self, lateness_ms: int, wall_clock_ms: int) -> int:
        """The end (epoch ms, a UTC midnight) of the last day this partition may close now;
        at most ``closed_before`` never moves back.

        A day may close once both topics' clocks are past its end plus the lateness and no
        pending use of it (or earlier) waits for its TrackCreated. A topic's clock is its
        watermark, or the wall clock (given minus the idle close delay) once this worker
        has read it to its end: an idle partition closes its days, a lagging one keeps
        the watermarks of what it read.
        """
        clocks = []
        for code, caught_up in ((USES_CODE, self.uses_caught_up),
                                (TRACKS_CODE, self.tracks_caught_up)):
            clock = self.watermark[code]
            clocks.append(max(clock, wall_clock_ms) if caught_up else clock)
        limit = min(clocks) - lateness_ms
        limit -= limit % DAY_MS
        if self.pending:
            waiting = min(base for cells in self.pending.values() for _, base, _ in cells)
            limit = min(limit, waiting - waiting % DAY_MS)
        return max(limit, self.closed_before)

    def seal_days_before(self, day_end: int) -> None:
        """Days before ``day_end`` are closed here: their uses are late from now on (the
        next flush persists this with everything counted before it)."""
        if day_end > self.closed_before:
            self.closed_before = day_end

    def take_counts(self) -> TakenCounts:
        """Swap out the cells, their base windows, the sealed increments and the cells
        waiting for old metadata: the agent counts into fresh ones meanwhile."""
        taken = TakenCounts(self.cells, self.sealed, self.needs_old_meta)
        self.cells = {}
        self.bases = set()
        self.countries = set()
        self.sealed = CounterDeltas()
        self.needs_old_meta = {}
        return taken

    def add_pending(self, track_id: str, use: str, base_start: int, country: str,
                    uses: int) -> None:
        """Uses whose track has no known metadata wait (persisted) for it."""
        cells = self.pending.get(track_id)
        if cells is None:
            cells = self.pending[track_id] = {}
        key = (use, base_start, country)
        cells[key] = cells.get(key, 0) + uses
        self.pending_dirty.add(track_id)

    def resolve_pending(self, track_id: str) -> Cells:
        """Remove the track's pending uses: the flush attributes them now."""
        self.pending_dirty.add(track_id)
        return self.pending.pop(track_id)

    def expire_pending(self, track_id: str,
                       window_end: int) -> list[tuple[str, int, str, int]]:
        """Remove and return (use, base start, country, uses) of the track's pending uses
        of base windows starting at or before ``window_end``: they go unattributed."""
        track_cells = self.pending[track_id]
        expired = [(use, base_start, country, track_cells.pop((use, base_start, country)))
                   for use, base_start, country in list(track_cells)
                   if base_start <= window_end]
        if expired:
            self.pending_dirty.add(track_id)
        if not track_cells:
            del self.pending[track_id]
        return expired

    def take_pending_changes(self) -> dict[str, Cells | None]:
        """Pending tracks changed since the last flush, with their cells (None or empty:
        none left)."""
        if not self.pending_dirty:
            return {}
        pending = self.pending
        changed = {track_id: pending.get(track_id) for track_id in self.pending_dirty}
        self.pending_dirty = set()
        return changed

    def take_dedupe_changes(self, code: str) -> tuple[dict[int, bytes], set[int]]:
        """Hashes added since the last flush per bucket, and the buckets expired since."""
        deduper = self.dedupe[code]
        new_hashes = deduper.take_new()
        return new_hashes, set(deduper.evict(self.watermark[code]))

    def close_interval(self, writes_anything: bool) -> ClosedInterval | None:
        """End the interval since the last flush: None if nothing moved (no writes, the
        same offsets and watermarks), else its marks, catalog writes, DLQ sends and
        events, swapped out."""
        marks = self._marks()
        if not writes_anything and marks == self.flushed_marks:
            return None
        self.flushed_marks = marks
        closed = ClosedInterval(dict(self.next_offset), dict(self.watermark),
                                self.catalog_writes, self.dlq_pending, self.unflushed_events)
        self.catalog_writes = {}
        self.dlq_pending = []
        self.unflushed_events = 0
        return closed

    def confirm_flush(self, entries_written: dict[int, list[str]] | None = None) -> None:
        """Redis applied the flush: the next one carries the next sequence number, and
        the catalog entries it wrote (per day, their fields) are there."""
        self.seq += 1
        if entries_written:
            remembered = self.entries_written
            for day, fields in entries_written.items():
                written = remembered.get(day)
                if written is None:
                    if len(remembered) >= _ENTRY_DAYS:
                        del remembered[min(remembered)]
                    written = remembered[day] = set()
                elif len(written) + len(fields) > _ENTRIES_PER_DAY:
                    written.clear()
                written.update(fields)

    def unwritten_entries(self, day: int, values: dict[str, str]) -> dict[str, str]:
        """The day's catalog entries no confirmed flush of this state wrote yet."""
        written = self.entries_written.get(day)
        if not written:
            return values
        return {name: value for name, value in values.items() if name not in written}

    # -- reporting ---------------------------------------------------------------------

    @property
    def pending_uses(self) -> int:
        return sum(sum(cells.values()) for cells in self.pending.values())
