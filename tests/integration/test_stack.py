"""The local stack works with the client libraries the project is built on.

These pin down the versions verified together: Apache Kafka 4.1.1 (KRaft), aiokafka
0.14, faust-streaming 0.15.3 and a Redis with AOF persistence, as started by
deploy/local/stack.sh (``make test`` does it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import faust
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

TIMEOUT = 60.0

MakeTopic = Callable[..., Awaitable[str]]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_kafka_round_trip_idempotent_producer_and_consumer_group(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, make_topic: MakeTopic
) -> None:
    topic = await make_topic("stack-roundtrip", partitions=2)
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(20)}

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()

    group = unique_name("stack-roundtrip-group")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(received) < len(sent):
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        received[record.key] = record.value
        await consumer.commit()
        assignment = consumer.assignment()
    finally:
        await consumer.stop()

    assert received == sent
    assert assignment == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
    # The group's committed offsets cover every record, as seen by the broker.
    offsets = await kafka_admin.list_consumer_group_offsets(group)
    assert sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic) == len(sent)


async def test_redis_round_trip_with_aof_persistence(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        key = f"{redis_prefix}counter"
        assert await client.incrby(key, 5) == 5
        assert await client.incrby(key, 7) == 12
        await client.hset(f"{redis_prefix}hash", mapping={"a": "1", "b": "2"})
        assert await client.hgetall(f"{redis_prefix}hash") == {b"a": b"1", b"b": b"2"}
        assert await client.get(key) == b"12"

        # The local stack (and docker-compose) run Redis with AOF, fsync at every write
        # (docs/ARCHITECTURE.md, exactly-once point 7).
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        assert await client.config_get("appendfsync") == {"appendfsync": "always"}
        persistence = await client.info("persistence")
        assert persistence["aof_enabled"] == 1
    finally:
        await client.aclose()


async def test_faust_app_joins_group_consumes_and_stops(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, make_topic: MakeTopic, tmp_path: Path
) -> None:
    # Faust ignores topics missing at start (auto-creation is off), so create it first.
    topic_name = await make_topic("stack-faust", partitions=1)
    app_id = unique_name("stack-faust-app")
    app = faust.App(
        app_id,
        broker=f"kafka://{kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=1,
        datadir=tmp_path / "faust-data",
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    # A table makes Faust create its changelog topic itself (CreateTopics from Faust).
    counts = app.Table("counts", default=int, partitions=1)
    consumed: asyncio.Future[tuple[bytes, bytes, int]] = asyncio.get_running_loop().create_future()

    @app.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            counts[event.key.decode()] += 1
            if not consumed.done():
                consumed.set_result((event.key, event.value, event.message.offset))

    await app.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(topic_name, b"play-1", key=b"track-42")
        finally:
            await producer.stop()

        assert await asyncio.wait_for(consumed, TIMEOUT) == (b"track-42", b"play-1", 0)
        assert counts["track-42"] == 1

        (response,) = await kafka_admin.describe_consumer_groups([app_id])
        (group,) = response.to_object()["groups"]
        assert (group["error_code"], group["state"]) == (0, "Stable")
        assert len(group["members"]) == 1
    finally:
        await asyncio.wait_for(app.stop(), TIMEOUT)

    # Stopping commits the consumed offset, and the changelog topic exists.
    offsets = await kafka_admin.list_consumer_group_offsets(app_id)
    assert offsets[_tp(topic_name)].offset == 1
    assert f"{app_id}-counts-changelog" in await kafka_admin.list_topics()


def _tp(topic: str, partition: int = 0) -> TopicPartition:
    return TopicPartition(topic, partition)
