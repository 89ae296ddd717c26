"""The places where we reach below Faust's public API, kept in one file.

Faust's own ``Consumer._commit`` crashes the consumer on any commit error; ours is
best effort (Redis holds the offsets that count), so it calls aiokafka's commit in
the consumer's thread and lets the caller ignore failures.

Faust's ``Consumer.seek`` calls aiokafka's ``seek`` from the app's thread while the
consumer thread may be inside ``fetched_records`` on the same fetcher: aiokafka is not
thread-safe and that race crashes the worker (``KeyError`` in ``fetched_records``,
found by tests/faults). ``seek_offset`` runs the seek in the consumer's thread.

After every assignment Faust's recovery seeks the partitions to the group's committed
offsets and only then resumes fetching. ``resume_from_stored_offsets`` makes that seek
go to the offsets stored in Redis instead, so no record is delivered from any other
position: a seek of our own after the flow resumed raced Faust's fetch loop, which
re-raised its read offset past the rewound records and skipped them (tests/integration,
commits running ahead of Redis).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka.structs import OffsetAndMetadata, TopicPartition

from streamer.pipeline.cancellation import cancelling

log = logging.getLogger(__name__)

StoredPositions = Callable[[set[Any], int], Awaitable[Mapping[Any, int]]]
"""``(assignment, its rebalance generation) -> {TP: next offset}``."""


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


def tune_fetches(faust_consumer: Any, min_bytes: int, max_wait_ms: int) -> None:
    """Set the fetch requests' minimum bytes and maximum wait, which Faust does not pass
    to aiokafka (it fixes the wait at 1.5 s). Plain integers the fetcher reads when it
    builds its next request, so setting them from this thread is safe."""
    fetcher = faust_consumer._thread._ensure_consumer()._fetcher
    for name, value in (("_fetch_min_bytes", min_bytes), ("_fetch_max_wait_ms", max_wait_ms)):
        if not isinstance(getattr(fetcher, name, None), int):
            raise RuntimeError(f"aiokafka's Fetcher has no {name} any more: "
                               "streamer/pipeline/faust_compat.py needs updating")
        setattr(fetcher, name, value)


async def seek_offset(faust_consumer: Any, topic: str, partition: int, offset: int) -> None:
    """Move the fetch position of ``topic``/``partition`` to ``offset``; raises on failure.

    Like Faust's ``Consumer.seek``, but the aiokafka call runs in the consumer's thread.
    Faust's read offset is reset too, or it would drop re-read records below it.
    """
    thread = faust_consumer._thread
    tp = TopicPartition(topic, partition)
    fence = getattr(faust_consumer, _FENCE, None)
    if fence is not None:
        fence.rewound(tp, offset)  # before the seek is queued: see fence_rewinds

    def seek_in_consumer_thread() -> None:
        thread._ensure_consumer().seek(tp, offset)

    await thread.call_thread(seek_in_consumer_thread)
    faust_consumer._read_offset[tp] = offset if offset else None


_FENCE = "_streamer_rewind_fence"


class RewindFence:
    """Which partitions ``seek_offset`` rewound, and when (a count of rewinds)."""

    def __init__(self) -> None:
        self.rewinds = 0
        self.last: dict[Any, tuple[int, int]] = {}  # TP -> (rewinds then, offset)

    def rewound(self, tp: Any, offset: int) -> None:
        self.rewinds += 1
        self.last[tp] = (self.rewinds, offset)

    def since(self, tp: Any, rewinds: int) -> int | None:
        """The offset ``tp`` was rewound to after the ``rewinds``-th rewind; None if not."""
        last = self.last.get(tp)
        return last[1] if last is not None and last[0] > rewinds else None


def fence_rewinds(faust_consumer: Any) -> None:
    """Keep Faust's own drain loop from undoing a rewind (``STREAMER_DIRECT_DELIVERY=0``).

    Faust's drain loop raises its read offset to each record once it is in the stream
    buffer. A rewind outside a rebalance (``seek_offset``: a refused flush, Redis lost
    writes) can come while the loop is in the middle of a fetched batch, waiting for
    room in a full buffer; the record it was delivering and the rest of the batch then
    raised the read offset past the rewound records, which it skipped as stale: the
    partition stalled (tests/unit/test_rewind_agent_delivery.py). So after each record
    of a partition rewound since its batch was asked for, the read offset goes back to
    the rewind. The batch's records still reach the worker, which drops those fetched
    before the rewind until the rewound ones come (``PipelineWorker._expect_rewind``):
    a fetch that was waiting when the seek ran returns records read after it, from the
    rewound position, and skipping those would lose them. A batch asked for after the
    rewind needs nothing: the seek is queued to the consumer thread before its fetch,
    and aiokafka drops what it had fetched for the old position.
    (Direct delivery has its own answer: the worker declines those records, and
    ``deliver_directly`` leaves the read offset alone for them.)
    """
    fence = RewindFence()
    setattr(faust_consumer, _FENCE, fence)
    getmany = faust_consumer.getmany

    async def getmany_fenced(timeout: float) -> Any:
        asked_after = fence.rewinds
        async for tp, message in getmany(timeout=timeout):
            yield tp, message
            rewound_to = fence.since(tp, asked_after)
            if rewound_to is not None:  # the loop set its read offset to this record's
                faust_consumer._read_offset[tp] = rewound_to if rewound_to else None

    faust_consumer.getmany = getmany_fenced


def resume_from_stored_offsets(faust_consumer: Any, stored_positions: StoredPositions) -> None:
    """Make Faust's post-rebalance seek use ``stored_positions(assignment)`` where it has one.

    ``stored_positions`` gets the assigned topic partitions with the generation they
    were assigned in, and returns ``{TP: next offset}`` for those whose position is kept
    elsewhere (claiming them first); the others keep Faust's committed-offset seek.
    """
    committed_seek = faust_consumer.seek_to_committed
    thread = faust_consumer._thread
    app = faust_consumer.app

    async def seek_to_stored() -> Mapping[Any, int]:
        # The assignment and its generation are read together, before any await. Faust
        # checks the generation before it seeks, but a revocation can begin after that
        # check (the generation changes only when the next assignment arrives), so the
        # worker compares it with the generation it last revoked.
        generation = app.consumer_generation_id
        claimed = asyncio.ensure_future(
            stored_positions(set(faust_consumer.assignment()), generation))
        positions = dict(await committed_seek())
        stored = await claimed

        def seek_in_consumer_thread() -> None:
            consumer = thread._ensure_consumer()
            for tp, offset in stored.items():
                consumer.seek(TopicPartition(tp.topic, tp.partition), offset)

        if stored:
            await thread.call_thread(seek_in_consumer_thread)
        positions.update(stored)  # Faust sets its read offsets from these
        return positions

    faust_consumer.seek_to_committed = seek_to_stored


def highwater(faust_consumer: Any, topic: str, partition: int) -> int | None:
    """The partition's end offset from the last fetch; None if unknown or not assigned.

    aiokafka asserts the partition is assigned, and a rebalance can take it away between
    any two awaits: a flush timer that asked anyway crashed the worker (tests/faults).
    """
    tp = TopicPartition(topic, partition)
    if tp not in faust_consumer.assignment():
        return None
    try:
        end: int | None = faust_consumer.highwater(tp)
        return end
    except AssertionError:
        return None


# Returns False for a record it dropped to see again after a rewind (see drain below);
# True or None: taken.
RecordHandler = Callable[[str, int, int, "bytes | None"], Awaitable["bool | None"]]

# The drain loop lets other tasks (flush loop, web server, rebalance signals) run at
# least this often; a batch record takes well under it, a single-event one a small
# fraction of it (docs/BENCHMARKS.md).
_YIELD_EVERY_S = 0.005


class FetchLoop:
    """The running fetch loop of direct delivery, for the stall watchdog."""

    task: asyncio.Task[None] | None = None
    fetches = 0  # fetch rounds begun: a loop that goes on fetching is not stuck


def deliver_directly(faust_consumer: Any, topics: set[str],
                     handle: RecordHandler) -> FetchLoop:
    """Hand records of ``topics`` from Faust's fetch loop straight to ``handle``.

    Faust's drain loop wraps every record in ``wait_first(callback(message), ...)``
    (four tasks and an ``asyncio.wait``), then a conductor, a queue and the stream's
    Event: most of a single-event record's cost (docs/BENCHMARKS.md).
    This loop keeps Faust's ``getmany`` (assignment, flow control, generation checks,
    read offsets) and replaces only the per-record dispatch for our input topics.
    Records of other topics take Faust's own path. The fetch position is Faust's, so
    the resume-from-Redis argument (docs/ARCHITECTURE.md) is unchanged; the records
    simply skip the stream buffer, which Faust clears on revocation anyway.
    """
    consumer = faust_consumer
    fetch_loop = FetchLoop()

    async def drain(fetcher: Any) -> None:
        fetch_loop.task = asyncio.current_task()
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = consumer._read_offset
        callback = consumer.callback
        monotonic = time.monotonic
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                fetch_loop.fetches += 1
                await asyncio.sleep(0)
                if consumer.should_stop:
                    break
                yielded = monotonic()
                async for tp, message in consumer.getmany(timeout=1.0):
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # below Faust's read offset: a stale prefetch
                    taken: bool | None = True
                    if tp.topic in topics:
                        try:
                            taken = await handle(tp.topic, tp.partition, offset, message.value)
                        except asyncio.CancelledError:
                            if cancelling():
                                raise
                            # Faust's fetcher would end quietly on this, and the
                            # worker would stay up without counting: crash loudly.
                            raise RuntimeError(
                                f"handling {tp.topic}/{tp.partition}@{offset} was "
                                "cancelled from inside") from None
                    else:
                        await consumer.wait_first(callback(message),
                                                  consumer.suspend_flow.wait())
                    # A record the worker dropped because its partition was rewound
                    # (a refused flush: Redis lost writes) comes again after the rewind;
                    # raising the read offset to it would skip the rewound records.
                    if taken is not False:
                        read_offset[tp] = offset
                    if monotonic() - yielded > _YIELD_EVERY_S:
                        await asyncio.sleep(0)
                        yielded = monotonic()
        except consumer.consumer_stopped_errors:
            if consumer.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if consumer.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("direct delivery stopped: %r", exc)
            raise

    consumer._drain_messages = drain
    return fetch_loop
