"""Exactly once through crashes and rebalances, checked counter by counter.

A paced workload (batch and single-event records, duplicates, tracks whose metadata
comes mid-run or never) is sent while worker processes are SIGKILLed and restarted, or
join and leave the group. After everything is drained, every counter in Redis must equal
the ground truth: nothing lost, nothing counted twice, no attribution off by one micro.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from support.pipeline import (
    MINUTE,
    WINDOWS,
    Pipeline,
    past_hour_start,
    track_event,
    use_event,
)
from support.workload import Workload

from streamer.verify import GroundTruth, compare
from streamer.verify.kafka_progress import end_offsets

LATENESS = "2m"
LATENESS_MS = 2 * MINUTE
# Records reach the worker straight from the fetch loop (the default) or through Faust's
# agent (STREAMER_DIRECT_DELIVERY=0): both must survive crashes and rebalances.
DELIVERY = {"direct": "1", "agent": "0"}



def new_workload(pipe: Pipeline, seed: int) -> Workload:
    truth = GroundTruth(WINDOWS, allowed_lateness_ms=LATENESS_MS)
    # Event times straddle an hour boundary: [hour - 50 s, hour + 50 s).
    t_lo = past_hour_start(15 * MINUTE) - 50_000
    return Workload(pipe, truth, random.Random(seed), t_lo=t_lo, span_ms=100_000)


async def finish_and_reconcile(pipe: Pipeline, workload: Workload) -> None:
    await pipe.drained()  # mid-run TrackCreated applied before any pending attribution expires
    await workload.push_watermarks(LATENESS_MS)
    await pipe.drained()
    workload.truth.finish()
    result = compare(workload.truth.expected(), await pipe.counters())
    print(f"sent {workload.sent_uses} uses + {workload.sent_duplicates} duplicates; "
          f"{result.summary()}")
    assert result.lost == 0, str(result)
    assert result.double == 0, str(result)
    assert result.ok, str(result)
    assert result.events_expected == workload.sent_uses + pipe.partitions


@pytest.mark.parametrize("delivery", ["direct", "agent"])
async def test_exactly_once_across_repeated_sigkill(make_pipeline: Any, delivery: str) -> None:
    pipe = await make_pipeline(STREAMER_ALLOWED_LATENESS=LATENESS,
                               STREAMER_DIRECT_DELIVERY=DELIVERY[delivery])
    worker = await pipe.start_worker()
    workload = new_workload(pipe, seed=21)
    await workload.send_first_tracks()
    await pipe.drained()

    rng = random.Random(99)
    sender = asyncio.ensure_future(workload.run(30_000, chunk=500, pause_s=0.3))
    kills = []
    try:
        for _ in range(3):
            await worker.wait_healthy(120)
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            if sender.done():
                break
            kills.append(time.monotonic())
            worker.kill()
            worker.start()
        await asyncio.wait_for(sender, timeout=180)
    finally:
        if not sender.done():
            sender.cancel()
    assert len(kills) == 3, "the workload ended before three kills; make it longer"
    await worker.wait_healthy(120)
    await finish_and_reconcile(pipe, workload)
    assert worker.alive


@pytest.mark.parametrize(("leave", "delivery"),
                         [("sigterm", "direct"), ("sigkill", "direct"), ("sigkill", "agent")])
async def test_exactly_once_when_workers_join_and_leave(make_pipeline: Any, leave: str,
                                                       delivery: str) -> None:
    """Two workers in one group: a second joins mid-run (the partitions are split), then
    the first leaves, gracefully (SIGTERM: final flush, revocation) or by crashing (SIGKILL:
    its partitions move after the session timeout, its unflushed work is redone)."""
    pipe = await make_pipeline(STREAMER_ALLOWED_LATENESS=LATENESS,
                               STREAMER_DIRECT_DELIVERY=DELIVERY[delivery])
    first = await pipe.start_worker("worker-a")
    workload = new_workload(pipe, seed=22)
    await workload.send_first_tracks()
    await pipe.drained()

    sender = asyncio.ensure_future(workload.run(20_000, chunk=500, pause_s=0.3))
    try:
        await asyncio.sleep(2.0)
        second = await pipe.start_worker("worker-b")  # joins: partitions are split
        # The group may rebalance more than once as worker-b starts (its topics appear
        # in the metadata); wait until the split has settled, while events keep coming.
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            owned = {
                name: sorted((await w.get("/v1/health"))[1].get("partitions", {}))
                for name, w in (("a", first), ("b", second))
            }
            if (owned["a"] and owned["b"]) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        print(f"partitions while both run: {owned}")
        if leave == "sigterm":
            await first.aterminate()  # leaves gracefully: its partitions move to worker-b
        else:
            first.kill()
        assert first.returncode is not None
        await asyncio.wait_for(sender, timeout=180)
    finally:
        if not sender.done():
            sender.cancel()
    assert owned["a"] and owned["b"], f"both workers should own partitions: {owned}"
    assert not set(owned["a"]) & set(owned["b"])
    await finish_and_reconcile(pipe, workload)
    status, body = await second.get("/v1/health")
    assert status == 200
    assert sorted(body["partitions"]) == [str(p) for p in range(pipe.partitions)]


async def test_resumes_from_redis_offsets_when_group_commits_run_ahead(
        make_pipeline: Any) -> None:
    """Redis, not the consumer group, says where to resume.

    While no worker runs, the group's committed offsets are moved ahead of the offsets
    stored in Redis (as happens when a worker commits records it counted but had not
    flushed yet, then crashes). A new worker must count everything from the Redis offsets.
    """
    pipe = await make_pipeline()
    truth = GroundTruth(WINDOWS)
    rng = random.Random(31)
    t0 = past_hour_start(15 * MINUTE) + 5 * MINUTE
    worker = await pipe.start_worker()
    tracks = [pipe.track_in_partition(p, "ro") for p in range(pipe.partitions)]

    async def send(n_records: int) -> None:
        async with pipe.producer(batch_events=20, linger_ms=5) as producer:
            for _ in range(n_records):
                for track in tracks:
                    for _ in range(20):
                        event = use_event(track, rng.choice(("create", "play")),
                                          t0 + rng.randrange(60_000))
                        await producer.send_use(event)
                        truth.use(event)
                await producer.flush()  # one record of 20 events per partition per round

    async with pipe.producer() as producer:
        for track in tracks:
            event = track_event(track, t0)
            await producer.send_track(event)
            truth.track_created(event)
    await send(5)
    stored = await pipe.drained()
    assert await worker.aterminate() is not None  # leaves the group: it is empty now

    await send(40)  # counted by nobody yet
    ends = await end_offsets(pipe.kafka_bootstrap,
                             [(pipe.uses_topic, p) for p in range(pipe.partitions)])
    ahead = {TopicPartition(pipe.uses_topic, p): OffsetAndMetadata(
        (stored[p]["u"][0] + ends[(pipe.uses_topic, p)]) // 2, "") for p in range(pipe.partitions)}
    committer = AIOKafkaConsumer(bootstrap_servers=pipe.kafka_bootstrap, group_id=pipe.app_id,
                                 enable_auto_commit=False)
    await committer.start()
    try:
        committer.assign(list(ahead))
        await committer.commit(ahead)
    finally:
        await committer.stop()
    print("Redis offsets", {p: stored[p]["u"][0] for p in stored},
          "group committed", {tp.partition: meta.offset for tp, meta in ahead.items()})

    worker = await pipe.start_worker("worker-2")
    await pipe.drained()
    result = compare(truth.expected(), await pipe.counters())
    print(result.summary())
    assert result.ok, str(result)
