"""Duplicate detection by 64-bit event-id hashes, bounded by an event-time horizon.

Hashes are grouped in buckets of event time (a fifth of the horizon). A bucket is
dropped, in memory and in Redis, once it ends before ``watermark - horizon``, so the
state holds about ``rate x horizon`` hashes whatever the run time. New hashes are
persisted with the partition's atomic flush, so a restarted worker detects the
duplicates of events it counted before the crash.

Memory: new hashes go to one Python set (fast to probe one at a time, ~80 bytes each);
once a bucket holds ``freeze_at`` of them they move into the bucket's sorted numpy
array (8 bytes each). Batch records probe the frozen arrays with one vectorised
``searchsorted`` per bucket (``frozen_hits``); at 250k events/s and a 5-minute horizon
that keeps ~75 million hashes in ~0.6 GB instead of ~5 GB.

A binary search over arrays of millions of hashes misses the CPU caches at most of its
~20 steps (9 % of the worker's time at 200k events/s), and nearly every probe is a
miss: a new event. So each frozen array has a filter in front of it: a blocked Bloom
filter, 6 to 12 bits per frozen hash (+1 byte per hash), where a hash sets two bits of
one 64-bit word. One memory access rules out ~90 % of the probes (one bit per hash:
~84 %, measured at 11 bits per hash), and only the rest are searched. The word is
chosen by the hash's top bits, so a sorted array's words come in order and the filter
is built with one vectorised pass; the two bits come from the hash's low twelve.

Collision odds: with n hashes live in one partition, the chance that any new event
is wrongly taken for a duplicate is about n / 2**64 per event; at 100 million live
hashes that is one false duplicate per ~1.8e11 events.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import compress

import numpy as np
import xxhash

_hash64 = xxhash.xxh3_64_intdigest
_EMPTY = np.empty(0, dtype=np.uint64)
# A filter is rebuilt twice as large when it holds fewer bits per hash than this.
_MIN_FILTER_BITS = 6


def _filter_for(sorted_hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """A filter (words, shift) sized for twice the hashes, holding those given."""
    bits = max(128, 2 * _MIN_FILTER_BITS * len(sorted_hashes))
    word_bits = max(1, (bits - 1).bit_length() - 6)  # a power of two of 64-bit words
    words = np.zeros(1 << word_bits, dtype=np.uint64)
    shift = 64 - word_bits
    _filter_add(words, shift, sorted_hashes)
    return words, shift


def _filter_bits(hashes: np.ndarray) -> np.ndarray:
    """Each hash's two bits within its word, from its low twelve bits."""
    low = np.uint64(63)
    return (np.left_shift(np.uint64(1), hashes & low)
            | np.left_shift(np.uint64(1), (hashes >> np.uint64(6)) & low))


def _filter_add(words: np.ndarray, shift: int, sorted_hashes: np.ndarray) -> None:
    """Set each hash's bits in its word, chosen by the top bits (in order for sorted
    input); the bits of hashes sharing a word are OR-ed in one reduceat."""
    if not len(sorted_hashes):
        return
    index = sorted_hashes >> np.uint64(shift)
    starts = np.flatnonzero(np.diff(index, prepend=index[0] + np.uint64(1)))
    words[index[starts]] |= np.bitwise_or.reduceat(_filter_bits(sorted_hashes), starts)


def event_hash(event_id: str) -> int:
    return _hash64(event_id.encode())


class _Bucket:
    """One event-time bucket: hashes still in the Deduper's set, and a frozen sorted array
    with its filter."""

    __slots__ = ("filter", "filter_shift", "frozen", "recent")

    def __init__(self) -> None:
        self.recent: list[int] = []
        self.frozen: np.ndarray = _EMPTY
        self.filter: np.ndarray = _EMPTY
        self.filter_shift = 64

    def maybe_frozen(self, probe: np.ndarray, bits: np.ndarray | None = None) -> np.ndarray:
        """Positions in ``probe`` that may be in the frozen array (the rest are not);
        ``bits``: the probe's ``_filter_bits``, when the caller has them already."""
        if bits is None:
            bits = _filter_bits(probe)
        return np.flatnonzero((self.filter[probe >> np.uint64(self.filter_shift)] & bits)
                              == bits)

    def freeze(self, fresh: np.ndarray) -> None:
        """Add sorted hashes that are not frozen yet."""
        if not len(self.frozen):
            self.frozen = fresh
            self.filter, self.filter_shift = _filter_for(fresh)
            return
        # Two sorted runs without common values: a stable sort merges them in O(n),
        # where union1d sorted everything again at every freeze.
        merged = np.concatenate((self.frozen, fresh))
        merged.sort(kind="stable")
        self.frozen = merged
        if 64 * len(self.filter) < _MIN_FILTER_BITS * len(merged):
            self.filter, self.filter_shift = _filter_for(merged)
        else:
            _filter_add(self.filter, self.filter_shift, fresh)

    def __len__(self) -> int:
        return len(self.recent) + len(self.frozen)


