"""Fixtures shared by the integration tests: a pipeline (topics, Redis prefix, workers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest_asyncio
from support.pipeline import MakeTopic, Pipeline, pipeline_factory


@pytest_asyncio.fixture(loop_scope="session")
async def make_pipeline(kafka_bootstrap: str, redis_url: str, make_topic: MakeTopic,
                        redis_prefix: str, tmp_path: Path
                        ) -> AsyncIterator[Callable[..., Awaitable[Pipeline]]]:
    """``await make_pipeline(partitions=..)``: fresh topics and keys, stopped at the end."""
    async with pipeline_factory(kafka_bootstrap, redis_url, make_topic, redis_prefix,
                                tmp_path) as make:
        yield make
