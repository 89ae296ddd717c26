"""Reading the counters back: every query merges the per-partition shards.

Counters are sharded by input partition (see state/keys.py), so a query reads the
same field from every partition's key in one pipeline and adds them up. Any worker
can answer any query because everything comes from Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamer.events.validation import AI_ORIGINS, RIGHTS, USES, TrackMeta
from streamer.state.keys import (
    HOLDER_MEASURES,
    KeyLayout,
    genre_field,
    holder_field,
    track_field,
)
from streamer.state.store import Redis
from streamer.windows import window_bounds

UNKNOWN_GENRE = "_unknown"
UNKNOWN_ORIGIN = "unknown"


@dataclass(frozen=True, slots=True)
class WindowRef:
    name: str
    start_ms: int
    end_ms: int

    @classmethod
    def containing(cls, name: str, size_ms: int, at_ms: int) -> WindowRef:
        start, end = window_bounds(at_ms, size_ms)
        return cls(name, start, end)

    def as_dict(self) -> dict[str, Any]:
        return {"window": self.name, "start_ms": self.start_ms, "end_ms": self.end_ms}


class UsageQueries:
    def __init__(self, client: Redis, layout: KeyLayout, partitions: int) -> None:
        self.client = client
        self.layout = layout
        self.partitions = partitions

    async def _sum_fields(self, keys: list[str], fields: list[str]) -> list[int]:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, fields)
            rows = await pipe.execute()
        totals = [0] * len(fields)
        for row in rows:
            for index, value in enumerate(row):
                if value is not None:
                    totals[index] += int(value)
        return totals

    async def track_usage(self, track_id: str, window: WindowRef) -> dict[str, Any]:
        keys = [self.layout.track_counts(p, window.name, window.start_ms)
                for p in range(self.partitions)]
        totals = await self._sum_fields(keys, [track_field(use, track_id) for use in USES])
        return {"track_id": track_id, **window.as_dict(), "uses": dict(zip(USES, totals,
                                                                           strict=True))}

    async def holder_usage(self, holder_id: str, window: WindowRef) -> dict[str, Any]:
        keys = [self.layout.holder_counts(p, window.name, window.start_ms)
                for p in range(self.partitions)]
        fields = [holder_field(right, use, kind, holder_id)
                  for right in RIGHTS for kind in HOLDER_MEASURES for use in USES]
        totals = iter(await self._sum_fields(keys, fields))
        rights = {
            right: {
                "uses": {use: next(totals) for use in USES},
                "weighted_micro": {use: next(totals) for use in USES},
            }
            for right in RIGHTS
        }
        return {"holder_id": holder_id, **window.as_dict(), "rights": rights}

    async def genre_usage(self, genre: str, window: WindowRef) -> dict[str, Any]:
        keys = [self.layout.genre_counts(p, window.name, window.start_ms)
                for p in range(self.partitions)]
        fields = [genre_field(origin, use, genre) for origin in AI_ORIGINS for use in USES]
        totals = iter(await self._sum_fields(keys, fields))
        by_origin = {origin: {use: next(totals) for use in USES} for origin in AI_ORIGINS}
        return {"genre": genre, **window.as_dict(), "uses_by_origin": by_origin}

    async def trending(self, window: WindowRef, limit: int,
                       genre: str | None = None) -> dict[str, Any]:
        """The top ``limit`` tracks by creates; with ``genre``, of that genre's tracks only
        (its own sorted sets, written by the same flush)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                key = (self.layout.trending(p, window.name, window.start_ms) if genre is None
                       else self.layout.genre_trending(p, window.name, window.start_ms, genre))
                pipe.zrevrange(key, 0, limit - 1, withscores=True)
            shards = await pipe.execute()
        creates: dict[str, int] = {}
        for shard in shards:
            for member, score in shard:
                track_id = member.decode()
                creates[track_id] = creates.get(track_id, 0) + int(score)
        top = sorted(creates.items(), key=lambda item: (-item[1], item[0]))[:limit]
        metas = await self._catalog([track_id for track_id, _ in top])
        items = []
        ai_creates = total_creates = 0
        for track_id, count in top:
            meta = metas.get(track_id)
            origin = meta.ai_origin if meta else UNKNOWN_ORIGIN
            items.append({"track_id": track_id, "creates": count,
                          "genre": meta.genre if meta else UNKNOWN_GENRE, "ai_origin": origin})
            total_creates += count
            if origin in ("ai_assisted", "ai_generated"):
                ai_creates += count
        share = ai_creates / total_creates if total_creates else 0.0
        scope = {"genre": genre} if genre is not None else {}
        return {**scope, **window.as_dict(), "items": items, "ai_share": share}

    async def _catalog(self, track_ids: list[str]) -> dict[str, TrackMeta]:
        if not track_ids:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for track_id in track_ids:
                pipe.get(self.layout.catalog(track_id))
            values = await pipe.execute()
        return {t: TrackMeta.from_json(v) for t, v in zip(track_ids, values, strict=True) if v}
