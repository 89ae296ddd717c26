"""Duplicate detection by 64-bit event-id hashes, bounded by an event-time horizon.

Hashes are grouped in buckets of event time (a fifth of the horizon). A bucket is
dropped, in memory and in Redis, once it ends before ``watermark - horizon``, so the
state holds about ``rate x horizon`` hashes whatever the run time. New hashes are
persisted with the partition's atomic flush, so a restarted worker detects the
duplicates of events it counted before the crash.

Collision odds: with n hashes live in one partition, the chance that any new event
is wrongly taken for a duplicate is about n / 2**64 per event; at 100 million live
hashes that is one false duplicate per ~1.8e11 events.
"""

from __future__ import annotations

from array import array

import xxhash

_hash64 = xxhash.xxh3_64_intdigest


def event_hash(event_id: str) -> int:
    return _hash64(event_id.encode())


class Deduper:
    """Seen-set of one input partition of one topic."""

    __slots__ = ("_buckets", "_expired", "_first_live", "_horizon_ms", "_new", "bucket_ms")

    def __init__(self, horizon_ms: int) -> None:
        self._horizon_ms = horizon_ms
        self.bucket_ms = max(1, horizon_ms // 5)
        self._buckets: dict[int, set[int]] = {}
        # Hashes added since the last flush, per bucket, to append to Redis.
        self._new: dict[int, list[int]] = {}
        # Buckets dropped since the last flush, to delete in Redis.
        self._expired: list[int] = []
        self._first_live = 0

    def __len__(self) -> int:
        return sum(len(hashes) for hashes in self._buckets.values())

    def add(self, event_id: str, occurred_at: int) -> bool:
        """Remember the event; False when it was already seen (a duplicate)."""
        digest = _hash64(event_id.encode())
        for hashes in self._buckets.values():
            if digest in hashes:
                return False
        bucket = occurred_at // self.bucket_ms
        hashes = self._buckets.get(bucket)
        if hashes is None:
            hashes = self._buckets[bucket] = set()
        hashes.add(digest)
        pending = self._new.get(bucket)
        if pending is None:
            pending = self._new[bucket] = []
        pending.append(digest)
        return True

    def load(self, bucket: int, packed: bytes) -> None:
        hashes = array("Q")
        hashes.frombytes(packed[: len(packed) - len(packed) % 8])
        self._buckets.setdefault(bucket, set()).update(hashes)

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
        expired = [bucket for bucket in self._buckets if bucket < first_live]
        for bucket in expired:
            del self._buckets[bucket]
        self._expired.extend(expired)

    def evict(self, watermark: int) -> list[int]:
        """Advance to the watermark; return the buckets dropped since the last call."""
        self.advance(watermark)
        expired, self._expired = self._expired, []
        return expired

    def take_new(self) -> dict[int, bytes]:
        """Hashes added since the last call, packed per bucket for Redis APPEND."""
        packed = {bucket: array("Q", hashes).tobytes() for bucket, hashes in self._new.items()}
        self._new = {}
        return packed
