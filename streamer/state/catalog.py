"""A bounded in-process cache of track attribution plans in front of the Redis catalog.

The catalog itself lives in Redis (months of tracks); the worker keeps the plans of
the tracks it saw recently, so its memory does not grow with the catalog. It holds
plans rather than the metadata: a plan is what every flush needs.

The bound is memory, not a count (``STREAMER_CATALOG_CACHE_MB``): a plan's size varies
with its holders and report names, and what an operator can give the cache is bytes.
Each entry is charged its key, its plan (the tuple and what only it references, as
``plan_bytes`` says; objects plans share are charged to nobody) and the dict slot.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Plan = tuple[Any, ...]
"""A track's attribution plan; pipeline/attribution.py builds it and documents its layout."""

_getsizeof = sys.getsizeof

SLOT_BYTES = 48
"""A dict entry's share of the table (hash, key and value pointers, the index, and the
free room a dict keeps), measured with 1M entries (docs/BENCHMARKS.md)."""


class CatalogCache:
    __slots__ = ("_bytes", "_entries", "_limit", "_plan_bytes")

    def __init__(self, max_bytes: int,
                 plan_bytes: Callable[[Plan], int] = sys.getsizeof) -> None:
        self._entries: dict[str, Plan] = {}
        self._limit = max(1, max_bytes)
        self._plan_bytes = plan_bytes
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._entries

    @property
    def bytes(self) -> int:
        """What the entries are charged (at most the limit, once an eviction ran)."""
        return self._bytes

    def get(self, track_id: str) -> Plan | None:
        return self._entries.get(track_id)

    def _cost(self, track_id: str, plan: Plan) -> int:
        # Recomputed on eviction rather than stored: a stored size cost more than itself.
        return _getsizeof(track_id) + self._plan_bytes(plan) + SLOT_BYTES

    def put(self, track_id: str, plan: Plan) -> None:
        entries = self._entries
        if track_id in entries:  # rare (a re-release): most puts are of a new track
            self._bytes -= self._cost(track_id, entries.pop(track_id))
        entries[track_id] = plan
        self._bytes += _getsizeof(track_id) + self._plan_bytes(plan) + SLOT_BYTES  # _cost
        if self._bytes > self._limit:
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest entries (dicts keep insertion order; a put moves a track to
        the end) until a quarter of the limit is free, in one go."""
        entries = self._entries
        target = self._limit * 3 // 4
        stale: list[str] = []
        freed = 0
        for track_id, plan in entries.items():
            if self._bytes - freed <= target or len(stale) == len(entries) - 1:
                break
            stale.append(track_id)
            freed += self._cost(track_id, plan)
        for track_id in stale:
            del entries[track_id]
        self._bytes -= freed

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
