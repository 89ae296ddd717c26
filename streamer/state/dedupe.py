"""Duplicate detection by 64-bit event-id hashes, bounded by an event-time horizon.

Hashes are filed under buckets of event time (a fifth of the horizon). A bucket is
dropped, in memory and in Redis, once it ends before ``watermark - horizon``, so the
state holds about ``rate x horizon`` hashes whatever the run time. New hashes are
persisted with the partition's atomic flush, so a restarted worker detects the
duplicates of events it counted before the crash.

The hashes live in one hash table per partition and topic (state/dedupe_table.py:
two cache lines per probe, a batch probed with a few numpy operations).

Collision odds: the table answers exactly for the 64-bit hashes, so a new event is
taken for a duplicate only when its hash equals one of the partition's n live hashes:
n / 2**64 per event, 5.1e-13 at n = 9.4M (a partition's share at 250k events/s), one
false duplicate per ~2e12 events, ~90 days at 250k events/s. (Words of the top 56
bits, before quotienting, had n / 2**56: ~3 a day at that rate.)
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np
import xxhash

from streamer.state.dedupe_table import MAX_LOAD, MIN_LEVEL, BlockTable, Probe

_hash64 = xxhash.xxh3_64_intdigest


def event_hash(event_id: str) -> int:
    return _hash64(event_id.encode())


def _code(bucket: int) -> int:
    """A bucket's code in the low byte of its words, 1-255.

    Live buckets span a few codes (the horizon's five, plus early events'), so codes
    of 255 buckets apart never live at once.
    """
    return bucket % 255 + 1


class Deduper:
    """Seen-set of one input partition of one topic."""

    __slots__ = ("_counts", "_expired", "_first_live", "_horizon_ms", "_new", "_new_one",
                 "_overflow", "_table", "bucket_ms")

    def __init__(self, horizon_ms: int, initial_level: int = MIN_LEVEL,
                 max_load: float = MAX_LOAD) -> None:
        self._horizon_ms = horizon_ms
        self.bucket_ms = max(1, horizon_ms // 5)
        self._table = BlockTable(initial_level, max_load)
        # Live hashes per bucket (the table's words carry the bucket's code).
        self._counts: dict[int, int] = {}
        # Hashes whose two blocks were both full (rare): hash -> its bucket's code.
        self._overflow: dict[int, int] = {}
        # Hashes added since the last flush, per bucket, to append to Redis: by batch
        # records (arrays) and by single-event ones.
        self._new: dict[int, list[np.ndarray]] = {}
        self._new_one: dict[int, array[int]] = {}
        # Buckets dropped since the last flush, to delete in Redis.
        self._expired: list[int] = []
        self._first_live = 0

    def __len__(self) -> int:
        return sum(self._counts.values())

    @property
    def memory_bytes(self) -> int:
        """The table's blocks in use, ~100 bytes per overflowed hash."""
        return self._table.nbytes + 100 * len(self._overflow)

    # -- adding ------------------------------------------------------------------------

    def add_batch(self, digests: Sequence[int], times: Sequence[int]) -> list[bool]:
        """For a record's events, in order: True where an event is new (and remember it).

        The probe, the choice of slots and the stores are numpy operations over the
        whole batch; only hashes that meet another of the batch in one block, or find
        both blocks full, go one by one.
        """
        count = len(digests)
        if not count:
            return []
        hashes = np.fromiter(digests, dtype=np.uint64, count=count)
        table = self._table
        table.grow(table.entries + count)  # first: the rows read below stay valid
        probe = table.probe(hashes)
        rows1, rows2 = table.rows(probe.block1), table.rows(probe.block2)
        seen = table.holds(rows1, probe.key1) | table.holds(rows2, probe.key2)
        if self._overflow:
            overflow = self._overflow
            seen |= np.fromiter((digest in overflow for digest in digests), dtype=bool,
                                count=count)
        fresh = ~seen
        if len(set(digests)) != count:
            # The same id twice in one record (a producer's retry): only the first is new.
            _, first = np.unique(hashes, return_index=True)
            once = np.zeros(count, dtype=bool)
            once[first] = True
            fresh &= once
        new = np.flatnonzero(fresh)
        flags: list[bool] = fresh.tolist()
        if not len(new):
            return flags
        bucket_ms = self.bucket_ms
        low, high = min(times) // bucket_ms, max(times) // bucket_ms
        if len(new) < count:
            hashes, probe = hashes[new], probe.take(new)
            rows1, rows2 = rows1[new], rows2[new]
        if low == high:
            codes = np.full(len(hashes), _code(low), dtype=np.uint64)
            self._note(low, hashes)
        else:  # the record spans buckets
            bucket_of = np.fromiter(times, dtype=np.int64, count=count)[new] // bucket_ms
            codes = (bucket_of % 255 + 1).astype(np.uint64)
            for bucket in np.unique(bucket_of).tolist():
                self._note(bucket, hashes[bucket_of == bucket])
        self._insert(table, hashes, codes, probe, rows1, rows2)
        return flags

    def _insert(self, table: BlockTable, hashes: np.ndarray, codes: np.ndarray,
                probe: Probe, rows1: np.ndarray, rows2: np.ndarray) -> None:
        for position in table.insert(probe, codes, hashes, rows1, rows2):
            self._overflow[int(hashes[position])] = int(codes[position])

    def add_digest(self, digest: int, occurred_at: int) -> bool:
        """Remember the event; False when it was already seen (a duplicate)."""
        table = self._table
        if table.find_one(digest) or digest in self._overflow:
            return False
        bucket = occurred_at // self.bucket_ms
        self._counts[bucket] = self._counts.get(bucket, 0) + 1
        pending = self._new_one.get(bucket)
        if pending is None:
            pending = self._new_one[bucket] = array("Q")
        pending.append(digest)
        table.grow(table.entries + 1)
        if not table.insert_one(digest, _code(bucket)):
            self._overflow[digest] = _code(bucket)
        return True

    def add(self, event_id: str, occurred_at: int) -> bool:
        return self.add_digest(_hash64(event_id.encode()), occurred_at)

    def _note(self, bucket: int, hashes: np.ndarray) -> None:
        """Count new hashes under their bucket and keep them for Redis."""
        self._counts[bucket] = self._counts.get(bucket, 0) + len(hashes)
        pending = self._new.get(bucket)
        if pending is None:
            self._new[bucket] = [hashes]
        else:
            pending.append(hashes)

    def load(self, bucket_index: int, packed: bytes) -> None:
        """Hashes read back from Redis (a claim); a torn tail is ignored."""
        hashes = np.frombuffer(packed[: len(packed) - len(packed) % 8], dtype="<u8")
        if not len(hashes):
            return
        hashes = np.unique(hashes.astype(np.uint64))
        table = self._table
        probe = table.probe(hashes)
        seen = (table.holds(table.rows(probe.block1), probe.key1)
                | table.holds(table.rows(probe.block2), probe.key2))
        if self._overflow:
            seen |= np.isin(hashes, np.fromiter(self._overflow, dtype=np.uint64))
        new = hashes[~seen]
        self._counts[bucket_index] = self._counts.get(bucket_index, 0) + len(new)
        table.grow(table.entries + len(new))
        code = _code(bucket_index)
        for start in range(0, len(new), 4096):  # in batches: few share a block
            part = new[start:start + 4096]
            probe = table.probe(part)
            self._insert(table, part, np.full(len(part), code, dtype=np.uint64), probe,
                         table.rows(probe.block1), table.rows(probe.block2))

    # -- expiry --------------------------------------------------------------------------

    def live_buckets(self, watermark: int) -> range:
        """Buckets that can still hold duplicates of events at or after the watermark."""
        first = max(0, (watermark - self._horizon_ms) // self.bucket_ms)
        return range(first, watermark // self.bucket_ms + 1)

    def advance(self, watermark: int) -> None:
        """Forget buckets wholly older than the horizon (called as the watermark moves)."""
        first_live = (watermark - self._horizon_ms) // self.bucket_ms
        if first_live <= self._first_live:
            return
        self._first_live = first_live
        expired = [bucket for bucket in self._counts if bucket < first_live]
        if not expired:
            return
        for bucket in expired:
            del self._counts[bucket]
        live = np.zeros(256, dtype=bool)
        for bucket in self._counts:
            live[_code(bucket)] = True
        self._table.sweep(live)
        if self._overflow:
            self._overflow = {digest: code for digest, code in self._overflow.items()
                              if live[code]}
        self._expired.extend(expired)

    def evict(self, watermark: int) -> list[int]:
        """Advance to the watermark; return the buckets dropped since the last call."""
        self.advance(watermark)
        expired, self._expired = self._expired, []
        return expired

    def take_new(self) -> dict[int, bytes]:
        """Hashes added since the last call, packed per bucket for Redis APPEND."""
        packed = {bucket: b"".join(part.astype("<u8").tobytes() for part in parts)
                  for bucket, parts in self._new.items()}
        for bucket, hashes in self._new_one.items():
            packed[bucket] = packed.get(bucket, b"") + hashes.tobytes()
        self._new = {}
        self._new_one = {}
        return packed
