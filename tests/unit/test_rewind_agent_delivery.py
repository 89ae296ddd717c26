"""A rewind outside a rebalance must not be undone by Faust's own delivery either.

With ``STREAMER_DIRECT_DELIVERY=0`` records reach the worker through Faust's drain loop,
its conductor, a stream buffer and the app's agent (pipeline/app.py). The drain loop
sets its read offset to a record's once the record is in the stream buffer. When a
refused flush (Redis lost writes) rewinds the partition while the drain loop is in the
middle of a fetched batch (waiting for room in a full buffer: any backlog), the rest of
that batch used to raise the read offset past the rewound records, and Faust dropped
them as below its read offset: the worker waited for them forever (the partition
stalled), as it did with direct delivery (tests/unit/test_rewind_read_offset.py).
Without ``fence_rewinds`` the ``mid_batch`` case stalls at offset 3 with Faust's read
offset at 59; skipping the rest of a batch asked for before the rewind instead (a first
version of the fix) lost the rewound records a waiting fetch returned (``fetch_waiting``).

The code under test is real: Faust's consumer (drain loop, ``getmany``, read offsets),
conductor and stream, the agent of ``create_app``, the worker's record path and its
recovery from a refused flush (re-claim, ``seek_offset``). Stood in: Kafka (a log read
in batches from a position that a seek moves, as aiokafka does in the consumer thread)
and Redis's answers (a flush refused once, a claim naming the offset Redis kept).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from faust.types import TP

from streamer.config import Settings
from streamer.pipeline.app import create_app
from streamer.pipeline.faust_compat import fence_rewinds
from streamer.state.store import ClaimedPartition, FlushRefused

RECORDS = 60
BATCH = 20  # records a fetch returns
BUFFER = 4  # Faust's stream buffer: the drain loop waits for room mid-batch
KEPT_BY_REDIS = 3  # Redis lost the flush after offset 3


@dataclass
class Record:
    """A fetched record as Faust's aiokafka consumer reads it."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes = b"track-rewind"
    timestamp: int = 0
    timestamp_type: int = 0
    headers: list[Any] = field(default_factory=list)
    checksum: None = None
    serialized_key_size: int = 12
    serialized_value_size: int = 0


class KafkaPartition:
    """Stands in for Kafka and Faust's consumer thread: records fetched in batches from a
    position; a seek moves the position (aiokafka drops what it fetched for the old one)."""

    def __init__(self, tp: TP, values: list[bytes]) -> None:
        self.tp = tp
        self.records = [Record(tp.topic, tp.partition, offset, value)
                        for offset, value in enumerate(values)]
        self.position = 0
        self.seeks: list[int] = []
        self.waiting = False  # a fetch is waiting for records past the end

    async def wait_next_records(self, timeout: float) -> tuple[dict[TP, list[Record]],
                                                                 set[TP]]:
        """What a fetch returns; at the end it waits up to ``timeout`` for records (a
        seek meanwhile makes the rewound ones arrive, as aiokafka's next fetch does)."""
        deadline = time.monotonic() + timeout
        self.waiting = self.position >= len(self.records)
        while self.position >= len(self.records) and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        self.waiting = False
        batch = self.records[self.position:self.position + BATCH]
        self.position += len(batch)
        return ({self.tp: batch} if batch else {}), {self.tp}

    # Faust's consumer thread (``faust_consumer._thread``) and its aiokafka consumer.
    async def call_thread(self, fun: Any, *args: Any) -> Any:
        await asyncio.sleep(0)  # the hop to the consumer thread and back
        return fun(*args)

    def _ensure_consumer(self) -> KafkaPartition:
        return self

    def seek(self, tp: Any, offset: int) -> None:
        if (tp.topic, tp.partition) == tuple(self.tp):
            self.position = offset
            self.seeks.append(offset)

    def assignment(self) -> set[TP]:
        return {self.tp}

    def highwater(self, tp: TP) -> int:
        return len(self.records)


