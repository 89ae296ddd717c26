"""A rewind outside a rebalance must not be undone by the rest of a fetched batch.

When Redis lost flushes (a crash with ``everysec``, a failover to a lagging replica) the
worker re-claims the partition and seeks back to the offset Redis stored, which also
puts Faust's read offset there. Records of the same partition still in the batch being
delivered are stale prefetches the worker drops until the rewound ones arrive; if the
fetch loop still raised its read offset to theirs, it then skipped the rewound records
as "below the read offset", and the partition stalled (or, had a later record ended the
resync, skipped a gap). Found by tests/faults/test_redis_failover.py (scenario 8, a
drain that never finished after the third failover).

Pure unit tests: a stand-in for Faust's consumer, and the worker's own handle().
"""

from __future__ import annotations

import orjson
from test_direct_delivery import USES, FakeFaustConsumer, FakeFetcher, Message

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.faust_compat import deliver_directly
from streamer.pipeline.worker import PipelineWorker
from streamer.state.partition import PartitionState


async def test_records_the_handler_declines_leave_fausts_read_offset_at_the_rewind() -> None:
    batch = [(USES, Message(offset, b"x")) for offset in range(10, 15)]
    consumer = FakeFaustConsumer([batch])
    handled: list[int] = []
    frontier: int | None = None
    rewound = False

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> bool:
        nonlocal frontier, rewound
        handled.append(offset)
        if offset == 12 and not rewound:
            rewound = True
            # Redis lost flushes: rewind to 8 (what worker._seek does), then drop what
            # was fetched before the rewind until offset 8 comes again.
            frontier = 13
            consumer._read_offset[USES] = 8
            consumer.fetches.append([(USES, Message(o, b"x")) for o in range(8, 15)])
            return False
        if frontier is not None and offset >= frontier:
            return False
        frontier = None if frontier is not None and offset < frontier else frontier
        return True

    deliver_directly(consumer, {USES.topic}, handle)
    await consumer._drain_messages(FakeFetcher())
    assert handled == [10, 11, 12, 13, 14, 8, 9, 10, 11, 12, 13, 14]
    assert consumer._read_offset[USES] == 14


def _use(offset: int) -> bytes:
    return orjson.dumps({"event_id": f"rewind-{offset}", "track_id": "trk-rewind",
                         "occurred_at": 1_700_000_000_000, "user_id": "u", "use": "play",
                         "country": "DE"})


async def test_worker_declines_stale_prefetches_while_a_rewind_is_pending() -> None:
    settings = Settings()
    worker = PipelineWorker(settings, None, Metrics())  # type: ignore[arg-type]
    state = PartitionState(0, "owner", 0, settings.dedupe_horizon_ms)
    state.next_offset.update({"u": 5, "t": 0})
    worker.states[0] = state
    worker.claims.assigned.add(0)
    worker._seen[("u", 0)] = 9  # delivered up to 8 before Redis was found behind
    worker._expect_rewind(state)

    assert await worker.handle(settings.uses_topic, 0, 9, _use(9)) is False
    assert await worker.handle(settings.uses_topic, 0, 5, _use(5)) is True  # the rewind
    assert await worker.handle(settings.uses_topic, 0, 6, _use(6)) is True
    assert state.next_offset["u"] == 7
