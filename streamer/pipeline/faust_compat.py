"""The two places where we reach below Faust's public API, kept in one file.

Faust's own ``Consumer._commit`` crashes the consumer on any commit error; ours is
best effort (Redis holds the offsets that count), so it calls aiokafka's commit in
the consumer's thread and lets the caller ignore failures.
"""

from __future__ import annotations

from typing import Any

from aiokafka.structs import OffsetAndMetadata, TopicPartition


async def commit_offsets(faust_consumer: Any, offsets: dict[tuple[str, int], int]) -> None:
    """Commit ``{(topic, partition): next_offset}`` for the group; raises on failure."""
    if not offsets:
        return
    thread = faust_consumer._thread
    assigned = {(tp.topic, tp.partition) for tp in faust_consumer.assignment()}
    wanted = {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "")
        for (topic, partition), offset in offsets.items()
        if (topic, partition) in assigned
    }
    if not wanted:
        return

    async def commit_in_consumer_thread() -> None:
        await thread._ensure_consumer().commit(wanted)

    await thread.call_thread(commit_in_consumer_thread)
