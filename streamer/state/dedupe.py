"""Duplicate detection by 64-bit event-id hashes, bounded by an event-time horizon.

Hashes are filed under buckets of event time (a fifth of the horizon). A bucket is
dropped, in memory and in Redis, once it ends before ``watermark - horizon``, so the
state holds about ``rate x horizon`` hashes whatever the run time. New hashes are
persisted with the partition's atomic flush, so a restarted worker detects the
duplicates of events it counted before the crash.

The hashes live in one hash table per partition and topic (state/dedupe_table.py:
two cache lines per probe, a batch probed with a few numpy operations), except while a
partition has only ever had single-event records and holds at most ``SMALL_LIMIT``
live hashes (the tracks topic: a few thousand ids per partition within the horizon):
then they sit in a plain dict, since the table's probe and insert, one hash at a time in
Python, cost several times a dict's. Which of the two holds the hashes changes nothing
that is asked of them or persisted: the same hashes under the same buckets.

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

# Live hashes a partition fed only single-event records keeps in a dict (~72 bytes a
# hash, against 9.4-19 in the table): past it they move to the table, and back once
# expiry leaves a quarter of it.
SMALL_LIMIT = 16_384
_INSERT_CHUNK = 4096  # hashes inserted into the table at once: few share a block


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

    __slots__ = ("_batched", "_counts", "_expired", "_first_live", "_horizon_ms",
                 "_initial_level", "_max_load", "_new", "_new_one", "_overflow", "_small",
                 "_small_limit", "_table", "bucket_ms")

    def __init__(self, horizon_ms: int, initial_level: int = MIN_LEVEL,
                 max_load: float = MAX_LOAD, small_limit: int = SMALL_LIMIT) -> None:
        self._horizon_ms = horizon_ms
        self.bucket_ms = max(1, horizon_ms // 5)
        self._initial_level = initial_level
        self._max_load = max_load
        self._table = BlockTable(initial_level, max_load)
        # While not None, every live hash is here (hash -> its bucket's code) and the
        # table is empty: a partition of single-event records with few live hashes.
        self._small: dict[int, int] | None = {}
        self._small_limit = small_limit
        # Once a batch record came, the table holds the hashes for good (its numpy path).
        self._batched = False
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
        """The table's blocks in use, ~100 bytes per overflowed hash, ~72 per hash of
        the small dict."""
        small = 72 * len(self._small) if self._small is not None else 0
        return self._table.nbytes + 100 * len(self._overflow) + small

    @property
    def in_table(self) -> bool:
        """Whether the hashes are in the block table (else in the small dict)."""
        return self._small is None

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
        self._batched = True
        if self._small is not None:
            self._to_table()
        hashes = np.fromiter(digests, dtype=np.uint64, count=count)
        table = self._table
        table.grow(table.entries + count)  # first: the rows read below stay valid
        probe = table.probe(hashes)
        rows1, rows2 = table.rows(probe.block1), table.rows(probe.block2)
        seen = table.holds(rows1, probe.key1) | table.holds(rows2, probe.key2)
        overflow = self._overflow
        if overflow and not overflow.keys().isdisjoint(digests):  # one C pass, usually
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
        small = self._small
        if small is not None:
            if digest in small:
                return False
            bucket = occurred_at // self.bucket_ms
            small[digest] = bucket % 255 + 1  # _code, inline: the hot path of TrackCreated
            counts = self._counts
            counts[bucket] = counts.get(bucket, 0) + 1
            pending = self._new_one.get(bucket)
            if pending is None:
                pending = self._new_one[bucket] = array("Q")
            pending.append(digest)
            if len(small) > self._small_limit:
                self._to_table()
            return True
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
        small = self._small
        if small is not None:
            fresh = [digest for digest in hashes.tolist() if digest not in small]
            if len(small) + len(fresh) <= self._small_limit:
                code = _code(bucket_index)
                small.update(dict.fromkeys(fresh, code))
                self._counts[bucket_index] = self._counts.get(bucket_index, 0) + len(fresh)
                return
            self._to_table()
        table = self._table
        probe = table.probe(hashes)
        seen = (table.holds(table.rows(probe.block1), probe.key1)
                | table.holds(table.rows(probe.block2), probe.key2))
        if self._overflow:
            seen |= np.isin(hashes, np.fromiter(self._overflow, dtype=np.uint64))
        new = hashes[~seen]
        self._counts[bucket_index] = self._counts.get(bucket_index, 0) + len(new)
        self._insert_new(new, np.full(len(new), _code(bucket_index), dtype=np.uint64))

    def _insert_new(self, hashes: np.ndarray, codes: np.ndarray) -> None:
        """Store hashes the table does not hold, in chunks: few share a block."""
        table = self._table
        table.grow(table.entries + len(hashes))
        for start in range(0, len(hashes), _INSERT_CHUNK):
            part = hashes[start:start + _INSERT_CHUNK]
            probe = table.probe(part)
            self._insert(table, part, codes[start:start + _INSERT_CHUNK], probe,
                         table.rows(probe.block1), table.rows(probe.block2))

    # -- where the hashes live -------------------------------------------------------------

    def _to_table(self) -> None:
        """Move the small dict's hashes into the (empty) table, in bulk."""
        small = self._small
        assert small is not None
        self._small = None
        if small:
            self._insert_new(np.fromiter(small.keys(), dtype=np.uint64, count=len(small)),
                             np.fromiter(small.values(), dtype=np.uint64, count=len(small)))

    def _to_small(self) -> None:
        """Move the table's and the overflow's hashes into a dict; a fresh table."""
        hashes, codes = self._table.contents()
        small = dict(zip(hashes.tolist(), codes.tolist(), strict=True))
        small.update(self._overflow)
        self._small = small
        self._overflow = {}
        self._table = BlockTable(self._initial_level, self._max_load)

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
        self._expired.extend(expired)
        small = self._small
        if small is not None:
            alive = live.tolist()
            self._small = {digest: code for digest, code in small.items() if alive[code]}
            return
        self._table.sweep(live)
        if self._overflow:
            self._overflow = {digest: code for digest, code in self._overflow.items()
                              if live[code]}
        if not self._batched and len(self) <= self._small_limit // 4:
            self._to_small()

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
