"""Creating the worker's topics: the two inputs and the dead-letter topic.

Run before a worker (or the load generator) starts; the CLIs import it from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamer.config import Settings
from streamer.pipeline.dlq import DLQ_MAX_RECORD_BYTES


class TopicsNotCoPartitioned(RuntimeError):
    """The input topics exist with different partition counts: a track's uses and its
    TrackCreated would land in different partitions (they are joined per partition)."""


async def _partition_counts(admin: Any, topics: list[str], wait_s: float = 10.0
                            ) -> dict[str, int]:
    """Partitions per topic; a topic created a moment ago may show none until its
    metadata has spread (a first ``streamer load`` then divided by zero)."""
    deadline = time.monotonic() + wait_s
    while True:
        described = await admin.describe_topics(topics)
        counts = {item["topic"]: len(item["partitions"]) for item in described}
        if all(counts.get(topic) for topic in topics) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.1)


async def ensure_topics(settings: Settings) -> int:
    """Create missing input and dead-letter topics; return the inputs' partition count."""
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, settings.partitions, settings.replication_factor)
            for name in (settings.tracks_topic, settings.uses_topic)
            if name not in existing
        ]
        if settings.dlq_topic not in existing:
            # The DLQ takes any rejected record whole, even one over the input limit.
            wanted.append(NewTopic(settings.dlq_topic, settings.partitions,
                                   settings.replication_factor,
                                   topic_configs={"max.message.bytes": str(DLQ_MAX_RECORD_BYTES)}))
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent worker won
                await admin.create_topics(wanted)
        counts = await _partition_counts(admin, [settings.tracks_topic, settings.uses_topic])
        if len(set(counts.values())) != 1:
            raise TopicsNotCoPartitioned(
                f"{settings.tracks_topic} and {settings.uses_topic} must have the same number of "
                f"partitions (co-partitioned by track_id), found {counts}"
            )
        count: int = counts[settings.uses_topic]
        return count
    finally:
        await admin.close()
