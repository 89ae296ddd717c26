"""A bounded in-process cache of track metadata in front of the Redis catalog.

The catalog itself lives in Redis (months of tracks); the worker keeps only the
tracks it saw recently, so its memory does not grow with the catalog.
"""

from __future__ import annotations

from streamer.events.validation import TrackMeta


class CatalogCache:
    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int) -> None:
        self._entries: dict[str, TrackMeta] = {}
        self._limit = max(1, limit)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._entries

    def get(self, track_id: str) -> TrackMeta | None:
        return self._entries.get(track_id)

    def put(self, track_id: str, meta: TrackMeta) -> None:
        entries = self._entries
        entries.pop(track_id, None)
        entries[track_id] = meta
        if len(entries) > self._limit:
            # Dicts keep insertion order: drop the oldest quarter in one go.
            for stale in list(entries)[: max(1, self._limit // 4)]:
                del entries[stale]

    def clear(self) -> None:
        self._entries.clear()