class RedisThatLostAFlush:
    """Redis's answers to the worker: the partition claimed at offset 0, then a flush
    refused and a re-claim at ``KEPT_BY_REDIS`` (a failover lost the flush after it)."""

    def __init__(self) -> None:
        self.offsets = {"u": 0, "t": 0}
        self.owners: list[str] = []

    async def claim(self, partition: int, owner: str) -> ClaimedPartition:
        self.owners.append(owner)
        return ClaimedPartition(seq=0, offsets=dict(self.offsets), watermarks={})

    async def owner(self, partition: int) -> str:
        return self.owners[-1]

    async def load_pending(self, partition: int) -> dict[bytes, bytes]:
        return {}

    async def load_dedupe(self, partition: int, code: str, buckets: Any) -> dict[int, bytes]:
        return {}

    async def load_catalog_copy(self, partition: int, buckets: Any) -> dict[str, bytes]:
        return {}  # no catalog writes to repair

    async def failover_marker(self) -> None:
        return None  # no failover to follow, no copy to trim


def _uses() -> list[bytes]:
    start = int(time.time() * 1000) - 60_000
    return [orjson.dumps({"event_id": f"rewind-agent-{offset}", "track_id": "track-rewind",
                          "occurred_at": start + offset, "user_id": "u", "use": "play",
                          "country": "DE"})
            for offset in range(RECORDS)]


@pytest.mark.parametrize("when", ["mid_batch", "fetch_waiting"])
async def test_a_rewind_leaves_fausts_read_offset_at_the_rewound_records(
        tmp_path: Path, when: str) -> None:
    """``mid_batch``: a backlog, the drain loop waits for room in the stream buffer in the
    middle of a fetched batch. ``fetch_waiting``: the worker has caught up, a fetch waits
    for records when the seek runs and then returns the rewound ones."""
    settings = Settings(direct_delivery=False, data_dir=str(tmp_path))
    app = create_app(settings)
    app.conf.stream_buffer_maxsize = BUFFER
    worker = app.streamer_worker  # type: ignore[attr-defined]
    redis = RedisThatLostAFlush()
    worker.claims.store = redis
    worker.catalog_repair.store = redis  # the claim's catalog repair reads the same Redis
    uses = TP(settings.uses_topic, 0)
    kafka = KafkaPartition(uses, _uses())
    consumer = app.consumer
    consumer._wait_next_records = kafka.wait_next_records
    consumer._thread = kafka
    worker._consumer = consumer
    fence_rewinds(consumer)  # what create_app's start-up does without direct delivery

    await worker.on_assigned([uses, TP(settings.tracks_topic, 0)])
    app.flow_control.resume()
    agent = next(iter(app.agents.values()))
    await agent.start()
    await app.topics.on_partitions_assigned({uses})
    fetcher_stopped = asyncio.Event()
    fetcher = type("Fetcher", (), {"_stopped": fetcher_stopped})()
    drain = asyncio.ensure_future(consumer._drain_messages(fetcher))
    try:
        if when == "mid_batch":
            # The worker counts while the drain loop waits for room in the buffer, in the
            # middle of the first batch.
            while worker.states[0].next_offset["u"] < BATCH // 2:
                await asyncio.sleep(0)
            in_flight = consumer._read_offset[uses]
            assert in_flight is not None and in_flight < BATCH - 1, "the rewind is mid-batch"
        else:
            while worker.states[0].next_offset["u"] < RECORDS or not kafka.waiting:
                await asyncio.sleep(0.001)

        # A flush that Redis refuses: it lost everything after offset KEPT_BY_REDIS.
        redis.offsets["u"] = KEPT_BY_REDIS

        async def refused(state: Any) -> None:
            raise FlushRefused(state.partition)

        worker.flusher.flush = refused
        await worker.flush_partitions([0])
        assert kafka.seeks == [KEPT_BY_REDIS]

        # Every record from the rewind on comes again and is counted once, none skipped.
        state = worker.states[0]
        deadline = time.monotonic() + 5
        while state.next_offset["u"] < RECORDS and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert state.next_offset["u"] == RECORDS, (
            f"stalled at {state.next_offset['u']}: Faust's read offset is "
            f"{consumer._read_offset[uses]}, above the rewound records")
        assert state.unflushed_events == RECORDS - KEPT_BY_REDIS
    finally:
        fetcher_stopped.set()
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
        await agent.stop()
