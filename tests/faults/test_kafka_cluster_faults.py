"""Scenario 11: a three-broker Kafka cluster loses a broker, then its controller, under load.

Three KRaft nodes (each broker and controller; replication factor 3,
``min.insync.replicas=2``) from deploy/local/kafka-cluster.sh. The test's producer sends
with ``acks=all`` (idempotent) and keeps sending through every fault:

1. a broker that is not the active controller is SIGKILLed, stays down 7-10 s (past its
   session timeout, so leadership moves to the others), and is restarted;
2. the active controller (the KRaft quorum leader, also a broker) is SIGKILLed, a new
   leader is elected among the other two, and the old one is restarted.

The worker process is never restarted. Every counter must equal ground truth and every
rejection must be in the DLQ; the topics must be back to three in-sync replicas.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from failover_load import faults_tolerated, running, under_load
from failover_services import KafkaCluster
from fault_harness import Scenario, log, next_flush

PARTITIONS = 4
EVENTS = 240_000  # ~80 s at RATE: load through both faults (a restart takes 30-60 s)
RATE = 3_000


@pytest.fixture
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[KafkaCluster]:
    with running(KafkaCluster(f"kafka-cluster-{request.node.name[:40]}"),
                 up_timeout=360, down_timeout=240) as cluster:
        yield cluster


async def _in_sync_replicas(bootstrap: str, topics: list[str]) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        return sorted({len(p["isr"]) for meta in described for p in meta["partitions"]})
    finally:
        await admin.close()


async def _wait_isr(bootstrap: str, topics: list[str], wanted: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        sizes = await _in_sync_replicas(bootstrap, topics)
        if sizes == [wanted] or time.monotonic() > deadline:
            return sizes
        await asyncio.sleep(1.0)


@pytest.mark.slow
async def test_kafka_cluster_loses_a_broker_then_the_controller(
        kafka_cluster: KafkaCluster, redis_url: str, tmp_path: Path) -> None:
    rng = random.Random(11011)
    bootstrap = kafka_cluster.bootstrap
    scenario = Scenario(11, "Kafka x3: broker SIGKILLed, then the controller", bootstrap,
                        redis_url, PARTITIONS, tmp_path)
    names = scenario.names
    topics = [names.uses, names.tracks, names.dlq]
    async with under_load(scenario, 11011, PARTITIONS, EVENTS, rate=RATE, start_at=0.1,
                          healthy_timeout=120, replication_factor=3,
                          STREAMER_REPLICATION_FACTOR="3") as load:
        worker, sender = load.worker, load.sender
        for target in ("broker", "controller"):
            await load.before_next_fault(rng)
            controller = await kafka_cluster.controller()
            node = controller if target == "controller" else rng.choice(
                [n for n in (1, 2, 3) if n != controller])
            await next_flush(worker)
            await kafka_cluster.arun_args("kill", str(node), timeout=60)
            # Longer than broker.session.timeout.ms (5 s): the controller fences the
            # node and its partitions' leadership moves while it is down.
            down_s = rng.uniform(7.0, 10.0)
            at = sender.progress
            await asyncio.sleep(down_s)
            if target == "controller":
                elected = await kafka_cluster.controller()
                assert elected != node, "no new controller was elected"
                what = f"active controller (node {node}) SIGKILLed; node {elected} elected"
            else:
                what = f"broker node {node} (not the controller, node {controller}) SIGKILLed"
            sent_while_down = sender.progress - at
            await kafka_cluster.arun("up", 300)
            scenario.fault(f"{what} at {at:.0%} sent, down {down_s:.1f}s while "
                           f"{sent_while_down:.0%} of the workload was sent (acks=all), "
                           "then restarted")
            await worker.wait_healthy(120)
        outcome = await load.finish(drain_timeout=240)
        isr = await _wait_isr(bootstrap, topics, 3, 60)
        scenario.notes.update({"worker_starts": worker.starts, "isr_sizes_at_end": isr})
        log(f"scenario 11: in-sync replica counts at the end: {isr}")
        faults_tolerated(load)
        scenario.assert_exact(outcome)
        assert isr == [3], f"partitions not back to 3 in-sync replicas: {isr}"
