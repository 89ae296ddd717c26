"""Shared pytest fixtures for the streamer test suite.

Services: tests that need Kafka or Redis take the ``kafka_bootstrap`` /
``redis_url`` fixtures. Their addresses come from ``STREAMER_KAFKA_BOOTSTRAP``
(default ``127.0.0.1:9092``) and ``STREAMER_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``); ``make test`` starts the local stack
(deploy/local/) and sets both. An unreachable service makes the tests that need
it fail with a message saying so; they are never skipped.

Isolation: tests share one broker and one Redis, so each test names its own
resources: ``make_topic`` creates uniquely named topics (deleted afterwards) and
``redis_prefix`` gives a unique key prefix (its keys are deleted afterwards).
Set ``STREAMER_TEST_KEEP=1`` to keep both for debugging.

Markers: everything under tests/integration/ and tests/faults/ is marked
``integration`` automatically (``pytest -m 'not integration'`` runs the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

KAFKA_BOOTSTRAP_DEFAULT = "127.0.0.1:9092"
REDIS_URL_DEFAULT = "redis://127.0.0.1:6379/0"
KEEP_TEST_RESOURCES = os.environ.get("STREAMER_TEST_KEEP", "") not in ("", "0")

_TESTS_DIR = Path(__file__).resolve().parent
_INTEGRATION_DIRS = {"integration", "faults"}

MakeTopic = Callable[..., Awaitable[str]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs the real local Kafka and Redis (make up)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests under tests/integration/ and tests/faults/ as ``integration``."""
    for item in items:
        try:
            top = Path(item.path).resolve().relative_to(_TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        if top in _INTEGRATION_DIRS:
            item.add_marker(pytest.mark.integration)


def unique_name(prefix: str, max_prefix: int = 40) -> str:
    """``<prefix>-<10 hex chars>``, with the prefix reduced to ``[A-Za-z0-9._-]``
    (valid as a Kafka topic name, consumer group id, Faust app id or Redis key)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix).strip("-")[:max_prefix] or "t"
    return f"{clean}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------- Kafka


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_bootstrap() -> str:
    """Bootstrap address of a reachable Kafka broker (fails the test if none)."""
    bootstrap = os.environ.get("STREAMER_KAFKA_BOOTSTRAP", KAFKA_BOOTSTRAP_DEFAULT)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), timeout=20)
        await asyncio.wait_for(admin.list_topics(), timeout=20)
    except Exception as exc:
        pytest.fail(
            f"Kafka is not reachable at {bootstrap} ({exc!r}). Start the local stack with "
            "`make up` (or use `make test`), or point STREAMER_KAFKA_BOOTSTRAP at a broker.",
            pytrace=False,
        )
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return bootstrap


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """One aiokafka admin client for the whole session."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    yield admin
    await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, timeout: float = 30.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        (meta,) = await admin.describe_topics([topic])
        led = [p for p in meta["partitions"] if p["error_code"] == 0 and p["leader"] >= 0]
        if meta["error_code"] == 0 and len(led) == partitions:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for every partition: {meta}")
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture(loop_scope="session")
async def make_topic(kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[MakeTopic]:
    """Factory: ``await make_topic("events", partitions=4, config={...})`` creates a
    topic named ``events-<random>``, waits until every partition has a leader and
    returns the name. Topics are deleted when the test ends."""
    created: list[str] = []

    async def _make(
        name_prefix: str = "test", partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        name = unique_name(name_prefix)
        await kafka_admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=dict(config or {}))]
        )
        created.append(name)
        await _wait_for_leaders(kafka_admin, name, partitions)
        return name

    yield _make
    if created and not KEEP_TEST_RESOURCES:
        with contextlib.suppress(Exception):  # cleanup only; the names are unique anyway
            await kafka_admin.delete_topics(created)


# --------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis (fails the test if none)."""
    url = os.environ.get("STREAMER_REDIS_URL", REDIS_URL_DEFAULT)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(
            f"Redis is not reachable at {url} ({exc!r}). Start the local stack with "
            "`make up` (or use `make test`), or point STREAMER_REDIS_URL at a server.",
            pytrace=False,
        )
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix unique to this test, ``test:<test name>-<random>:``. Keys under it
    are deleted when the test ends."""
    prefix = f"test:{unique_name(request.node.name)}:"
    yield prefix
    if KEEP_TEST_RESOURCES:
        return
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
