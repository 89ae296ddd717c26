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
from failover_services import KafkaCluster
from fault_harness import Scenario, Sender, log, next_flush
from fault_workload import WorkloadBuilder, simple_bad

PARTITIONS = 4
EVENTS = 240_000  # ~80 s at RATE: load through both faults (a restart takes 30-60 s)
RATE = 3_000


@pytest.fixture
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[KafkaCluster]:
    cluster = KafkaCluster(f"kafka-cluster-{request.node.name[:40]}")
    cluster.fresh()
    try:
        cluster.run("up", timeout=360)
        yield cluster
    finally:
        try:
            cluster.run("down", timeout=240)
        finally:
            cluster.fresh()


async def _wait_progress(sender: Sender, fraction: float, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while sender.progress < fraction and not sender.done.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError(f"sending stuck at {sender.progress:.0%}")
        await asyncio.sleep(0.1)


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
    await scenario.setup(replication_factor=3)
    names = scenario.names
    topics = [names.uses, names.tracks, names.dlq]
    sender = None
    try:
        workload = WorkloadBuilder(11011, PARTITIONS, EVENTS, tag=names.tag,
                                   now_ms=int(time.time() * 1000)).build(default_bad=simple_bad)
        worker = scenario.worker("worker", STREAMER_REPLICATION_FACTOR="3")
        worker.start()
        await worker.wait_healthy(120)
        sender = Sender(bootstrap, names, workload, events_per_s=RATE)
        sender.start()
        await _wait_progress(sender, 0.1)
        for target in ("broker", "controller"):
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            assert not sender.done.is_set(), "the load ended before the faults did"
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
        sender.events_per_s = None
        await sender.wait(300)
        outcome = await scenario.verify(workload, drain_timeout=240)
        isr = await _wait_isr(bootstrap, topics, 3, 60)
        scenario.notes.update({"worker_starts": worker.starts, "isr_sizes_at_end": isr})
        log(f"scenario 11: in-sync replica counts at the end: {isr}")
        assert worker.alive and worker.starts == 1, "the worker process had to be restarted"
        scenario.assert_exact(outcome)
        assert isr == [3], f"partitions not back to 3 in-sync replicas: {isr}"
    finally:
        if sender is not None:
            await sender.close()
        await scenario.cleanup()
