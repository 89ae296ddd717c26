"""A catalog write lost while its partition's flush survived (Redis Cluster failover).

On a Redis Cluster the catalog entry ``P:cat:{track}`` has a slot of its own, not the
partition's ``{P:N}``: a failover of the catalog's shard to a replica that lacked the
write loses it while the flush with the offsets past the TrackCreated survives on
another shard (docs/RELIABILITY.md, known limits). The TrackCreated is never read
again, so after a restart the track's later uses wait in ``pending`` and are counted
for ``_unattributed``. Expected to fail until the flush keeps a partition-local copy of
its catalog writes and the worker repairs the catalog from it (plan in the
``followups`` report); strict, so the fix turns it into a failure to remove the mark.

Real Redis and real PipelineWorkers without Kafka (records handed to ``handle`` as the
fetch loop would); the failover's loss is modelled by deleting the catalog key, which is
what the promoted replica holds.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import orjson
import pytest
import redis.asyncio as aioredis

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.worker import PipelineWorker
from streamer.state.keys import KeyLayout
from streamer.state.store import RedisStore, connect
from streamer.verify.redis_counters import delete_prefixed_keys, read_counters
from tests.support.pipeline import right, track_event, use_event

TRACK = "track-catalog-lost"
HOLDER = "label-catalog-lost"


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


def _worker(redis_url: str, settings: Settings) -> PipelineWorker:
    return PipelineWorker(settings, RedisStore(connect(redis_url), KeyLayout(settings.key_prefix)),
                          Metrics())


async def _assign(worker: PipelineWorker, settings: Settings) -> None:
    await worker.on_assigned([TP(settings.uses_topic, 0), TP(settings.tracks_topic, 0)])


def _holder_uses(counters: dict[tuple[object, ...], int], holder: str) -> int:
    return sum(value for key, value in counters.items()
               if key[0] == "holder" and key[1] == "1d" and key[3] == holder
               and key[4] == "master" and key[6] == "uses")


async def test_uses_after_a_restart_keep_their_holder_when_the_catalog_write_was_lost(
        redis_url: str) -> None:
    settings = Settings(key_prefix=f"test:catalog-lost-{uuid.uuid4().hex[:8]}",
                        allowed_lateness_ms=120_000)
    uses, tracks = settings.uses_topic, settings.tracks_topic
    start = (int(time.time() * 1000) // 60_000 - 30) * 60_000  # half an hour ago

    def use(offset: int, at: int, track: str = TRACK) -> bytes:
        return orjson.dumps(use_event(track, "play", at, event_id=f"catalog-lost-{offset}"))

    first = _worker(redis_url, settings)
    await _assign(first, settings)
    await first.handle(tracks, 0, 0, orjson.dumps(track_event(
        TRACK, start, rights=[right(HOLDER, "master", "1")])))
    await first.handle(uses, 0, 0, use(0, start + 1_000))
    await first.flush_all()
    await first.store.close()

    client = aioredis.from_url(redis_url)
    try:
        # The failover: the catalog's shard lost the entry, the partition's kept the flush.
        assert await client.delete(KeyLayout(settings.key_prefix).catalog(TRACK)) == 1

        restarted = _worker(redis_url, settings)  # nothing in its cache
        await _assign(restarted, settings)
        assert restarted.states[0].next_offset == {"u": 1, "t": 1}  # not read again
        for offset in (1, 2, 3):
            await restarted.handle(uses, 0, offset, use(offset, start + offset * 1_000))
        # Event time moves past the uses' window plus the allowed lateness, so uses of a
        # track whose catalog entry Redis does not have give up waiting.
        later = start + 60_000 + settings.allowed_lateness_ms + 60_000
        await restarted.handle(uses, 0, 4, use(4, later, track="track-catalog-clock"))
        await restarted.flush_all()
        await restarted.flush_all()
        await restarted.store.close()

        counters = await read_counters(client, settings.key_prefix)
        assert _holder_uses(counters, "_unattributed") == 0
        assert _holder_uses(counters, HOLDER) == 4
    finally:
        await delete_prefixed_keys(client, settings.key_prefix)
        await client.aclose()
