"""A Redis failover that loses the worker's latest claim must not cost it the partition.

A promoted replica holds an older prefix of the primary's writes. When the lost writes
include the worker's own latest claim, the partition's ``owner`` in Redis is one of this
worker's earlier tokens (or nothing at all, if even the first claim was lost). Nobody
else claimed the partition, so the worker must re-claim it and rewind, as it does when
only flushes were lost (ARCHITECTURE.md, exactly-once point 7). Found by
tests/faults/test_redis_failover.py: two failovers within seconds (the Sentinels
promoted a replica, then another) and the worker dropped three of its four partitions,
which nobody counted again.

Real Redis and a real PipelineWorker without Kafka: records are handed to ``handle``
as the fetch loop would, the failover is modelled by putting the partition's commit
record back to an older state, which is what the promoted replica holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.worker import PipelineWorker
from streamer.state.keys import KeyLayout
from streamer.state.store import RedisStore, connect
from streamer.verify.redis_counters import delete_prefixed_keys, read_counters
from tests.support.pipeline import use_event

TRACK = "track-lost-claims"


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@pytest_asyncio.fixture(loop_scope="session")
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


class Harness:
    """One worker owning partition 0; records 0, 1, 2 ... of sounds.used partition 0."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.settings = Settings(key_prefix=prefix)
        self.meta = KeyLayout(prefix).meta(0)
        self.worker = PipelineWorker(self.settings, RedisStore(connect(redis_url),
                                                               KeyLayout(prefix)), Metrics())
        start_ms = (int(time.time() * 1000) // 60_000 - 2) * 60_000  # in a past minute
        self.records = [orjson.dumps(use_event(TRACK, "play", start_ms + i,
                                               event_id=f"lost-claims-{i}"))
                        for i in range(20)]

    async def assign(self) -> None:
        await self.worker.on_assigned([TP(self.settings.uses_topic, 0),
                                       TP(self.settings.tracks_topic, 0)])

    async def deliver(self, first: int, last: int) -> None:
        """Records first..last-1, as Kafka delivers them (after a rewind: again)."""
        for offset in range(first, last):
            await self.worker.handle(self.settings.uses_topic, 0, offset, self.records[offset])

    async def flush(self) -> None:
        await self.worker.flush_all()

    async def close(self) -> None:
        await self.worker.store.close()


async def _snapshot(client: aioredis.Redis, prefix: str) -> dict[bytes, bytes]:
    """Every key the worker wrote, serialised (what a replica holds at this point)."""
    keys = [key async for key in client.scan_iter(match="{" + prefix + ":*")]
    keys += [key async for key in client.scan_iter(match=prefix + ":*")]
    return {key: await client.dump(key) for key in keys}


async def _promote(client: aioredis.Redis, prefix: str, snapshot: dict[bytes, bytes]) -> None:
    """Redis as the promoted replica has it: the writes after ``snapshot`` are gone."""
    await delete_prefixed_keys(client, prefix)
    for key, dumped in snapshot.items():
        await client.restore(key, 0, dumped, replace=True)


async def _uses_counted(redis_url: str, prefix: str) -> int:
    counters = await read_counters(redis_url, prefix)
    return sum(value for key, value in counters.items() if key[0] == "track" and key[1] == "1m")


@pytest.mark.parametrize("lost", ["our_earlier_claim", "every_claim"])
async def test_a_failover_that_lost_our_latest_claim_keeps_the_partition(
        redis_url: str, redis_client: aioredis.Redis, lost: str) -> None:
    prefix = f"test:lost-claims-{uuid.uuid4().hex[:8]}"
    harness = Harness(redis_url, prefix)
    try:
        await harness.assign()
        first_owner = (await redis_client.hget(harness.meta, "owner")).decode()
        assert first_owner.startswith(harness.worker.worker_id + ":")
        at_first_claim = await _snapshot(redis_client, prefix)
        await harness.deliver(0, 5)
        await harness.flush()

        # Failover 1 lost the flush only: the worker notices through seq and re-claims.
        await _promote(redis_client, prefix, at_first_claim)
        await harness.deliver(5, 6)
        await harness.flush()
        second_owner = (await redis_client.hget(harness.meta, "owner")).decode()
        assert second_owner != first_owner and 0 in harness.worker.states
        await harness.deliver(0, 8)  # Kafka rewound to the stored offset, 0
        await harness.flush()
        assert await _uses_counted(redis_url, prefix) == 8

        # Failover 2 lost the re-claim and what followed: Redis names our first token
        # again (or no owner at all, had the first claim been lost too).
        await _promote(redis_client, prefix, at_first_claim if lost == "our_earlier_claim"
                       else {})
        await harness.deliver(8, 10)
        await harness.flush()  # refused: the worker must re-claim, not drop the partition
        assert 0 in harness.worker.states, "the worker dropped a partition nobody else owns"
        owner = (await redis_client.hget(harness.meta, "owner")).decode()
        assert owner.startswith(harness.worker.worker_id + ":")
        assert owner not in (first_owner, second_owner)

        # Kafka rewinds to the stored offset; every record is counted once.
        assert harness.worker.states[0].next_offset["u"] == 0
        await harness.deliver(0, 12)
        await harness.flush()
        await harness.deliver(12, 14)
        await harness.flush()
        assert int(await redis_client.hget(harness.meta, "off:u")) == 14
        assert await _uses_counted(redis_url, prefix) == 14
    finally:
        await harness.close()
        await delete_prefixed_keys(redis_client, prefix)
