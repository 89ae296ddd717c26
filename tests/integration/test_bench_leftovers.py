"""The harness finds what other benchmark runs left in the real Kafka and Redis.

A killed run's million keys once inflated a sustained run's p99 from 2.70 s to 7.12 s
(every AOF rewrite wrote them again), so a run must not start unaware of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.common import Stack
from benchmarks.leftovers import delete_run_state, find_leftovers

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(loop_scope="session")
async def planted(kafka_bootstrap: str, redis_url: str,
                  kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    """A fake killed run: two keys and a topic under a fresh run id, deleted afterwards."""
    run_id = f"bench-killed-{uuid.uuid4().hex[:8]}"
    await kafka_admin.create_topics([NewTopic(f"{run_id}.uses", 1, 1)])
    client = aioredis.Redis.from_url(redis_url)
    await client.hset("{" + run_id + ":0}:w:60000:track", "T-1", 3)
    await client.set(f"{run_id}:cat:{{T-1}}", b"plan")
    try:
        yield run_id
    finally:
        await delete_run_state(Stack(kafka_bootstrap, redis_url), run_id)
        await client.aclose()


def harness(args: list[str], kafka_bootstrap: str, redis_url: str,
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(STREAMER_KAFKA_BOOTSTRAP=kafka_bootstrap, STREAMER_REDIS_URL=redis_url)
    return subprocess.run([sys.executable, "-m", "benchmarks", *args, "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


async def test_leftovers_are_found_and_only_they_are_deleted(
        planted: str, kafka_bootstrap: str, redis_url: str,
        kafka_admin: AIOKafkaAdminClient, redis_prefix: str) -> None:
    stack = Stack(kafka_bootstrap, redis_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.set(f"{redis_prefix}other", b"not a benchmark's")
        found = await find_leftovers(stack)
        assert found.keys.get(planted) == 2
        assert found.topics.get(planted) == [f"{planted}.uses"]

        await delete_run_state(stack, planted)

        assert planted not in (await find_leftovers(stack)).runs
        assert f"{planted}.uses" not in await kafka_admin.list_topics()
        assert await client.get(f"{redis_prefix}other") == b"not a benchmark's"
    finally:
        await client.aclose()


async def test_the_harness_refuses_to_start_beside_leftovers(
        planted: str, kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = harness(["generator", "--events", "2000", "--processes", "1",
                    "--results-dir", str(results)], kafka_bootstrap, redis_url)

    assert done.returncode == 2, done.stderr
    (message,) = [line for line in done.stderr.splitlines() if line.startswith("benchmarks:")]
    assert f"{planted} (2 Redis keys, 1 topics)" in message
    assert "--leftovers clean" in message
    assert not results.exists()
    assert planted in (await find_leftovers(Stack(kafka_bootstrap, redis_url))).runs


async def test_leftovers_clean_deletes_them_and_says_so(
        planted: str, kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    others = [run for run in (await find_leftovers(Stack(kafka_bootstrap, redis_url))).runs
              if run != planted]
    if others:
        pytest.skip(f"--leftovers clean would delete other benchmark runs' state: {others}")
    results = tmp_path / "results"
    done = harness(["generator", "--events", "2000", "--processes", "1", "--leftovers",
                    "clean", "--results-dir", str(results)], kafka_bootstrap, redis_url)

    assert done.returncode == 0, done.stderr
    assert planted not in (await find_leftovers(Stack(kafka_bootstrap, redis_url))).runs
    (out,) = list(results.iterdir())
    recorded = json.loads((out / "result.json").read_text())["leftovers_at_start"]
    assert recorded["action"] == "clean"
    assert recorded["found"][planted] == {"redis_keys": 2, "topics": [f"{planted}.uses"]}
    summary = (out / "summary.md").read_text()
    assert f"deleted before the run: {planted} (2 keys, 1 topics)" in summary
