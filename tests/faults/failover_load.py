"""What the failover scenarios (8-11) share: replicated services started fresh for one
test, and one worker counting a workload sent at a steady rate while the faults happen.

:func:`running` brings a service of ``failover_services`` up and always takes it down
and deletes it. :func:`under_load` sets a scenario up (topics, the workload, one worker,
a paced sender at the given share of the workload); the test injects its faults between
``load.before_next_fault`` calls, then ``load.finish`` sends the rest at full speed and
verifies every counter and the DLQ. :func:`note_redis_losses` records what the promoted
replicas lacked and how often the worker re-claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from fault_harness import Outcome, Scenario, Sender, log, worker_log_text
from fault_workload import Workload, WorkloadBuilder, simple_bad

from streamer.verify.worker_process import WorkerProcess


class Service(Protocol):
    def fresh(self) -> None: ...

    def run(self, action: str, timeout: float = 180.0) -> str: ...


S = TypeVar("S", bound=Service)


@contextlib.contextmanager
def running(service: S, up_timeout: float, down_timeout: float) -> Iterator[S]:
    """``service`` up from an empty data directory; stopped and deleted afterwards (woken
    first if it has frozen nodes: a test may fail while they are stopped)."""
    service.fresh()
    try:
        service.run("up", timeout=up_timeout)
        yield service
    finally:
        try:
            thaw_all = getattr(service, "thaw_all", None)
            if thaw_all is not None:
                thaw_all()
            service.run("down", timeout=down_timeout)
        finally:
            service.fresh()


async def wait_progress(sender: Sender, fraction: float, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while sender.progress < fraction and not sender.done.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError(f"sending stuck at {sender.progress:.0%}")
        await asyncio.sleep(0.1)


@dataclass
class Load:
    scenario: Scenario
    workload: Workload
    worker: WorkerProcess
    sender: Sender

    async def before_next_fault(self, rng: random.Random, faults: str = "faults") -> None:
        """A short random pause; the load must still be running for the next fault."""
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        assert not self.sender.done.is_set(), f"the load ended before the {faults} did"

    async def finish(self, drain_timeout: float) -> Outcome:
        """The rest of the workload at full speed, then every counter and the DLQ."""
        self.sender.events_per_s = None
        await self.sender.wait(300)
        return await self.scenario.verify(self.workload, drain_timeout=drain_timeout)


@contextlib.asynccontextmanager
async def under_load(scenario: Scenario, seed: int, partitions: int, events: int, *,
                     rate: float, start_at: float, healthy_timeout: float,
                     replication_factor: int = 1, **worker_env: str) -> AsyncIterator[Load]:
    """One worker counting ``events`` sent at ``rate`` events/s, ``start_at`` of them sent."""
    await scenario.setup(replication_factor=replication_factor)
    sender = None
    try:
        workload = WorkloadBuilder(seed, partitions, events, tag=scenario.names.tag,
                                   now_ms=int(time.time() * 1000)).build(default_bad=simple_bad)
        worker = scenario.worker("worker", **worker_env)
        worker.start()
        await worker.wait_healthy(healthy_timeout)
        sender = Sender(scenario.bootstrap, scenario.names, workload, events_per_s=rate)
        sender.start()
        await wait_progress(sender, start_at)
        yield Load(scenario, workload, worker, sender)
    finally:
        if sender is not None:
            await sender.close()
        await scenario.cleanup()


def note_redis_losses(load: Load, lost_per_failover: list[int]) -> int:
    """Record the acknowledged flushes each promoted replica lacked and the worker's
    re-claims after a loss (its log); return the re-claims."""
    worker = load.worker
    reclaims = worker_log_text(worker).count("Redis is behind our state")
    load.scenario.notes.update({"worker_starts": worker.starts,
                                "flushes_lost_per_failover": lost_per_failover,
                                "reclaims_after_redis_loss": reclaims})
    log(f"scenario {load.scenario.number}: acknowledged flushes missing on the promoted "
        f"replica: {lost_per_failover}; re-claims after a loss: {reclaims}")
    return reclaims


def faults_tolerated(load: Load) -> None:
    """The worker process followed every fault by itself."""
    assert load.worker.alive and load.worker.starts == 1, (
        "the worker process had to be restarted")