class Deduper:
    """Seen-set of one input partition of one topic.

    Unfrozen hashes of every bucket share one set, so a lookup is one probe whatever
    the number of live buckets; each bucket lists its own for freezing and eviction.
    """

    __slots__ = ("_buckets", "_expired", "_first_live", "_freeze_at", "_frozen_buckets",
                 "_horizon_ms", "_new", "_recent", "bucket_ms")

    def __init__(self, horizon_ms: int, freeze_at: int = 100_000) -> None:
        self._horizon_ms = horizon_ms
        self.bucket_ms = max(1, horizon_ms // 5)
        self._freeze_at = freeze_at
        self._buckets: dict[int, _Bucket] = {}
        self._recent: set[int] = set()
        self._frozen_buckets: list[_Bucket] = []
        # Hashes added since the last flush, per bucket, to append to Redis.
        self._new: dict[int, list[int]] = {}
        # Buckets dropped since the last flush, to delete in Redis.
        self._expired: list[int] = []
        self._first_live = 0

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    @property
    def memory_bytes(self) -> int:
        """Approximate: 8 bytes per frozen hash, ~80 per hash still in the set."""
        return sum(bucket.frozen.nbytes + bucket.filter.nbytes
                   for bucket in self._buckets.values()) + 80 * len(self._recent)

    def frozen_hits(self, digests: Sequence[int]) -> np.ndarray | None:
        """For a batch: which digests are in a frozen array (None: nothing is frozen)."""
        if not self._frozen_buckets or not digests:
            return None
        probe = np.fromiter(digests, dtype=np.uint64, count=len(digests))
        hits = np.zeros(len(digests), dtype=bool)
        bits = _filter_bits(probe)  # the same in every bucket's filter
        for bucket in self._frozen_buckets:
            candidates = bucket.maybe_frozen(probe, bits)
            if not len(candidates):
                continue
            frozen = bucket.frozen
            maybe = probe[candidates]
            index = np.searchsorted(frozen, maybe)
            np.minimum(index, len(frozen) - 1, out=index)
            hits[candidates] |= frozen[index] == maybe
        return hits

    def add_digest(self, digest: int, occurred_at: int) -> bool:
        """Remember the event; False when it was already seen (a duplicate)."""
        if digest in self._recent or (self._frozen_buckets and self._frozen_contains(digest)):
            return False
        # _remember inlined: this is the single-event record's path (5 % of its time).
        index = occurred_at // self.bucket_ms
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket()
        self._recent.add(digest)
        bucket.recent.append(digest)
        pending = self._new.get(index)
        if pending is None:
            pending = self._new[index] = []
        pending.append(digest)
        return True

    def add_batch(self, digests: Sequence[int], times: Sequence[int]) -> list[bool]:
        """``add_digest`` for a record's events, in order: True where an event is new.

        This is per event on the hot path, so it is done with comprehensions and C-level
        set and list operations rather than one Python loop with several steps.
        """
        if not digests:
            return []
        frozen = self.frozen_hits(digests)
        recent = self._recent
        if frozen is None:
            fresh = [digest not in recent for digest in digests]
        else:
            fresh = [not hit and digest not in recent
                     for digest, hit in zip(digests, frozen.tolist(), strict=True)]
        if len(set(digests)) != len(digests):
            # The same id twice in one record (a producer's retry): only the first is new.
            first = {digest: position for position, digest in reversed(list(enumerate(digests)))}
            fresh = [is_new and first[digest] == position
                     for position, (digest, is_new) in enumerate(zip(digests, fresh, strict=True))]
        new = list(compress(digests, fresh))
        if not new:
            return fresh
        recent.update(new)
        bucket_ms = self.bucket_ms
        index = min(times) // bucket_ms
        if max(times) // bucket_ms == index:
            self._remember(index, new)
        else:  # the record spans buckets: group its new hashes per bucket
            by_bucket: dict[int, list[int]] = {}
            for digest, occurred_at in zip(new, compress(times, fresh), strict=True):
                by_bucket.setdefault(occurred_at // bucket_ms, []).append(digest)
            for index, hashes in by_bucket.items():
                self._remember(index, hashes)
        return fresh

    def _remember(self, index: int, hashes: list[int]) -> None:
        """File new hashes (already in the set) under their bucket, for eviction and Redis."""
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket()
        bucket.recent.extend(hashes)
        pending = self._new.get(index)
        if pending is None:
            self._new[index] = hashes.copy()
        else:
            pending.extend(hashes)

    def add(self, event_id: str, occurred_at: int) -> bool:
        return self.add_digest(_hash64(event_id.encode()), occurred_at)

    def _frozen_contains(self, digest: int) -> bool:
        probe = np.uint64(digest)
        bits = (1 << (digest & 63)) | (1 << ((digest >> 6) & 63))
        for bucket in self._frozen_buckets:
            if int(bucket.filter[digest >> bucket.filter_shift]) & bits != bits:
                continue
            frozen = bucket.frozen
            index = int(np.searchsorted(frozen, probe))
            if index < len(frozen) and frozen[index] == probe:
                return True
        return False

    def compact(self) -> None:
        """Move large buckets' hashes into sorted arrays; call between records, never inside
        a batch (a batch's ``frozen_hits`` must stay valid while it is processed)."""
        if len(self._recent) < self._freeze_at:
            return
        for bucket in self._buckets.values():
            if len(bucket.recent) >= self._freeze_at:
                self._freeze(bucket)

    def _freeze(self, bucket: _Bucket) -> None:
        fresh = np.fromiter(bucket.recent, dtype=np.uint64, count=len(bucket.recent))
        fresh.sort()
        if not len(bucket.frozen):
            self._frozen_buckets.append(bucket)
        bucket.freeze(fresh)
        self._forget_recent(bucket)

    def _forget_recent(self, bucket: _Bucket) -> None:
        """Take a bucket's hashes out of the shared set (the bucket froze or expired).

        When they are most of the set, the set is rebuilt from the other buckets'
        hashes instead: one insert per hash kept is far cheaper than one removal, a
        cache miss each, per hash dropped (2.4 % of the worker at 200k events/s).
        """
        leaving, bucket.recent = bucket.recent, []
        if 2 * len(leaving) < len(self._recent):
            self._recent.difference_update(leaving)
            return
        kept: set[int] = set()
        for other in self._buckets.values():
            kept.update(other.recent)
        self._recent = kept

    def load(self, bucket_index: int, packed: bytes) -> None:
        hashes = array("Q")
        hashes.frombytes(packed[: len(packed) - len(packed) % 8])
        bucket = self._buckets.setdefault(bucket_index, _Bucket())
        fresh = [digest for digest in hashes if digest not in self._recent]
        self._recent.update(fresh)
        bucket.recent.extend(fresh)
        if len(bucket.recent) >= self._freeze_at:
            self._freeze(bucket)

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
        expired = [index for index in self._buckets if index < first_live]
        for index in expired:
            bucket = self._buckets.pop(index)
            self._forget_recent(bucket)
            if bucket in self._frozen_buckets:
                self._frozen_buckets.remove(bucket)
        self._expired.extend(expired)

    def evict(self, watermark: int) -> list[int]:
        """Advance to the watermark; return the buckets dropped since the last call."""
        self.advance(watermark)
        expired, self._expired = self._expired, []
        return expired

    def take_new(self) -> dict[int, bytes]:
        """Hashes added since the last call, packed per bucket for Redis APPEND."""
        packed = {index: array("Q", hashes).tobytes() for index, hashes in self._new.items()}
        self._new = {}
        return packed
