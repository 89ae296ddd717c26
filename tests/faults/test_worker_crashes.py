"""Scenarios 1 and 2: the worker process dies (SIGKILL) while it counts.

1. One worker, SIGKILLed at 10+ seeded random moments: right after a flush was applied
   (``streamer_flushes_total`` went up, so the kill lands inside a flush pass, between
   the Redis write and the Kafka commit, or in the next partition's flush), at random
   millisecond offsets while it counts, and during its start-up (claiming partitions).
   It is restarted each time.
2. Two workers; one of them is SIGKILLed and restarted again and again, so partitions
   move back and forth (each kill and each restart is a rebalance).

Both end with every counter equal to ground truth and every rejection in the DLQ.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from fault_harness import Scenario, Sender, health, log, metric_sum, metrics, next_flush
from fault_workload import WorkloadBuilder, simple_bad

from streamer.verify.worker_process import WorkerProcess

PARTITIONS = 4
EVENTS = 200_000


async def _kill_after_flush(worker: WorkerProcess, timeout: float = 10.0) -> str:
    """SIGKILL the moment /metrics shows one more applied flush."""
    flushes = await next_flush(worker, timeout)
    worker.kill()
    if flushes is None:
        return f"SIGKILL (no new flush within {timeout:.0f}s)"
    return f"SIGKILL right after flush #{int(flushes)} was applied"


async def test_sigkill_worker_at_random_moments(kafka_bootstrap: str, redis_url: str,
                                                tmp_path: Path) -> None:
    rng = random.Random(1001)
    scenario = Scenario(1, "SIGKILL the worker at random moments", kafka_bootstrap,
                        redis_url, PARTITIONS, tmp_path)
    await scenario.setup()
    sender = None
    try:
        workload = WorkloadBuilder(1001, PARTITIONS, EVENTS, tag=scenario.names.tag,
                                   now_ms=int(time.time() * 1000)).build(default_bad=simple_bad)
        worker = scenario.worker("worker", STREAMER_FLUSH_INTERVAL_S="0.5")
        worker.start()
        await worker.wait_healthy(90)
        sender = Sender(kafka_bootstrap, scenario.names, workload, events_per_s=2_600)
        sender.start()
        modes = ["after_flush", "random_ms", "after_flush", "random_ms", "startup"] * 4
        rng.shuffle(modes)
        for index, mode in enumerate(modes):
            if len(scenario.faults) >= 10 and sender.done.is_set():
                break
            if mode == "after_flush":
                await asyncio.sleep(rng.uniform(0.0, 2.0))
                what = await _kill_after_flush(worker)
            elif mode == "startup":
                delay = rng.uniform(0.5, 5.0)
                await asyncio.sleep(delay)
                worker.kill()
                what = f"SIGKILL {delay * 1000:.0f} ms after start (start-up, claiming)"
            else:
                delay = rng.uniform(0.05, 4.0)
                await asyncio.sleep(delay)
                worker.kill()
                what = f"SIGKILL at a random moment, {delay * 1000:.0f} ms after healthy"
            scenario.fault(f"{what}; sent {sender.progress:.0%}")
            worker.start()
            if index + 1 < len(modes) and modes[index + 1] != "startup":
                await worker.wait_healthy(90)
        await sender.wait(300)
        await worker.wait_healthy(90)
        scenario.notes["worker_starts"] = worker.starts
        outcome = await scenario.verify(workload)
        scenario.assert_exact(outcome)
        assert len(scenario.faults) >= 10
    finally:
        if sender is not None:
            await sender.close()
        await scenario.cleanup()


async def test_two_workers_one_killed_repeatedly(kafka_bootstrap: str, redis_url: str,
                                                 tmp_path: Path) -> None:
    rng = random.Random(2002)
    scenario = Scenario(2, "two workers, one SIGKILLed repeatedly", kafka_bootstrap,
                        redis_url, PARTITIONS, tmp_path)
    await scenario.setup()
    sender = None
    try:
        workload = WorkloadBuilder(2002, PARTITIONS, EVENTS, tag=scenario.names.tag,
                                   now_ms=int(time.time() * 1000)).build(default_bad=simple_bad)
        stable = scenario.worker("stable")
        victim = scenario.worker("victim")
        stable.start()
        await stable.wait_healthy(90)
        victim.start()
        await victim.wait_healthy(90)
        sender = Sender(kafka_bootstrap, scenario.names, workload, events_per_s=3_000)
        sender.start()
        cycles = 0
        while cycles < 6 or (not sender.done.is_set() and cycles < 10):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            victim.kill()
            scenario.fault(f"SIGKILL one of two workers (cycle {cycles + 1}); "
                           f"sent {sender.progress:.0%}")
            # The survivor takes every partition once the victim's session expires.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status, body = await health(stable)
                if status == 200 and len(body.get("partitions", {})) == PARTITIONS:
                    break
                await asyncio.sleep(0.25)
            else:
                raise AssertionError("the surviving worker did not take over all partitions")
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            victim.start()
            await victim.wait_healthy(90)
            cycles += 1
        await sender.wait(300)
        await stable.wait_healthy(60)
        rebalances = metric_sum(await metrics(stable), "streamer_rebalances_total")
        scenario.notes["rebalances_seen_by_survivor"] = int(rebalances)
        log(f"scenario 2: the surviving worker went through {int(rebalances)} assignments")
        assert rebalances >= 5 + 1
        outcome = await scenario.verify(workload)
        scenario.assert_exact(outcome)
    finally:
        if sender is not None:
            await sender.close()
        await scenario.cleanup()
