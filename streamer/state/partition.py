"""Everything a worker holds for one claimed input partition between two flushes.

Partition N of ``sounds.used`` and partition N of ``tracks.created`` share one state:
Faust assigns co-partitioned topics together, and one atomic flush per partition
number covers both topics' offsets.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from streamer.events.validation import TrackMeta
from streamer.state.dedupe import Deduper
from streamer.state.deltas import CounterDeltas

# Topic codes, as used in Redis meta fields and dedupe keys.
USES_CODE = "u"
TRACKS_CODE = "t"

# (use, base window start) -> uses, for pending attributions of one track
Cells = dict[tuple[str, int], int]


@dataclass(slots=True)
class Rejection:
    topic: str
    partition: int
    offset: int
    value: bytes
    reason: str
    code: str


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
    cells: dict[tuple[str, str, int], int] = field(default_factory=dict)
    # Base window starts present in ``cells`` (usually one or two).
    bases: set[int] = field(default_factory=set)
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
    needs_old_meta: dict[str, tuple[dict[tuple[str, str, int], int], TrackMeta]] = field(
        default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    # Rejections handed to the DLQ producer, confirmed by the next flush.
    dlq_pending: list[Any] = field(default_factory=list)
    unflushed_events: int = 0
    # False while this partition of tracks.created is known to lag behind its end (a
    # backlog): pending attributions then expire by its watermark, not the uses' one.
    tracks_caught_up: bool = True
    # Offsets and watermarks of the last flush, to skip flushes with nothing new.
    flushed_marks: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dedupe: dict[str, Deduper] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for code in (USES_CODE, TRACKS_CODE):
            self.dedupe.setdefault(code, Deduper(self.dedupe_horizon_ms))
            self.next_offset.setdefault(code, 0)
            self.watermark.setdefault(code, 0)

    def add_pending(self, track_id: str, use: str, base_start: int, uses: int) -> None:
        cells = self.pending.get(track_id)
        if cells is None:
            cells = self.pending[track_id] = {}
        key = (use, base_start)
        cells[key] = cells.get(key, 0) + uses
        self.pending_dirty.add(track_id)

    @property
    def pending_uses(self) -> int:
        return sum(sum(cells.values()) for cells in self.pending.values())
