"""A day's plain ``1d`` counters in Redis, per partition, for ``streamer ledger verify``
(``audit.RedisDay``): what the ledger's rows of that day must add up to while Redis
still holds the day."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date

from streamer.config import load_settings
from streamer.ledger.audit import RedisDay
from streamer.ledger.reader import day_start_ms
from streamer.state.keys import USES_MEASURE, KeyLayout
from streamer.state.store import Redis, connect

DAY_WINDOW = "1d"


async def read_redis_day(client: Redis, layout: KeyLayout, partitions: int,
                         day: date) -> dict[int, RedisDay]:
    """Partition -> its counters of ``day``; partitions with no counter of the day (Redis
    no longer holds it, or the day was idle) are left out."""
    start = day_start_ms(day)
    out: dict[int, RedisDay] = {}
    for partition in range(partitions):
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(layout.track_counts(partition, DAY_WINDOW, start))
            pipe.hgetall(layout.holder_counts(partition, DAY_WINDOW, start))
            pipe.hgetall(layout.genre_counts(partition, DAY_WINDOW, start))
            raw_tracks, raw_holders, raw_genres = await pipe.execute()
        if not (raw_tracks or raw_holders or raw_genres):
            continue
        tracks: dict[tuple[str, str], int] = {}
        for field, value in raw_tracks.items():
            use, track_id = field.decode().split("|", 1)
            tracks[(track_id, use)] = int(value)
        holders: dict[tuple[str, str, str], tuple[int, int]] = {}
        for field, value in raw_holders.items():
            right, use, measure, holder = field.decode().split("|", 3)
            uses, weight = holders.get((holder, right, use), (0, 0))
            holders[(holder, right, use)] = ((uses + int(value), weight)
                                             if measure == USES_MEASURE
                                             else (uses, weight + int(value)))
        genres: dict[tuple[str, str, str], int] = {}
        for field, value in raw_genres.items():
            origin, use, genre = field.decode().split("|", 2)
            genres[(genre, origin, use)] = int(value)
        out[partition] = RedisDay(tracks, holders, genres)
    return out


def redis_days_from_settings(day: date) -> Mapping[int, RedisDay]:
    """``ledger.cli.RedisDays`` over the configured Redis (STREAMER_REDIS_URL,
    STREAMER_KEY_PREFIX, STREAMER_PARTITIONS)."""
    settings = load_settings()

    async def read() -> dict[int, RedisDay]:
        client = connect(settings.redis_url)
        try:
            return await asyncio.wait_for(
                read_redis_day(client, KeyLayout(settings.key_prefix), settings.partitions,
                               day), settings.connect_timeout_s * 6)
        finally:
            await client.aclose()

    return asyncio.run(read())
