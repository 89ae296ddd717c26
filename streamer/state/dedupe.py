"""Duplicate detection by 64-bit event-id hashes, bounded by an event-time horizon.

Hashes are filed under buckets of event time (a fifth of the horizon). A bucket is
dropped, in memory and in Redis, once it ends before ``watermark - horizon``, so the
state holds about ``rate x horizon`` hashes whatever the run time. New hashes are
persisted with the partition's atomic flush, so a restarted worker detects the
duplicates of events it counted before the crash.

In memory every live hash of a partition sits in one hash table (``_BlockTable``):
blocks of eight 64-bit words, one CPU cache line each, and two candidate blocks per
hash (the emptier one takes it; when both are full, one resident moves to its other
block). A probe reads two cache lines whatever the number of hashes or buckets, and a
batch record probes and inserts its 500 hashes with a few vectorised numpy operations.
The design it replaced kept a sorted array per bucket behind a filter: five filters
and a binary search per event once the horizon filled, and each freeze copied the
whole bucket (2.5x slower per batch at 9.4M hashes, the state of one of 8 partitions
at 250k events/s). A word is the hash with its low byte replaced by its bucket's code,
so expiry needs no second array: dropping a bucket clears the words with its code.

Memory: 8 bytes a slot. The table doubles when 85 % of its slots are full, so it holds
9.4 to 19 bytes a hash (the old design: ~9 bytes frozen, ~90 for the hashes not yet
frozen). A doubling splits each block into itself and a new one (linear hashing: the
words whose next address bit is 1 move to the new block, in the same slot), spread
over 32 calls: no pause to rehash millions of hashes, and no insert can fail for it.
From 2**14 blocks (1 MB) a table's array reserves 2 GB of address space, so doublings
copy nothing: a copy held the old and the new table at once, 64 MB more at 2**20 blocks.

Collision odds: a word keeps 56 bits of the hash, and both blocks of a hash are
functions of those bits. So a new event is taken for a duplicate when any of the
partition's n live hashes shares its 56 bits (it would sit in one of the event's
blocks): about n / 2**56 per event. At n = 9.4M (a partition's share at 250k events/s)
that is 1.3e-10, one false duplicate per ~7.7e9 events, against n / 2**64 for the
64-bit hash itself. Leaving out of a word the bits its block's address implies
(quotienting) would free room for all 64.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np
import xxhash

_hash64 = xxhash.xxh3_64_intdigest

SLOTS = 8  # 8 words of 8 bytes: one 64-byte cache line per block
MAX_LOAD = 0.85  # the table doubles when more of its slots than this are full
_U64 = np.uint64
_CODE = _U64(0xFF)
_KEY = _U64(0xFFFF_FFFF_FFFF_FF00)
_KEY_INT = 0xFFFF_FFFF_FFFF_FF00
_LOW32 = _U64(0xFFFF_FFFF)
_ONES = _U64(0x0101_0101_0101_0101)  # sums the bytes of a word (each 0 or 1)
_SWEEP_BLOCKS = 1 << 16  # blocks per step of an expiry sweep (bounds its temporaries)
# Tables from 1 MB reserve 2 GB of address space (2**25 blocks), not memory.
_RESERVE_FROM = 1 << 14
_RESERVE = 1 << 25


def event_hash(event_id: str) -> int:
    return _hash64(event_id.encode())


def _keys(hashes: np.ndarray) -> np.ndarray:
    """The stored part of each hash: its top 56 bits, never 0 (0 marks an empty slot)."""
    keys = hashes & _KEY
    keys[keys == 0] = 0x100  # 2**-56 odds: such a hash shares its key with 0x100..0x1FF
    return keys


def _key(digest: int) -> int:
    return (digest & _KEY_INT) or 0x100


def _code(bucket: int) -> int:
    """A bucket's code in the low byte of its words, 1-255 (0 is an empty slot).

    Live buckets span a few codes (the horizon's five, plus early events'), so codes
    of 255 buckets apart never live at once.
    """
    return bucket % 255 + 1


def _strict_overcommit() -> bool:
    """Linux's mode 2 counts reserved address space as memory: reserve nothing then."""
    try:
        with open("/proc/sys/vm/overcommit_memory") as mode:
            return mode.read().strip() == "2"
    except OSError:
        return False


