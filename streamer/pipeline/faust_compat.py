"""The places where we reach below Faust's public API, kept in one file.

Faust's own ``Consumer._commit`` crashes the consumer on any commit error; ours is
best effort (Redis holds the offsets that count), so it calls aiokafka's commit in
the consumer's thread and lets the caller ignore failures.

Faust's ``Consumer.seek`` calls aiokafka's ``seek`` from the app's thread while the
consumer thread may be inside ``fetched_records`` on the same fetcher: aiokafka is not
thread-safe and that race crashes the worker (``KeyError`` in ``fetched_records``,
found by tests/faults). ``seek_offset`` runs the seek in the consumer's thread.
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


async def seek_offset(faust_consumer: Any, topic: str, partition: int, offset: int) -> None:
    """Move the fetch position of ``topic``/``partition`` to ``offset``; raises on failure.

    Like Faust's ``Consumer.seek``, but the aiokafka call runs in the consumer's thread.
    Faust's read offset is reset too, or it would drop re-read records below it.
    """
    thread = faust_consumer._thread
    tp = TopicPartition(topic, partition)

    def seek_in_consumer_thread() -> None:
        thread._ensure_consumer().seek(tp, offset)

    await thread.call_thread(seek_in_consumer_thread)
    faust_consumer._read_offset[tp] = offset if offset else None
