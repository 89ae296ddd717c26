"""Scenarios 8-10: the Redis primary dies under load and a replica takes over (issue 26).

8. Sentinel (primary, two replicas, three Sentinels; AOF ``appendfsync always``), the
   worker connected with a ``redis+sentinel://`` URL. The primary is SIGKILLed three
   times while the worker counts: once right after a flush, twice with its replicas
   lagging (frozen, the replication link filled, see ``failover_services``), so that the
   promoted replica lacks flushes the worker saw acknowledged. Each time the Sentinels
   promote a replica and the old primary comes back as a replica.
9. The same with ``appendfsync everysec``.
10. Redis Cluster with a replica per primary: a primary holding partitions' slots is
    SIGKILLed (once plainly, once with its replica lagging); its replica takes over.

The worker process is never restarted: it follows the failover by itself, notices
through ``seq`` that Redis lost flushes, re-claims and rewinds (ARCHITECTURE.md,
exactly-once point 7). Each ends with every counter equal to ground truth and every
rejection in the DLQ.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from failover_load import faults_tolerated, note_redis_losses, running, under_load
from failover_services import (
    ClusterRedis,
    SentinelRedis,
    flushes_lost,
    kill_with_lagging_replicas,
    partition_seqs,
)
from fault_harness import Scenario, next_flush
from redis.asyncio.cluster import key_slot

from streamer.state.keys import KeyLayout

PARTITIONS = 4
EVENTS = 300_000
RATE = 3_000  # events/s: ~100 s of load, longer than three failovers take


@pytest.fixture
def sentinel_redis(request: pytest.FixtureRequest) -> Iterator[SentinelRedis]:
    appendfsync = getattr(request, "param", "always")
    with running(SentinelRedis(f"sentinel-{request.node.name[:40]}", appendfsync),
                 up_timeout=120, down_timeout=90) as service:
        yield service


@pytest.fixture
def cluster_redis(request: pytest.FixtureRequest) -> Iterator[ClusterRedis]:
    with running(ClusterRedis(f"cluster-{request.node.name[:40]}"),
                 up_timeout=120, down_timeout=90) as service:
        yield service


@pytest.mark.slow
@pytest.mark.parametrize("sentinel_redis", ["always", "everysec"], indirect=True)
async def test_sentinel_failover_under_load(kafka_bootstrap: str, sentinel_redis: SentinelRedis,
                                            tmp_path: Path) -> None:
    everysec = sentinel_redis.appendfsync == "everysec"
    number = 9 if everysec else 8
    rng = random.Random(8008 + number)
    scenario = Scenario(number, f"Sentinel failover x3, appendfsync {sentinel_redis.appendfsync}",
                        kafka_bootstrap, sentinel_redis.url, PARTITIONS, tmp_path)
    lost_per_failover: list[int] = []
    async with under_load(scenario, 8008 + number, PARTITIONS, EVENTS, rate=RATE,
                          start_at=0.05, healthy_timeout=90) as load:
        worker, sender = load.worker, load.sender
        for lagging in (False, True, True):
            # Back to back: a cycle takes ~20 s (the Sentinels convert the restarted old
            # primary into a replica at their next 10 s INFO round).
            await load.before_next_fault(rng, "failovers")
            old = await sentinel_redis.primary()
            replicas = [port for port in sentinel_redis.ports if port != old]
            if lagging:
                acknowledged = await kill_with_lagging_replicas(
                    sentinel_redis, old, replicas, f"{scenario.names.prefix}:filler",
                    seqs=lambda client: partition_seqs(client, scenario.names.prefix,
                                                       PARTITIONS))
            else:
                await next_flush(worker)
                async with sentinel_redis.client(old) as client:
                    acknowledged = await partition_seqs(client, scenario.names.prefix,
                                                        PARTITIONS)
                await sentinel_redis.arun_args("kill", str(old), timeout=30)
            new, took = await sentinel_redis.wait_new_primary(old)
            async with sentinel_redis.client(new) as client:
                promoted = await partition_seqs(client, scenario.names.prefix, PARTITIONS)
            lost = flushes_lost(acknowledged, promoted)
            lost_per_failover.append(lost)
            how = "with its replicas lagging" if lagging else "right after a flush"
            scenario.fault(f"Redis primary {old} SIGKILLed {how} at {sender.progress:.0%} sent; "
                           f"{new} promoted after {took:.1f}s, lacking {lost} acknowledged "
                           "flushes")
            if lagging:
                assert lost > 0, "the promoted replica had every flush: the lag did not hold"
            await sentinel_redis.arun("up", 120)  # the old primary rejoins as a replica
            await worker.wait_healthy(90)
        outcome = await load.finish(drain_timeout=180)
        reclaims = note_redis_losses(load, lost_per_failover)
        faults_tolerated(load)
        assert reclaims >= sum(1 for lost in lost_per_failover if lost)
        scenario.assert_exact(outcome)


@pytest.mark.slow
async def test_cluster_primary_killed_replica_takes_over(
        kafka_bootstrap: str, cluster_redis: ClusterRedis, tmp_path: Path) -> None:
    rng = random.Random(10010)
    scenario = Scenario(10, "Redis Cluster primary killed x2, replica takes over",
                        kafka_bootstrap, cluster_redis.url, PARTITIONS, tmp_path)
    layout = KeyLayout(scenario.names.prefix)
    slots = {partition: key_slot(layout.meta(partition).encode())
             for partition in range(PARTITIONS)}
    lost_per_failover: list[int] = []
    async with under_load(scenario, 10010, PARTITIONS, EVENTS // 2, rate=RATE,
                          start_at=0.05, healthy_timeout=90) as load:
        worker, sender = load.worker, load.sender
        for lagging in (False, True):
            await load.before_next_fault(rng, "failovers")
            # A primary holding partitions' state (each partition's keys share one slot).
            owners = {partition: await cluster_redis.primary_of_slot(slot)
                      for partition, slot in slots.items()}
            victim = rng.choice(sorted(set(owners.values())))
            mine = [partition for partition, port in owners.items() if port == victim]
            roles = await cluster_redis.roles()
            replicas = [port for port, (kind, of) in roles.items()
                        if kind == "slave" and of == victim]

            async def seqs(client: Any, mine: list[int] = mine) -> dict[int, int]:
                found = await partition_seqs(client, scenario.names.prefix, PARTITIONS,
                                             only=mine)
                return found

            if lagging:
                acknowledged = await kill_with_lagging_replicas(
                    cluster_redis, victim, replicas,
                    layout.meta(mine[0]).replace(":meta", ":filler"), seqs=seqs)
            else:
                await next_flush(worker)
                async with cluster_redis.client(victim) as client:
                    acknowledged = await seqs(client)
                await cluster_redis.arun_args("kill", str(victim), timeout=30)
            new, took = await cluster_redis.wait_promoted(victim, slots[mine[0]])
            async with cluster_redis.client(new) as client:
                promoted = await seqs(client)
            lost = flushes_lost(acknowledged, promoted)
            lost_per_failover.append(lost)
            how = "with its replica lagging" if lagging else "right after a flush"
            scenario.fault(f"Redis Cluster primary {victim} (partitions {mine}) SIGKILLed {how} "
                           f"at {sender.progress:.0%} sent; replica {new} took over after "
                           f"{took:.1f}s, lacking {lost} acknowledged flushes")
            if lagging:
                assert lost > 0, "the promoted replica had every flush: the lag did not hold"
            await cluster_redis.arun("up", 120)  # the old primary rejoins as a replica
            await worker.wait_healthy(90)
        outcome = await load.finish(drain_timeout=180)
        note_redis_losses(load, lost_per_failover)
        faults_tolerated(load)
        scenario.assert_exact(outcome)
