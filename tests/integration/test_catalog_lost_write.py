"""A catalog write lost while its partition's flush survived (Redis Cluster failover).

On a Redis Cluster the catalog entry ``P:cat:{track}`` has a slot of its own, not the
partition's ``{P:N}``: a failover of the catalog's shard to a replica that lacked the
write loses it while the flush with the offsets past the TrackCreated survives on
another shard (docs/RELIABILITY.md). The TrackCreated is never read again, so without a
repair the track's later uses wait in ``pending`` and are counted for ``_unattributed``.
The flush keeps a copy of its catalog writes under the partition's tag
(``{P:N}:cw:<hour>``), and the worker restores the catalog from it on claim and after a
cluster failover (pipeline/catalog_repair.py).

Real Redis and real PipelineWorkers without Kafka (records handed to ``handle`` as the
fetch loop would). On one Redis the failover's loss is modelled by deleting the catalog
key (or putting back the entry a lost replacement overwrote), which is what the promoted
replica holds; on a real cluster with replicas (deploy/local/redis-cluster.sh on ports of
its own) the key is deleted and a replica of its shard takes over (``CLUSTER FAILOVER``),
while the worker runs on.
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


def _restored(worker: PipelineWorker) -> float:
    return worker.metrics.registry.get_sample_value("streamer_catalog_restored_total") or 0.0


async def test_a_lost_replacement_is_restored_on_claim_and_the_copy_expires(
        redis_url: str) -> None:
    """The promoted replica had the track's first entry but not its replacement: the claim
    puts back the replacement (the copy holds the partition's latest flushed write), and
    later uses go to the new holder. The copy expires after its retention."""
    settings = Settings(key_prefix=f"test:catalog-replaced-{uuid.uuid4().hex[:8]}",
                        allowed_lateness_ms=120_000)
    uses, tracks = settings.uses_topic, settings.tracks_topic
    layout = KeyLayout(settings.key_prefix)
    start = (int(time.time() * 1000) // 60_000 - 30) * 60_000
    old_holder, new_holder = "label-before", "label-after"

    first = _worker(redis_url, settings)
    await _assign(first, settings)
    await first.handle(tracks, 0, 0, orjson.dumps(track_event(
        TRACK, start, rights=[right(old_holder, "master", "1")])))
    await first.flush_all()
    client = aioredis.from_url(redis_url)
    try:
        first_entry = await client.get(layout.catalog(TRACK))
        assert first_entry is not None
        await first.handle(tracks, 0, 1, orjson.dumps(track_event(
            TRACK, start + 1_000, rights=[right(new_holder, "master", "1")])))
        await first.flush_all()
        await first.store.close()
        replacement = await client.get(layout.catalog(TRACK))
        assert replacement is not None and new_holder.encode() in replacement

        copies = [key async for key in client.scan_iter(match=layout.tag(0) + ":cw:*")]
        assert len(copies) in (1, 2)  # two if the flushes straddled an hour
        for key in copies:  # bounded: each bucket expires after the retention
            assert 0 < await client.pttl(key) <= settings.catalog_copy_retention_ms

        # The failover: the catalog's shard went back to the first entry.
        await client.set(layout.catalog(TRACK), first_entry)

        restarted = _worker(redis_url, settings)
        await _assign(restarted, settings)
        assert await client.get(layout.catalog(TRACK)) == replacement
        assert _restored(restarted) == 1
        for offset in (0, 1):
            await restarted.handle(uses, 0, offset, orjson.dumps(use_event(
                TRACK, "play", start + 2_000 + offset, event_id=f"replaced-{offset}")))
        await restarted.flush_all()
        await restarted.store.close()

        counters = await read_counters(client, settings.key_prefix)
        assert _holder_uses(counters, new_holder) == 2
        assert _holder_uses(counters, old_holder) == 0

        again = _worker(redis_url, settings)  # nothing lost any more: nothing to restore
        await _assign(again, settings)
        assert _restored(again) == 0
        await again.store.close()
    finally:
        await delete_prefixed_keys(client, settings.key_prefix)
        await client.aclose()
