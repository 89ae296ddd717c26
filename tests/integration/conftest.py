"""Fixtures shared by the integration tests: a pipeline (topics, Redis prefix, workers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from support.pipeline import MakeTopic, Pipeline, pipeline_factory

from tests.support.own_redis import OwnRedis


@pytest_asyncio.fixture(loop_scope="session")
async def make_pipeline(kafka_bootstrap: str, redis_url: str, make_topic: MakeTopic,
                        redis_prefix: str, tmp_path: Path
                        ) -> AsyncIterator[Callable[..., Awaitable[Pipeline]]]:
    """``await make_pipeline(partitions=..)``: fresh topics and keys, stopped at the end."""
    async with pipeline_factory(kafka_bootstrap, redis_url, make_topic, redis_prefix,
                                tmp_path) as make:
        yield make


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of the test's own, to kill and restart without touching the shared one."""
    redis = OwnRedis(tmp_path / "redis")
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()
