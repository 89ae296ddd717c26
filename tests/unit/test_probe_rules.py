"""Readiness asks Redis with a deadline shorter than a probe's (streamer/api/probes.py)."""

from __future__ import annotations

import asyncio
import time

from redis.exceptions import ConnectionError as RedisConnectionError

from streamer.api.probes import redis_status


async def test_ready_when_redis_answers() -> None:
    async def ping() -> bool:
        return True

    assert await redis_status(ping) == (True, {"status": "ok"})


async def test_unready_naming_the_error() -> None:
    async def ping() -> bool:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    ready, body = await redis_status(ping)
    assert not ready and body["status"] == "unavailable"
    assert body["reason"].startswith("Redis unreachable: ConnectionError: Error 111")


async def test_unready_when_redis_is_slow_and_answers_before_the_probe_gives_up() -> None:
    async def ping() -> bool:
        await asyncio.sleep(5)
        return True

    started = time.monotonic()
    ready, body = await redis_status(ping, timeout_s=0.2)
    assert time.monotonic() - started < 1.0  # a k8s probe waits 1 s by default
    assert not ready and body["reason"] == "Redis did not answer a PING within 0.2 s"
