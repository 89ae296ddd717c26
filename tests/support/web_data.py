"""Known data for the web page and the AI-share API, and what the API must answer for it.

Tracks of three genres and three AI origins (and one track that never gets metadata)
with uses spread over ``HOURS`` past hours, the AI tracks' share of them growing hour
by hour (the story the page is for). The expected answers are computed here from the
events alone, by plain counting, sharing no code with streamer.api or the pipeline.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from support.pipeline import HOUR, MINUTE, Pipeline, past_hour_start, track_event, use_event

USES = ("create", "play")
ORIGINS = ("human", "ai_assisted", "ai_generated")
AI = ("ai_assisted", "ai_generated")
COUNTRIES = ("DE", "US", "FR", "BR")

# track id -> (genre, ai_origin, weight in the traffic)
TRACKS: dict[str, tuple[str, str, int]] = {
    "lo-h1": ("lofi", "human", 6),
    "lo-g1": ("lofi", "ai_generated", 5),
    "lo-a1": ("lofi", "ai_assisted", 3),
    "hp-g1": ("hyperpop", "ai_generated", 4),
    "hp-h1": ("hyperpop", "human", 2),
    "am-h1": ("ambient", "human", 2),
}
PENDING = "px-1"  # uses, never a TrackCreated: trending only, no genre, no origin
HOLDER = "label-1"  # master 1/2 of lo-h1, all of lo-g1's master
HOURS = 12


@dataclass
class WebData:
    """Events sent, and the windows they fall in."""

    hour: int  # start of the last of the ``HOURS`` hours (at least 15 minutes old)
    uses: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def make(cls, seed: int = 25, count: int = 2400) -> WebData:
        hour = past_hour_start(15 * MINUTE)
        rng = random.Random(seed)
        ids = [*TRACKS, PENDING]
        first = hour - (HOURS - 1) * HOUR
        # The last 10 minutes of the range lie within the last hour, which is in the past.
        span = (HOURS - 1) * HOUR + 10 * MINUTE
        times = sorted(first + rng.randrange(span) for _ in range(count))
        data = cls(hour)
        for at in times:
            growth = 0.3 + 1.7 * (at - first) / span  # AI tracks: from 0.3x to 2x their weight
            weights = [w * (growth if origin != "human" else 1.0)
                       for _, origin, w in TRACKS.values()] + [2]
            track = rng.choices(ids, weights)[0]
            use = "create" if rng.random() < 0.55 else "play"
            data.uses.append(use_event(track, use, at, user_id=f"u{rng.randrange(40)}",
                                       country=rng.choice(COUNTRIES)))
        return data

    @staticmethod
    def track_events(at: int) -> list[dict[str, Any]]:
        events = []
        for track_id, (genre, origin, _) in TRACKS.items():
            rights = [{"holder_id": "label-2", "right": "master", "share": "1"}]
            if track_id == "lo-h1":
                rights = [{"holder_id": HOLDER, "right": "master", "share": "0.5"},
                          {"holder_id": "pub-1", "right": "publishing", "share": "0.25"}]
            elif track_id == "lo-g1":
                rights = [{"holder_id": HOLDER, "right": "master", "share": "1"}]
            events.append(track_event(track_id, at, genre=genre, ai_origin=origin,
                                      rights=rights))
        return events

    async def send(self, pipe: Pipeline) -> None:
        """Metadata first (so uses are attributed at once), then the uses, in time order."""
        async with pipe.producer() as producer:
            for event in self.track_events(self.hour - HOURS * HOUR):
                await producer.send_track(event)
        await pipe.drained()
        async with pipe.producer(batch_events=100, linger_ms=20) as producer:
            for event in self.uses:
                await producer.send_use(event)
        await pipe.drained()

    # -- expected answers ---------------------------------------------------------------

    @property
    def hour_starts(self) -> list[int]:
        return [self.hour - back * HOUR for back in range(HOURS - 1, -1, -1)]

    def _in(self, start: int, size: int) -> list[dict[str, Any]]:
        return [e for e in self.uses if start <= e["occurred_at"] < start + size]

    def uses_by_origin(self, start: int, size: int, genre: str | None
                       ) -> dict[str, dict[str, int]]:
        counts = Counter((TRACKS[e["track_id"]][1], e["use"]) for e in self._in(start, size)
                         if e["track_id"] in TRACKS
                         and (genre is None or TRACKS[e["track_id"]][0] == genre))
        return {origin: {use: counts[(origin, use)] for use in USES} for origin in ORIGINS}

    def creates(self, start: int, size: int, genre: str | None = None) -> Counter[str]:
        return Counter(e["track_id"] for e in self._in(start, size) if e["use"] == "create"
                       and (genre is None or (e["track_id"] in TRACKS
                                              and TRACKS[e["track_id"]][0] == genre)))

    def top(self, start: int, size: int, limit: int, genre: str | None = None
            ) -> list[tuple[str, int]]:
        ranked = sorted(self.creates(start, size, genre).items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:limit]

    def trending_ai_share(self, start: int, size: int, limit: int,
                          genre: str | None = None) -> float:
        ranked = self.top(start, size, limit, genre)
        total = sum(n for _, n in ranked)
        ai = sum(n for t, n in ranked if t in TRACKS and TRACKS[t][1] in AI)
        return ai / total if total else 0.0

    def track_uses(self, track_id: str, start: int, size: int) -> dict[str, int]:
        counts = Counter(e["use"] for e in self._in(start, size) if e["track_id"] == track_id)
        return {use: counts[use] for use in USES}

    def holder_uses(self, start: int, size: int) -> dict[str, int]:
        """``HOLDER``'s master uses (every use of a track it has a share of)."""
        counts = Counter(e["use"] for e in self._in(start, size)
                         if e["track_id"] in ("lo-h1", "lo-g1"))
        return {use: counts[use] for use in USES}

    def holder_weighted_micro(self, start: int, size: int) -> dict[str, int]:
        """``HOLDER``'s master micro-shares: 1/2 of each lo-h1 use, all of each lo-g1 use."""
        micro = {"lo-h1": 500_000, "lo-g1": 1_000_000}
        totals = dict.fromkeys(USES, 0)
        for e in self._in(start, size):
            totals[e["use"]] += micro.get(e["track_id"], 0)
        return totals
