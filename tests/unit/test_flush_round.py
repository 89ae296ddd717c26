"""PipelineWorker.flush_round: each owned partition once per interval, spread evenly.

End-to-end latency is the wait for an event's partition's flush plus that flush; the
round must neither skip a partition nor bunch them (pure unit test: the flushes are
recorded, time is the real monotonic clock, the waits are recorded, not slept).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import pytest

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.worker import PipelineWorker


class RecordingWorker(PipelineWorker):
    def __init__(self, owned: Iterable[int], flush_s: float = 0.0) -> None:
        super().__init__(Settings(), object(), Metrics())  # type: ignore[arg-type]
        self.states = {partition: object() for partition in owned}  # type: ignore[misc]
        self.flush_s = flush_s
        self.flushed: list[list[int]] = []
        self.waits: list[float] = []
        self.commits: list[dict[tuple[str, int], int]] = []

    async def flush_partitions(self, partitions: Iterable[int],
                               commit: bool = True) -> dict[tuple[str, int], int]:
        assert not commit, "the round commits once, at its end"
        due = list(partitions)
        self.flushed.append(due)
        if self.flush_s:
            time.sleep(self.flush_s)  # a flush that takes this long
        return {("uses", partition): 100 + partition for partition in due}

    async def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.commits.append(offsets)

    async def record_wait(self, seconds: float) -> Any:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def test_each_owned_partition_is_flushed_once_in_its_own_share_of_the_interval() -> None:
    worker = RecordingWorker([5, 0, 2, 9])
    await worker.flush_round(1.0, worker.record_wait)
    assert worker.flushed == [[0], [2], [5], [9]]
    assert worker.commits == [{("uses", 0): 100, ("uses", 2): 102, ("uses", 5): 105,
                               ("uses", 9): 109}]
    assert len(worker.waits) == 4
    assert all(0.24 <= wait <= 0.25 for wait in worker.waits), worker.waits


async def test_a_slow_flush_shortens_the_waits_that_follow_it() -> None:
    worker = RecordingWorker([0, 1], flush_s=0.3)
    await worker.flush_round(1.0, worker.record_wait)
    assert worker.flushed == [[0], [1]]
    assert all(0.15 <= wait <= 0.2 for wait in worker.waits), worker.waits  # 0.5 - 0.3

    overrun = RecordingWorker([0, 1], flush_s=0.6)
    await overrun.flush_round(1.0, overrun.record_wait)
    assert overrun.waits == [0.0, 0.0]


@pytest.mark.parametrize("interval", [0.5, 2.0])
async def test_with_no_partition_a_round_still_waits_one_interval(interval: float) -> None:
    worker = RecordingWorker([])
    await worker.flush_round(interval, worker.record_wait)
    assert worker.flushed == [[]]  # metrics and the idle heartbeat still happen
    assert len(worker.waits) == 1 and interval - 0.01 <= worker.waits[0] <= interval
