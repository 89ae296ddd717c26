"""Liveness and readiness against real workers, Kafka and Redis (streamer/api/probes.py).

* A rebalance (seen in the worker's ``streamer_rebalances_total``): ``/v1/ready`` stays 200 (queries
  need only Redis), ``/v1/live`` stays 200. Before, the one probe on ``/v1/health``
  dropped every pod from the query Service during a rebalance.
* A Redis outage (a redis-server of this test's own, killed and restarted): ``/v1/ready``
  turns 503 naming Redis, ``/v1/live`` stays 200 (before, every pod was restarted after
  ~2 minutes), the worker's log names the cause of its retries at WARNING, rate-limited;
  and all comes back once Redis does.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from streamer.verify.worker_process import WorkerProcess
from tests.support.metrics_text import metric_value
from tests.support.own_redis import OwnRedis
from tests.support.pipeline import Pipeline, now_ms, use_event

Sample = tuple[float, int, int, int]  # time, live, ready, health


async def status(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


@contextlib.asynccontextmanager
async def sampling(worker: WorkerProcess, every_s: float = 0.05
                   ) -> AsyncIterator[list[Sample]]:
    """Probes of ``worker`` sampled in the background while the block runs."""
    samples: list[Sample] = []

    async def loop() -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                live, ready, health = await asyncio.gather(
                    status(session, worker.base_url + "/v1/live"),
                    status(session, worker.base_url + "/v1/ready"),
                    status(session, worker.base_url + "/v1/health"))
                samples.append((time.monotonic(), live, ready, health))
                await asyncio.sleep(every_s)

    task = asyncio.ensure_future(loop())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def rebalances(worker: WorkerProcess) -> float:
    status_code, text = await worker.get("/metrics")
    assert status_code == 200, text
    return metric_value(text, "streamer_rebalances_total")


async def test_a_rebalance_keeps_the_worker_ready_and_live(make_pipeline) -> None:  # type: ignore[no-untyped-def]
    pipeline: Pipeline = await make_pipeline(partitions=4)
    first = await pipeline.start_worker("first")
    assigned_before = await rebalances(first)
    async with sampling(first) as samples:
        await asyncio.sleep(1)
        second = await pipeline.start_worker("second")  # the group rebalances
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            (ok_a, body_a), (ok_b, body_b) = (await first.get("/v1/health"),
                                              await second.get("/v1/health"))
            if ok_a == ok_b == 200 and len(body_a["partitions"]) + len(
                    body_b["partitions"]) == 4 and body_a["partitions"]:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the two workers never shared the partitions")
        await asyncio.sleep(0.5)
    # The rebalance happened to the sampled worker: it received a new assignment and now
    # holds fewer than the four partitions it started with. (Whether a 50 ms sampler also
    # catches /v1/health's 503 depends on how long the rebalance lasts, so that is not the
    # proof; test_health covers the 503 itself.)
    assert await rebalances(first) > assigned_before
    assert 0 < len(body_a["partitions"]) < 4, body_a["partitions"]
    assert len(samples) > 10, "the probes were not sampled while the group rebalanced"
    assert all(live == 200 and ready == 200 for _, live, ready, _ in samples), [
        s for s in samples if s[1] != 200 or s[2] != 200][:5]


async def test_a_redis_outage_makes_the_worker_unready_not_dead(  # type: ignore[no-untyped-def]
        make_pipeline, own_redis: OwnRedis) -> None:
    pipeline: Pipeline = await make_pipeline(partitions=2)
    worker = pipeline.worker("worker", STREAMER_REDIS_URL=own_redis.url).start()
    await worker.wait_healthy(120)
    start_lines = worker.log_tail(10_000).splitlines()
    # A normal start: no ERROR lines (aiokafka's coordinator noise is gone), and short.
    assert not [line for line in start_lines if "[ERROR]" in line], start_lines
    assert len(start_lines) < 40, "\n".join(start_lines)
    async with aiohttp.ClientSession() as session:
        async with sampling(worker) as samples:
            own_redis.kill()
            down_at = time.monotonic()
            async with pipeline.producer() as producer:  # work that needs Redis to flush
                for n in range(50):
                    await producer.send_use(use_event(f"T{n % 5}", "play", now_ms() - 60_000))
            await asyncio.sleep(12)  # past one rate-limit window of the retry warnings
            async with session.get(worker.base_url + "/v1/ready") as response:
                assert response.status == 503
                body = await response.json()
            assert body["status"] == "unavailable" and "Redis" in body["reason"], body
            own_redis.start()
            back_at = time.monotonic()
            deadline = back_at + 60
            while await status(session, worker.base_url + "/v1/ready") != 200:
                assert time.monotonic() < deadline, "not ready again after Redis came back"
                await asyncio.sleep(0.2)
        await worker.wait_healthy(60)
    during = [s for s in samples if down_at + 2 < s[0] < back_at]
    assert during and all(ready == 503 for _, _, ready, _ in during), during[:5]
    assert all(live == 200 for _, live, _, _ in samples), [s for s in samples if s[1] != 200][:5]
    log = worker.log_tail(10_000)
    retries = [line for line in log.splitlines() if "failed (attempt" in line]
    assert retries and all("[WARNING]" in line for line in retries), retries[:5]
    assert all(re.search(r"\): \w*(Connection|Timeout)\w*: ", line) for line in retries), \
        retries[:5]  # the cause, by name
    assert any("more like this in the last" in line for line in retries), retries
    # rate-limited: at most one line per 10 s window per message, not one per attempt
    assert len(retries) <= 2 * (1 + (back_at - down_at) / 10) + 2, len(retries)
