"""Ranges and territories end to end: events through Kafka and a real worker, whose
flush writes the plain and territory counters, answered over HTTP and compared with
the events sent."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from support.pipeline import Pipeline, now_ms, right, track_event, use_event

COUNTRIES = ("DE", "US", "BR", "JP", "IS")


async def test_a_day_by_territory_through_the_pipeline(  # type: ignore[no-untyped-def]
        make_pipeline, tmp_path: Path) -> None:
    pipeline: Pipeline = await make_pipeline(partitions=2)
    worker = pipeline.worker("worker", STREAMER_LEDGER_URL=str(tmp_path / "ledger")).start()
    await worker.wait_healthy(120)
    at = now_ms() - 120_000
    if at // 86_400_000 != (at + 60_000) // 86_400_000:  # just after midnight UTC
        at += 90_000
    tracks = {f"T-terr-{n}": [right("H-terr", "master", "0.5"),
                              right("H-pub", "publishing", "1")] for n in range(6)}
    truth: Counter[tuple[str, str, str]] = Counter()  # track, country, use
    async with pipeline.producer() as producer:
        for track_id, rights in tracks.items():
            if track_id != "T-terr-5":  # one track's uses wait for metadata (pending)
                await producer.send_track(track_event(track_id, at, genre="lofi",
                                                      rights=rights))
        await producer.flush()
        for n in range(300):
            track_id = f"T-terr-{n % 6}"
            country = COUNTRIES[(n * 7) % len(COUNTRIES) if n % 3 else 0]
            use = "create" if n % 5 == 0 else "play"
            await producer.send_use(use_event(track_id, use, at + n, country=country))
            truth[(track_id, country, use)] += 1
    await pipeline.drained()
    day = time.strftime("%Y-%m-%d", time.gmtime(at / 1000))

    async def get(path: str, query: str) -> Any:
        async with (aiohttp.ClientSession() as session,
                    session.get(f"{worker.base_url}{path}?{query}") as response):
            assert response.status == 200, await response.text()
            return await response.json()

    for query in (f"from={day}&to={day}&by=territory", f"window=1d&at={at}&by=territory"):
        body = await get("/v1/tracks/T-terr-1/usage", query)
        want = {c: {u: truth[("T-terr-1", c, u)] for u in ("create", "play")}
                for c in COUNTRIES if truth[("T-terr-1", c, "create")]
                + truth[("T-terr-1", c, "play")]}
        assert body["territories"] == want
        plain = await get("/v1/tracks/T-terr-1/usage", query.rsplit("&by=", 1)[0])
        assert body["uses"] == plain["uses"]
        holder = await get("/v1/holders/H-terr/usage", query)
        for country, counts in holder["territories"].items():
            uses = {u: sum(n for (t, c, uu), n in truth.items()
                           if c == country and uu == u and t != "T-terr-5")
                    for u in ("create", "play")}
            assert counts["master"]["uses"] == uses
            assert counts["master"]["weighted_micro"] == {u: n * 500_000
                                                          for u, n in uses.items()}
        plain_holder = await get("/v1/holders/H-terr/usage", query.rsplit("&by=", 1)[0])
        assert holder["rights"] == plain_holder["rights"]
        for use in ("create", "play"):  # the totals are the sum over territories
            assert holder["rights"]["master"]["uses"][use] == sum(
                counts["master"]["uses"][use] for counts in holder["territories"].values())
        if query.startswith("from="):  # today: open, served from Redis
            assert (body["from"], body["to"], body["closed_days"]) == (day, day, 0)
        genre = await get("/v1/genres/lofi/usage", query)
        assert genre["uses_by_origin"] == (await get(
            "/v1/genres/lofi/usage", query.rsplit("&by=", 1)[0]))["uses_by_origin"]
        assert set(genre["territories"]) == set(COUNTRIES)