_CAN_RESERVE = not _strict_overcommit()


def _zeros(blocks: int) -> np.ndarray:
    """Zeroed blocks; a large table is reserved far ahead, so its later doublings
    copy nothing. Untouched zero pages cost no memory, and a copy would hold the old
    and the new array at once: a peak of one more table (64 MB at 2**20 blocks)."""
    if _CAN_RESERVE and _RESERVE_FROM <= blocks < _RESERVE:
        try:
            return np.zeros((_RESERVE, SLOTS), dtype=np.uint64)
        except MemoryError:  # an address-space limit (ulimit -v): grow by copying instead
            pass
    return np.zeros((blocks, SLOTS), dtype=np.uint64)


class _BlockTable:
    """Words in blocks of ``SLOTS``, each hash in one of two blocks.

    The two candidate blocks come from bits 32-63 and 8-39 of the hash, addressed by
    linear hashing: ``2**level + split`` blocks are in use; a block below ``split``
    has been split, so its address takes one more bit. Splitting block ``j`` moves the
    words whose next address bit is 1 to block ``j + 2**level``, in the same slot
    (that block is new and empty), so a split never fails and never moves other blocks.
    A block not yet split takes twice the share of one that has, so the splits of one
    doubling follow each other closely (``grow``) rather than one block at a time.
    """

    __slots__ = ("_flat", "entries", "level", "split", "words")

    def __init__(self, level: int = 6) -> None:
        self.level = level
        self.split = 0
        self.entries = 0  # words stored (expired ones count until their sweep)
        self.words = _zeros(2 << level)
        self._flat = memoryview(self.words.reshape(-1))

    @property
    def blocks(self) -> int:
        return (1 << self.level) + self.split

    @property
    def nbytes(self) -> int:
        return self.blocks * SLOTS * 8

    # -- addressing ----------------------------------------------------------------

    def _address(self, x: np.ndarray) -> np.ndarray:
        low = x & _U64((1 << self.level) - 1)
        if self.split:
            wide = x & _U64((2 << self.level) - 1)
            low = np.where(low < _U64(self.split), wide, low)
        return low.astype(np.intp)

    def candidates(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._address(keys >> _U64(32)), self._address((keys >> _U64(8)) & _LOW32)

    def _address_one(self, x: int) -> int:
        low = x & ((1 << self.level) - 1)
        return x & ((2 << self.level) - 1) if low < self.split else low

    def candidates_one(self, key: int) -> tuple[int, int]:
        return self._address_one(key >> 32), self._address_one((key >> 8) & 0xFFFF_FFFF)

    # -- batches -------------------------------------------------------------------

    def rows(self, blocks: np.ndarray) -> np.ndarray:
        return self.words.take(blocks, axis=0)

    @staticmethod
    def holds(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Per key: whether its row holds it (any code)."""
        matches = (rows & _KEY) == keys[:, None]
        return matches.view(np.uint64)[:, 0] != 0  # 8 bools are one word

    def insert(self, words: np.ndarray, b1: np.ndarray, b2: np.ndarray,
               rows1: np.ndarray, rows2: np.ndarray) -> list[int]:
        """Store new words, given their candidate blocks and those blocks' rows as read
        before; return the positions that found no free slot."""
        free1 = (rows1 == 0).view(np.uint64)[:, 0]  # one byte per slot: 1 if free
        free2 = (rows2 == 0).view(np.uint64)[:, 0]
        first = ((free1 * _ONES) >> _U64(56)) >= ((free2 * _ONES) >> _U64(56))
        blocks = np.where(first, b1, b2)
        free = np.where(first, free1, free2)
        # Two new words for one block would take the same slot: those go one by one.
        order = np.argsort(blocks, kind="stable")
        ordered = blocks[order]
        shared = np.zeros(len(blocks), dtype=bool)
        if len(blocks) > 1:
            same = ordered[1:] == ordered[:-1]
            if same.any():
                shared[order[1:][same]] = True
                shared[order[:-1][same]] = True
        fast = (free != 0) & ~shared
        lowest = free[fast] & (~free[fast] + _U64(1))  # the first free slot's byte
        slots = (np.frexp(lowest.astype(np.float64))[1] - 1) // 8
        self.words[blocks[fast], slots] = words[fast]
        self.entries += int(np.count_nonzero(fast))
        full = []
        for position in np.flatnonzero(~fast).tolist():
            if not self.insert_one(int(words[position])):
                full.append(position)
        return full

    # -- one at a time (single-event records) ---------------------------------------

    def find_one(self, key: int) -> int:
        """The word holding this key, or 0."""
        flat = self._flat
        for block in self.candidates_one(key):
            start = block * SLOTS
            for word in flat[start:start + SLOTS]:
                if word & _KEY_INT == key:
                    return word
        return 0

    def insert_one(self, word: int) -> bool:
        """Store one word in the emptier of its blocks; if both are full, move a word
        of theirs to its other block to make room (one step of cuckoo hashing).
        False if that finds no room either (the caller keeps the word aside)."""
        flat = self._flat
        blocks = self.candidates_one(word & _KEY_INT)
        best, best_free = -1, 0
        for block in blocks:
            free = flat[block * SLOTS:(block + 1) * SLOTS].tolist().count(0)
            if free > best_free:
                best, best_free = block, free
        if best >= 0:
            self._put(best, word)
            return True
        for block in blocks:
            start = block * SLOTS
            for slot, resident in enumerate(flat[start:start + SLOTS].tolist()):
                first, second = self.candidates_one(resident & _KEY_INT)
                other = second if first == block else first
                if other != block and 0 in flat[other * SLOTS:(other + 1) * SLOTS].tolist():
                    self._put(other, resident)
                    flat[start + slot] = word
                    return True
        return False

    def _put(self, block: int, word: int) -> None:
        start = block * SLOTS
        self._flat[start + self._flat[start:start + SLOTS].tolist().index(0)] = word
        self.entries += 1

    # -- growth and expiry -----------------------------------------------------------

    def grow(self, wanted_entries: int) -> None:
        """Make room for ``wanted_entries`` words.

        The table doubles once its blocks are ``MAX_LOAD`` full: a block that has not
        split yet takes twice the share of one that has, so the splits of one doubling
        are done within 32 calls (of a batch each), not one a call. A load far beyond
        the table (a claim reading back millions of hashes) finishes doublings at once.
        """
        half = 1 << self.level
        if self.split or wanted_entries > MAX_LOAD * SLOTS * half:
            self._split(self.split, min(half, self.split + max(64, half // 32)))
        while wanted_entries > 0.95 * SLOTS * (1 << self.level):
            self._split(self.split, 1 << self.level)

    def _split(self, start: int, stop: int) -> None:
        half = 1 << self.level
        old = self.words[start:stop]
        x1 = old >> _U64(32)
        x2 = (old >> _U64(8)) & _LOW32
        rows = np.arange(start, stop, dtype=np.uint64)[:, None]
        by_first = (x1 & _U64(half - 1)) == rows  # else it sits in its second block
        bit = np.where(by_first, x1, x2) & _U64(half)
        move = (old != 0) & (bit != 0)
        self.words[start + half:stop + half] = np.where(move, old, _U64(0))
        old[move] = 0
        self.split = stop
        if self.split == half:
            self.level += 1
            self.split = 0
            if len(self.words) < 2 << self.level:  # not reserved: copy into a larger one
                grown = _zeros(2 << self.level)
                grown[:half * 2] = self.words[:half * 2]
                self.words = grown
                self._flat = memoryview(grown.reshape(-1))

    def sweep(self, live_codes: np.ndarray) -> None:
        """Clear the words whose code is not live (``live_codes``: 256 booleans)."""
        used = self.blocks
        for start in range(0, used, _SWEEP_BLOCKS):
            chunk = self.words[start:min(used, start + _SWEEP_BLOCKS)]
            dead = (chunk != 0) & ~live_codes[(chunk & _CODE).astype(np.intp)]
            self.entries -= int(np.count_nonzero(dead))
            chunk[dead] = 0


class Deduper:
    """Seen-set of one input partition of one topic."""

    __slots__ = ("_counts", "_expired", "_first_live", "_horizon_ms", "_new", "_new_one",
                 "_overflow", "_table", "bucket_ms")

    def __init__(self, horizon_ms: int, initial_level: int = 6) -> None:
        self._horizon_ms = horizon_ms
        self.bucket_ms = max(1, horizon_ms // 5)
        self._table = _BlockTable(initial_level)
        # Live hashes per bucket (the table's words carry the bucket's code).
        self._counts: dict[int, int] = {}
        # Words whose two blocks were both full (rare), by key: the whole word.
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
        """The table's blocks in use, ~100 bytes per overflowed word."""
        return self._table.nbytes + 100 * len(self._overflow)

    # -- adding ------------------------------------------------------------------------

    def add_batch(self, digests: Sequence[int], times: Sequence[int]) -> list[bool]:
        """For a record's events, in order: True where an event is new (and remember it).

        The probe, the choice of slots and the stores are numpy operations over the
        whole batch; only words that meet another of the batch in one block, or find
        both blocks full, go one by one.
        """
        count = len(digests)
        if not count:
            return []
        hashes = np.fromiter(digests, dtype=np.uint64, count=count)
        keys = _keys(hashes)
        table = self._table
        table.grow(table.entries + count)  # first: the rows read below stay valid
        b1, b2 = table.candidates(keys)
        rows1, rows2 = table.rows(b1), table.rows(b2)
        seen = table.holds(rows1, keys) | table.holds(rows2, keys)
        if self._overflow:
            overflow = self._overflow
            seen |= np.fromiter((key in overflow for key in keys.tolist()), dtype=bool,
                                count=count)
        fresh = ~seen
        if len(set(digests)) != count:
            # The same id twice in one record (a producer's retry): only the first is new.
            _, first = np.unique(hashes, return_index=True)
            once = np.zeros(count, dtype=bool)
            once[first] = True
            fresh &= once
        new = np.flatnonzero(fresh)
        if not len(new):
            return fresh.tolist()
        bucket_ms = self.bucket_ms
        low, high = min(times) // bucket_ms, max(times) // bucket_ms
        if low == high:
            codes: np.ndarray | np.uint64 = _U64(_code(low))
            self._note(low, hashes[new])
        else:  # the record spans buckets
            bucket_of = np.fromiter(times, dtype=np.int64, count=count)[new] // bucket_ms
            codes = (bucket_of % 255 + 1).astype(np.uint64)
            for bucket in np.unique(bucket_of).tolist():
                self._note(bucket, hashes[new][bucket_of == bucket])
        words = keys[new] | codes
        for position in table.insert(words, b1[new], b2[new], rows1[new], rows2[new]):
            word = int(words[position])
            self._overflow[word & _KEY_INT] = word
        return fresh.tolist()

    def add_digest(self, digest: int, occurred_at: int) -> bool:
        """Remember the event; False when it was already seen (a duplicate)."""
        key = _key(digest)
        table = self._table
        if table.find_one(key) or key in self._overflow:
            return False
        bucket = occurred_at // self.bucket_ms
        self._counts[bucket] = self._counts.get(bucket, 0) + 1
        pending = self._new_one.get(bucket)
        if pending is None:
            pending = self._new_one[bucket] = array("Q")
        pending.append(digest)
        table.grow(table.entries + 1)
        word = key | _code(bucket)
        if not table.insert_one(word):
            self._overflow[key] = word
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
        keys = _keys(hashes)
        table = self._table
        b1, b2 = table.candidates(keys)
        seen = (table.holds(table.rows(b1), keys) | table.holds(table.rows(b2), keys))
        if self._overflow:
            seen |= np.isin(keys, np.fromiter(self._overflow, dtype=np.uint64))
        new = np.flatnonzero(~seen)
        self._counts[bucket_index] = self._counts.get(bucket_index, 0) + len(new)
        table.grow(table.entries + len(new))
        for start in range(0, len(new), 4096):  # in batches: few share a block
            part = keys[new[start:start + 4096]]
            words = part | _U64(_code(bucket_index))
            b1, b2 = table.candidates(part)
            for position in table.insert(words, b1, b2, table.rows(b1), table.rows(b2)):
                word = int(words[position])
                self._overflow[word & _KEY_INT] = word

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
            self._overflow = {key: word for key, word in self._overflow.items()
                              if live[word & 0xFF]}
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
