"""The state layout version in Redis (streamer/state/schema_version.py), checked at start.

A worker writes the version on an empty prefix and starts; on a prefix of another or an
unreadable version it refuses, before touching anything, with one line saying what to
do and exit code 8; with Redis unreachable it starts as it would ride out an outage,
and logs that the layout went unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time

import aiohttp
import redis

from streamer.exit_codes import ExitCode
from streamer.state.schema_version import SCHEMA_VERSION, schema_version_key
from tests.support.pipeline import Pipeline, free_port


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamer", "worker"], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


def one_line(done: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamer: "), done.stderr
    assert done.returncode == code, done.stderr
    return lines[0]


async def test_a_new_prefix_gets_the_version_and_the_worker_starts(  # type: ignore[no-untyped-def]
        make_pipeline, redis_url: str) -> None:
    pipeline: Pipeline = await make_pipeline(partitions=2)
    client = redis.Redis.from_url(redis_url)
    key = schema_version_key(pipeline.key_prefix)
    assert client.get(key) is None
    await pipeline.start_worker()
    assert client.get(key) == str(SCHEMA_VERSION).encode()
    # ... and a restart on it starts again (the same version is accepted).
    worker = pipeline.workers[0]
    worker.kill()
    worker.start()
    await worker.wait_healthy(120)


async def test_an_unknown_layout_is_refused_with_what_to_do(  # type: ignore[no-untyped-def]
        make_pipeline, redis_url: str) -> None:
    pipeline: Pipeline = await make_pipeline(partitions=2)
    client = redis.Redis.from_url(redis_url)
    key = schema_version_key(pipeline.key_prefix)
    env = {**os.environ, **pipeline.env(STREAMER_WEB_PORT=str(free_port()))}
    for stored, says in ((SCHEMA_VERSION + 1, "newer than streamer"),
                         (0, "older than streamer"),
                         ("banana", "not a number")):
        client.set(key, str(stored))
        started = time.monotonic()
        line = one_line(run_worker(env), ExitCode.STATE)
        assert says in line and "STREAMER_KEY_PREFIX" in line, line
        assert repr(pipeline.key_prefix) in line
        assert time.monotonic() - started < 60
        # Refused before touching anything: no partition was claimed.
        assert not list(client.scan_iter(match="{" + pipeline.key_prefix + ":*"))
        assert client.get(key) == str(stored).encode()  # and the version left alone


async def test_redis_unreachable_at_start_leaves_the_layout_unchecked(  # type: ignore[no-untyped-def]
        make_pipeline) -> None:
    """Like a running worker during a Redis outage: it starts, says so, is not ready."""
    pipeline: Pipeline = await make_pipeline(partitions=2)
    worker = pipeline.worker("worker", STREAMER_CONNECT_TIMEOUT_S="2",
                             STREAMER_REDIS_URL=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    with worker:  # starts it
        deadline = time.monotonic() + 60
        status: int | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                status, body = await worker.get("/v1/ready", timeout=2)
                if status == 503:
                    break
            await asyncio.sleep(0.5)
        assert status == 503 and "Redis" in body["reason"], status
        assert worker.alive
    log = worker.log_path.read_text()
    assert re.search(r"WARNING.*Redis at 127\.0\.0\.1:\d+ did not answer within 2 s "
                     r"\(ConnectionError: .*\): starting without checking its state layout", log)
    assert "hunter2" not in log
