"""A bounded in-process cache of track attribution plans in front of the Redis catalog.

The catalog itself lives in Redis (months of tracks); the worker keeps the plans of
the tracks it saw recently, so its memory does not grow with the catalog. It holds
plans rather than the metadata: a plan is what every flush needs, and at ~330 bytes
per track (key, dict slot and shared field names included) a million tracks take
~330 MB.
"""

from __future__ import annotations

from typing import Any

Plan = tuple[Any, ...]
"""A track's attribution plan; pipeline/attribution.py builds it and documents its layout."""


class CatalogCache:
    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int) -> None:
        self._entries: dict[str, Plan] = {}
        self._limit = max(1, limit)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._entries

    def get(self, track_id: str) -> Plan | None:
        return self._entries.get(track_id)

    def put(self, track_id: str, plan: Plan) -> None:
        entries = self._entries
        entries.pop(track_id, None)
        entries[track_id] = plan
        if len(entries) > self._limit:
            # Dicts keep insertion order: drop the oldest quarter in one go.
            for stale in list(entries)[: max(1, self._limit // 4)]:
                del entries[stale]

    def clear(self) -> None:
        self._entries.clear()
