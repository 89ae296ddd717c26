"""Series over a range of windows: the AI share over time (``/v1/ai-share``).

A series has one point per window of one size whose span meets ``[from, to]``; each
point holds that window's uses per AI origin (the genre counters) and the AI share among
the window's top trending items. Every window of the range is read in one pipeline per
kind of key, so a 500-point series costs a few round trips, not 500 queries.

``from``/``to`` are UTC: a day ``YYYY-MM-DD`` (``to`` includes the whole day, as the
date ranges of the usage routes do), a time ``YYYY-MM-DDTHH:MM[:SS]`` with an optional
``Z``, or epoch milliseconds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamer.events.validation import AI_ORIGINS, USES, TrackMeta
from streamer.state.keys import KeyLayout, genre_field
from streamer.state.store import Redis

MAX_POINTS = 500
DEFAULT_POINTS = 24
AI_ORIGINS_COUNTED = ("ai_assisted", "ai_generated")
"""Origins that count as AI in ``ai_share`` (the same rule as ``/v1/trending``)."""

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z?")
_MAX_EPOCH_MS = 2**53 - 1
_DAY_MS = 86_400_000


class RangeError(ValueError):
    """A bad ``from``/``to``/range; the message names the parameter."""


def parse_instant(name: str, text: str, *, end_of_day: bool) -> int:
    """Epoch ms of ``text``; a bare day is its first millisecond, or with ``end_of_day``
    its last one (so ``to=2026-11-30`` includes all of that day)."""
    text = text.strip()
    if text.isdigit() and len(text) <= 16:
        value = int(text)
        if value > _MAX_EPOCH_MS:
            raise RangeError(f"{name} is out of range: {text[:20]!r}")
        return value
    try:
        if _DAY.fullmatch(text):
            day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
            start = int(day.timestamp() * 1000)
            return start + _DAY_MS - 1 if end_of_day else start
        if _TIME.fullmatch(text):
            fmt = "%Y-%m-%dT%H:%M:%S" if text.rstrip("Z").count(":") == 2 else "%Y-%m-%dT%H:%M"
            moment = dt.datetime.strptime(text.rstrip("Z"), fmt).replace(tzinfo=dt.UTC)
            value = int(moment.timestamp() * 1000)
            if value < 0:
                raise ValueError("before 1970")
            return value
    except ValueError as exc:
        raise RangeError(f"{name} is not a valid UTC date or time: {text[:40]!r} ({exc})"
                         ) from None
    raise RangeError(f"{name} must be YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z or epoch ms, "
                     f"got {text[:40]!r}")


@dataclass(frozen=True, slots=True)
class WindowRange:
    """The windows of one size whose span meets ``[from, to]``, oldest first."""

    name: str
    size_ms: int
    first_start: int
    last_start: int

    @classmethod
    def between(cls, name: str, size_ms: int, from_ms: int, to_ms: int) -> WindowRange:
        if to_ms < from_ms:
            raise RangeError("to is before from")
        first = from_ms - from_ms % size_ms
        last = to_ms - to_ms % size_ms
        points = (last - first) // size_ms + 1
        if points > MAX_POINTS:
            raise RangeError(
                f"from..to covers {points} windows of {name}, at most {MAX_POINTS} points: "
                "narrow the range or use a larger window")
        return cls(name, size_ms, first, last)

    @classmethod
    def ending(cls, name: str, size_ms: int, to_ms: int, points: int = DEFAULT_POINTS
               ) -> WindowRange:
        """The ``points`` windows up to the one containing ``to_ms``."""
        last = to_ms - to_ms % size_ms
        return cls(name, size_ms, max(0, last - (points - 1) * size_ms), last)

    @property
    def starts(self) -> range:
        return range(self.first_start, self.last_start + 1, self.size_ms)

    def as_dict(self) -> dict[str, Any]:
        return {"window": self.name, "from_ms": self.first_start,
                "to_ms": self.last_start + self.size_ms, "points": len(self.starts)}


def ai_share(items: Sequence[tuple[int, str]]) -> float:
    """AI creates over all creates of ``(creates, ai_origin)`` items; 0.0 when empty."""
    total = sum(creates for creates, _ in items)
    ai = sum(creates for creates, origin in items if origin in AI_ORIGINS_COUNTED)
    return ai / total if total else 0.0


def _empty_origins() -> dict[str, dict[str, int]]:
    return {origin: dict.fromkeys(USES, 0) for origin in AI_ORIGINS}


TrendingKey = Callable[[int, str, int], str]
"""``(partition, window, start)`` -> the key of a trending sorted set."""


class SeriesQueries:
    """AI share over time, for one genre or the whole catalog, from Redis."""

    def __init__(self, client: Redis, layout: KeyLayout, partitions: int) -> None:
        self.client = client
        self.layout = layout
        self.partitions = partitions

    async def ai_share(self, genre: str | None, windows: WindowRange, top: int,
                       trending_key: TrendingKey | None) -> dict[str, Any]:
        """The series body. ``trending_key`` names the trending sets to rank (the global
        ones for the catalog); None: no trending set exists for this series, so
        ``trending_ai_share`` is null at every point."""
        starts = list(windows.starts)
        if genre is None:
            origins = await self._catalog_origins(windows.name, starts)
        else:
            origins = await self._genre_origins(genre, windows.name, starts)
        shares: list[float | None]
        if trending_key is None:
            shares = [None] * len(starts)
        else:
            shares = list(await self._trending_shares(trending_key, windows.name, starts, top))
        points = [{"start_ms": start, "uses_by_origin": by_origin, "trending_ai_share": share}
                  for start, by_origin, share in zip(starts, origins, shares, strict=True)]
        scope: dict[str, Any] = {"genre": genre} if genre is not None else {}
        return {**scope, **windows.as_dict(), "top": top, "series": points}

    async def _genre_origins(self, genre: str, window: str, starts: list[int]
                             ) -> list[dict[str, dict[str, int]]]:
        fields = [genre_field(origin, use, genre) for origin in AI_ORIGINS for use in USES]
        async with self.client.pipeline(transaction=False) as pipe:
            for start in starts:
                for p in range(self.partitions):
                    pipe.hmget(self.layout.genre_counts(p, window, start), fields)
            rows = await pipe.execute()
        series = []
        for index in range(len(starts)):
            totals = [0] * len(fields)
            for row in rows[index * self.partitions:(index + 1) * self.partitions]:
                for slot, value in enumerate(row):
                    if value is not None:
                        totals[slot] += int(value)
            values = iter(totals)
            series.append({origin: {use: next(values) for use in USES} for origin in AI_ORIGINS})
        return series

    async def _catalog_origins(self, window: str, starts: list[int]
                               ) -> list[dict[str, dict[str, int]]]:
        """Every genre's counters added up per origin and use: the uses of tracks with
        metadata (uses still waiting for their TrackCreated have no origin yet)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for start in starts:
                for p in range(self.partitions):
                    pipe.hgetall(self.layout.genre_counts(p, window, start))
            rows = await pipe.execute()
        series = []
        for index in range(len(starts)):
            by_origin = _empty_origins()
            for row in rows[index * self.partitions:(index + 1) * self.partitions]:
                for raw_field, value in row.items():
                    origin, use, _genre = raw_field.decode().split("|", 2)
                    if origin in by_origin and use in by_origin[origin]:
                        by_origin[origin][use] += int(value)
            series.append(by_origin)
        return series

    async def _trending_shares(self, trending_key: TrendingKey, window: str, starts: list[int],
                               top: int) -> list[float]:
        """Per window, the top ``top`` tracks by creates and the AI share among them.

        A track's creates are all in its own partition's set, so the top of the union is
        among the per-partition tops."""
        async with self.client.pipeline(transaction=False) as pipe:
            for start in starts:
                for p in range(self.partitions):
                    pipe.zrevrange(trending_key(p, window, start), 0, top - 1, withscores=True)
            shards = await pipe.execute()
        tops: list[list[tuple[str, int]]] = []
        for index in range(len(starts)):
            creates: dict[str, int] = {}
            for shard in shards[index * self.partitions:(index + 1) * self.partitions]:
                for member, score in shard:
                    track_id = member.decode()
                    creates[track_id] = creates.get(track_id, 0) + int(score)
            tops.append(sorted(creates.items(), key=lambda item: (-item[1], item[0]))[:top])
        metas = await self._catalog({track_id for ranked in tops for track_id, _ in ranked})
        return [ai_share([(count, metas[t].ai_origin if t in metas else "unknown")
                          for t, count in ranked]) for ranked in tops]

    async def _catalog(self, track_ids: set[str]) -> dict[str, TrackMeta]:
        ordered = sorted(track_ids)
        if not ordered:
            return {}
        # One GET per track in a pipeline: catalog keys are in different cluster slots.
        async with self.client.pipeline(transaction=False) as pipe:
            for track_id in ordered:
                pipe.get(self.layout.catalog(track_id))
            values: list[bytes | None] = await pipe.execute()
        return {t: TrackMeta.from_json(v) for t, v in zip(ordered, values, strict=True) if v}
