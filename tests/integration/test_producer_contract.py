"""The producer contract for non-Python producers (docs/OPERATIONS.md, "Producers in
other languages"): a record keyed by the UTF-8 track id, sent by librdkafka with
``partitioner=murmur2_random``, lands in the partition the Python SDK
(streamer.producer.UsageProducer) picks for that track; librdkafka's default
partitioner does not, which is why the setting is part of the contract.

librdkafka (through confluent-kafka) is an implementation independent of aiokafka's,
so agreement here is not the SDK agreeing with itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import Producer

from streamer.config import KafkaSettings
from streamer.producer import UsageProducer
from tests.conftest import MakeTopic

TRACK_IDS = [f"T{n}" for n in range(300)] + [
    "ISRC:USRC17607839", "track.with.dots", "a", "Z" * 128, "0", "-_-", "tr:ack-9.1"]


def librdkafka_partitions(bootstrap: str, topic: str, partitioner: str | None
                          ) -> dict[str, int]:
    """Where librdkafka put one record per track id (from its delivery reports)."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "acks": "all"}
    if partitioner is not None:
        config["partitioner"] = partitioner
    producer = Producer(config)
    landed: dict[str, int] = {}
    errors: list[Any] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            landed[message.key().decode("utf-8")] = message.partition()

    for track_id in TRACK_IDS:
        producer.produce(topic, key=track_id.encode("utf-8"), value=b"[]",
                         on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:3]
    return landed


async def test_librdkafka_murmur2_random_lands_where_the_sdk_puts_it(
        kafka_bootstrap: str, make_topic: MakeTopic) -> None:
    topic = await make_topic("contract-uses", partitions=8)
    sdk = UsageProducer(KafkaSettings(kafka_bootstrap), uses_topic=topic)
    await sdk.start()
    try:
        expected = {track_id: sdk.partition_for(track_id) for track_id in TRACK_IDS}
    finally:
        await sdk.stop()
    assert len(set(expected.values())) == 8  # the ids spread over every partition

    landed = await asyncio.to_thread(librdkafka_partitions, kafka_bootstrap, topic,
                                     "murmur2_random")
    assert landed == expected

    default = await asyncio.to_thread(librdkafka_partitions, kafka_bootstrap, topic, None)
    wrong = sum(default[t] != expected[t] for t in TRACK_IDS)
    assert wrong > len(TRACK_IDS) // 2, "librdkafka's default would have to be set too"
