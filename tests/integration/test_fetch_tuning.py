"""faust_compat.tune_fetches reaches a real aiokafka consumer's fetch requests.

Faust creates its consumer with a fixed 1.5 s fetch wait and Kafka's one-byte minimum;
the worker sets both on aiokafka's fetcher. Here the consumer starts with a 30 s wait,
then is tuned to a minimum no small record reaches and a 200 ms wait: the records
arrive long before 30 s only if the broker was sent the tuned wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamer.pipeline.faust_compat import tune_fetches

MakeTopic = Callable[..., Awaitable[str]]


async def test_tuned_fetch_wait_and_minimum_reach_the_broker(
        kafka_bootstrap: str, make_topic: MakeTopic) -> None:
    topic = await make_topic("fetch-tuning")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=30_000, fetch_min_bytes=1)
    await consumer.start()
    try:
        faust_consumer = SimpleNamespace(_thread=SimpleNamespace(
            _ensure_consumer=lambda: consumer))
        tune_fetches(faust_consumer, min_bytes=8 << 20, max_wait_ms=200)
        assert (consumer._fetcher._fetch_min_bytes,
                consumer._fetcher._fetch_max_wait_ms) == (8 << 20, 200)
        await consumer.getmany(timeout_ms=500)  # an empty fetch, sent with the new wait

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for n in range(3):
                await producer.send_and_wait(topic, f"record-{n}".encode())
        finally:
            await producer.stop()

        received: list[bytes] = []
        async with asyncio.timeout(10):  # far below the 30 s wait the consumer began with
            while len(received) < 3:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    received += [record.value for record in records]
        assert received == [b"record-0", b"record-1", b"record-2"]
    finally:
        await consumer.stop()
