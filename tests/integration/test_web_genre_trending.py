"""Trending per genre is exact: Redis' per-genre sorted sets, ``/v1/trending?genre=`` and
the genre AI-share series against creates counted here, event by event.

A track ranks in the genre its uses are attributed to: uses that waited for their
TrackCreated rank once it arrives; a replacement that moves a track to another genre
leaves its earlier creates where they were; a track that never gets metadata ranks in
no genre.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from typing import Any, cast

import pytest
from support.pipeline import MINUTE, WINDOWS, Pipeline, past_hour_start, track_event, use_event

from streamer.cli import main as cli_main

AI = ("ai_assisted", "ai_generated")
GENRES = ("lofi", "hyperpop", "ambient")


class GenreTruth:
    """Creates per (window, start, genre, track), by the attribution rules, from events."""

    def __init__(self) -> None:
        self.meta: dict[str, tuple[str, str]] = {}
        self.waiting: defaultdict[str, list[int]] = defaultdict(list)
        self.creates: Counter[tuple[str, int, str, str]] = Counter()

    def track(self, event: dict[str, Any]) -> None:
        track_id = event["track_id"]
        self.meta[track_id] = (event["genre"], event["ai_origin"])
        for at in self.waiting.pop(track_id, []):
            self._count(track_id, at)

    def use(self, event: dict[str, Any]) -> None:
        if event["use"] != "create":
            return
        if event["track_id"] in self.meta:
            self._count(event["track_id"], event["occurred_at"])
        else:
            self.waiting[event["track_id"]].append(event["occurred_at"])

    def _count(self, track_id: str, at: int) -> None:
        genre = self.meta[track_id][0]
        for name, size in WINDOWS:
            self.creates[(name, at - at % size, genre, track_id)] += 1

    def ranked(self, window: str, start: int, genre: str) -> dict[str, int]:
        return {t: n for (w, s, g, t), n in self.creates.items()
                if (w, s, g) == (window, start, genre)}


async def send(pipe: Pipeline, truth: GenreTruth, tracks: list[dict[str, Any]],
               uses: list[dict[str, Any]]) -> None:
    async with pipe.producer(batch_events=50, linger_ms=10) as producer:
        for event in tracks:
            await producer.send_track(event)
            truth.track(event)
        for event in uses:
            await producer.send_use(event)
            truth.use(event)
    await pipe.drained()


async def genre_sets(pipe: Pipeline, window: str, start: int, genre: str) -> dict[str, int]:
    """Read as documented (ARCHITECTURE: ``{P:N}:zg:W:S:<genre>``), over every shard."""
    client = await pipe.redis()
    try:
        total: Counter[str] = Counter()
        for partition in range(pipe.partitions):
            key = f"{{{pipe.key_prefix}:{partition}}}:zg:{window}:{start}:{genre}"
            # redis-py types ZRANGE's reply as every shape it can take; with scores it is:
            rows = cast(list[tuple[bytes, float]],
                        await client.zrange(key, 0, -1, withscores=True))
            for member, score in rows:
                total[member.decode()] += int(score)
        return dict(total)
    finally:
        await client.aclose()


async def test_trending_per_genre_is_exact(make_pipeline: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pipe: Pipeline = await make_pipeline()
    worker = await pipe.start_worker()
    truth = GenreTruth()
    rng = random.Random(19)
    hour = past_hour_start(15 * MINUTE)

    def uses(track_ids: list[str], count: int, first: int) -> list[dict[str, Any]]:
        times = sorted(first + rng.randrange(3 * MINUTE) for _ in range(count))
        return [use_event(rng.choice(track_ids), rng.choice(("create", "create", "play")), at)
                for at in times]

    known = [track_event("g-lo-1", hour, genre="lofi", ai_origin="human"),
             track_event("g-lo-2", hour, genre="lofi", ai_origin="ai_generated"),
             track_event("g-hp-1", hour, genre="hyperpop", ai_origin="ai_generated"),
             track_event("g-mv-1", hour, genre="lofi", ai_origin="human")]
    # Phase 1: known tracks, plus a track whose metadata comes later and one never.
    await send(pipe, truth, known,
               uses(["g-lo-1", "g-lo-2", "g-hp-1", "g-mv-1", "g-late", "g-never"], 400, hour))
    # Phase 2: the late track's metadata arrives; the moved track changes genre.
    await send(pipe, truth, [
        track_event("g-late", hour, genre="ambient", ai_origin="ai_assisted"),
        track_event("g-mv-1", hour, genre="hyperpop", ai_origin="ai_assisted")], [])
    # Phase 3: more uses of everyone, later in the hour.
    await send(pipe, truth, [], uses(["g-lo-1", "g-lo-2", "g-hp-1", "g-mv-1", "g-late",
                                      "g-never"], 400, hour + 3 * MINUTE))

    assert truth.ranked("1h", hour, "lofi")["g-mv-1"] > 0
    assert truth.ranked("1h", hour, "hyperpop")["g-mv-1"] > 0
    assert truth.ranked("1h", hour, "ambient")["g-late"] > 0
    starts = sorted({(w, s) for w, s, _, _ in truth.creates})
    for window, start in starts:
        for genre in GENRES:
            expected = truth.ranked(window, start, genre)
            assert await genre_sets(pipe, window, start, genre) == expected, (window, genre)
            for limit in (2, 100):
                status, body = await worker.get("/v1/trending", {
                    "window": window, "at": start, "genre": genre, "limit": limit})
                assert status == 200, body
                top = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
                assert [(i["track_id"], i["creates"]) for i in body["items"]] == top
                assert body["genre"] == genre
                assert {i["genre"] for i in body["items"]} <= {genre, "hyperpop"}  # g-mv-1 moved
                origins = {t: truth.meta[t][1] for t, _ in top}
                ai = sum(n for t, n in top if origins[t] in AI)
                total = sum(n for _, n in top)
                assert body["ai_share"] == pytest.approx(ai / total if total else 0.0)
    # A track that never got metadata ranks in no genre, but in the global trending.
    status, body = await worker.get("/v1/trending", {"window": "1d", "at": hour, "limit": 100})
    assert "g-never" in {i["track_id"] for i in body["items"]}
    for genre in GENRES:
        assert "g-never" not in await genre_sets(pipe, "1d", hour - hour % 86_400_000, genre)

    # The genre's AI share series ranks the same sets.
    for genre in GENRES:
        status, body = await worker.get(f"/v1/genres/{genre}/ai-share", {
            "window": "1m", "from": hour, "to": hour + 5 * MINUTE, "top": 2})
        assert status == 200, body
        for point in body["series"]:
            ranked = truth.ranked("1m", point["start_ms"], genre)
            top = sorted(ranked.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
            total = sum(n for _, n in top)
            ai = sum(n for t, n in top if truth.meta[t][1] in AI)
            assert point["trending_ai_share"] == pytest.approx(ai / total if total else 0.0)

    # streamer query trending --genre prints the same answer.
    code = cli_main(["query", "trending", "--genre", "hyperpop", "--window", "1h", "--at",
                     str(hour), "--url", worker.base_url])
    assert code == 0
    status, body = await worker.get("/v1/trending", {"window": "1h", "at": hour,
                                                     "genre": "hyperpop"})
    assert json.loads(capsys.readouterr().out) == body

    # A bad genre is refused by name.
    status, body = await worker.get("/v1/trending", {"genre": "Lo Fi"})
    assert status == 400 and "genre" in body["error"]
