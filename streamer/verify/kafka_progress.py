"""Waiting until the workers have counted (and flushed to Redis) everything in Kafka.

A worker stores, per input partition N, the next offset to count of each input topic in
the hash ``{prefix:N}:meta`` (``off:u`` for sounds.used, ``off:t`` for tracks.created),
in the same atomic write as the counters. When those equal the topics' end offsets,
every record is counted, its rejections are in the dead-letter topic, and pending
attributions resolvable by those records are resolved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.exceptions import RedisError

from streamer.verify.redis_counters import open_redis

# Position in the ``topics`` list -> the code the worker uses in its meta hash.
_TOPIC_CODES = ("u", "t")


def _topic_codes(topics: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """``{code: topic}`` from ``[uses_topic, tracks_topic]`` or ``{"u": .., "t": ..}``."""
    if isinstance(topics, Mapping):
        unknown = set(topics) - set(_TOPIC_CODES)
        if unknown:
            raise ValueError(f"topic codes must be 'u' and/or 't', got {sorted(unknown)}")
        return dict(topics)
    if isinstance(topics, str) or not 1 <= len(topics) <= 2:
        raise ValueError("topics must be [uses_topic] or [uses_topic, tracks_topic]")
    return dict(zip(_TOPIC_CODES, topics, strict=False))


def _consumer(kafka_bootstrap: str | Mapping[str, Any]) -> AIOKafkaConsumer:
    """A group-less consumer, used only to ask for end offsets."""
    kwargs: dict[str, Any] = (dict(kafka_bootstrap) if isinstance(kafka_bootstrap, Mapping)
                              else {"bootstrap_servers": kafka_bootstrap})
    return AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **kwargs)


async def end_offsets(kafka_bootstrap: str | Mapping[str, Any],
                      tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Current end offsets (the next offset to be written) of the given partitions."""
    consumer = _consumer(kafka_bootstrap)
    await consumer.start()
    try:
        wanted = [TopicPartition(topic, partition) for topic, partition in tps]
        ends = await consumer.end_offsets(wanted)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def wait_drained(
    kafka_bootstrap: str | Mapping[str, Any],
    redis: Any,
    key_prefix: str,
    topics: Sequence[str] | Mapping[str, str],
    partitions: int | Iterable[int],
    timeout_s: float,
    *,
    poll_s: float = 0.2,
) -> dict[int, dict[str, tuple[int, int]]]:
    """Wait until Redis has counted every partition up to Kafka's end offset.

    ``topics`` is ``[uses_topic, tracks_topic]`` (``off:u`` is checked against the
    first, ``off:t`` against the second; give one topic to check ``off:u`` only), or
    a mapping ``{"u": uses_topic, "t": tracks_topic}``. ``partitions`` is a count or
    the partition numbers. ``kafka_bootstrap`` is a bootstrap string or aiokafka
    connection options. ``redis`` is a client (redis.asyncio / RedisCluster) or a URL.

    Returns the final progress ``{partition: {code: (stored, end)}}``; raises
    TimeoutError naming every partition that is behind, with both numbers.
    """
    codes = _topic_codes(topics)
    numbers = list(range(partitions)) if isinstance(partitions, int) else sorted(partitions)
    own = isinstance(redis, str)
    client = open_redis(redis) if own else redis
    consumer = _consumer(kafka_bootstrap)
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    progress: dict[int, dict[str, tuple[int, int]]] = {}
    try:
        tps = {(code, p): TopicPartition(topic, p)
               for code, topic in codes.items() for p in numbers}
        while True:
            ends = await consumer.end_offsets(list(tps.values()))
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for p in numbers:
                        pipe.hmget("{" + key_prefix + f":{p}}}:meta",
                                   [f"off:{c}" for c in codes])
                    stored_rows = await pipe.execute()
            except RedisError:
                # A Redis stall (an AOF rewrite under fsync-always can take seconds) is
                # not a verdict: ask again until the deadline.
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(poll_s)
                continue
            progress = {}
            behind = False
            for p, row in zip(numbers, stored_rows, strict=True):
                progress[p] = {}
                for code, raw in zip(codes, row, strict=True):
                    stored = int(raw) if raw is not None else 0
                    end = ends[tps[(code, p)]]
                    progress[p][code] = (stored, end)
                    behind = behind or stored != end
            if not behind:
                return progress
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not drained after {timeout_s:.0f}s: " + _describe(
                    progress, codes))
            await asyncio.sleep(poll_s)
    finally:
        await consumer.stop()
        if own:
            await client.aclose()


def _describe(progress: dict[int, dict[str, tuple[int, int]]], codes: Mapping[str, str]) -> str:
    parts = []
    for p, per_code in sorted(progress.items()):
        for code, (stored, end) in per_code.items():
            mark = "" if stored == end else " BEHIND"
            parts.append(f"{codes[code]}[{p}] counted to {stored} of {end}{mark}")
    return "; ".join(parts)
