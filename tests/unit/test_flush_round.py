"""PipelineWorker.flush_round: each owned partition once per interval, spread evenly.

End-to-end latency is the wait for an event's partition's flush plus that flush; the
round must neither skip a partition nor bunch them (pure unit test: the flushes are
recorded, time is a fake clock that only the flushes and the waits move, so the waits
are exact).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.worker import PipelineWorker


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class RecordingWorker(PipelineWorker):
    def __init__(self, owned: Iterable[int], flush_s: float = 0.0) -> None:
        self.fake_clock = FakeClock()
        super().__init__(Settings(), object(), Metrics(), clock=self.fake_clock)  # type: ignore[arg-type]
        self.claims.states.update({partition: object() for partition in owned})  # type: ignore[misc]
        self.flush_s = flush_s
        self.flushed: list[list[int]] = []
        self.flushed_at: list[float] = []
        self.waits: list[float] = []
        self.commits: list[dict[tuple[str, int], int]] = []

    async def flush_partitions(self, partitions: Iterable[int],
                               commit: bool = True) -> dict[tuple[str, int], int]:
        assert not commit, "the round commits once, at its end"
        due = list(partitions)
        self.flushed.append(due)
        self.flushed_at.append(self.fake_clock.now)
        self.fake_clock.now += self.flush_s  # a flush that takes this long
        return {("uses", partition): 100 + partition for partition in due}

    async def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.commits.append(offsets)

    async def _repair_after_failover(self) -> None:
        """No Redis here: the failover check is tests/unit/test_catalog_repair.py's."""

    async def record_wait(self, seconds: float) -> Any:
        self.waits.append(seconds)
        self.fake_clock.now += seconds


async def test_each_owned_partition_is_flushed_once_in_its_own_share_of_the_interval() -> None:
    worker = RecordingWorker([5, 0, 2, 9])
    await worker.flush_round(1.0, worker.record_wait)
    assert worker.flushed == [[0], [2], [5], [9]]
    assert worker.commits == [{("uses", 0): 100, ("uses", 2): 102, ("uses", 5): 105,
                               ("uses", 9): 109}]
    assert worker.waits == [0.25] * 4
    # Start to start: one share apart, the round one interval long.
    assert [at - 1_000.0 for at in worker.flushed_at] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert worker.fake_clock.now == pytest.approx(1_001.0)


async def test_a_slow_flush_shortens_the_waits_that_follow_it() -> None:
    worker = RecordingWorker([0, 1], flush_s=0.3)
    await worker.flush_round(1.0, worker.record_wait)
    assert worker.flushed == [[0], [1]]
    assert worker.waits == pytest.approx([0.2, 0.2])  # 0.5 - 0.3
    assert worker.fake_clock.now == pytest.approx(1_001.0)

    overrun = RecordingWorker([0, 1], flush_s=0.6)
    await overrun.flush_round(1.0, overrun.record_wait)
    assert overrun.waits == [0.0, 0.0]
    assert overrun.fake_clock.now == pytest.approx(1_001.2)  # no wait makes up for it


async def test_a_round_does_not_wait_for_time_it_did_not_spend() -> None:
    """The wait counts from the tick's start: time passing elsewhere (another task's
    flush) before this tick's flush also shortens it."""
    worker = RecordingWorker([0, 1, 2, 3])
    flush = worker.flush_partitions

    async def flush_after_a_pause(partitions: Iterable[int],
                                  commit: bool = True) -> dict[tuple[str, int], int]:
        worker.fake_clock.now += 0.1
        return await flush(partitions, commit)

    worker.flush_partitions = flush_after_a_pause  # type: ignore[method-assign]
    await worker.flush_round(2.0, worker.record_wait)
    assert worker.waits == pytest.approx([0.4] * 4)


@pytest.mark.parametrize("interval", [0.5, 2.0])
async def test_with_no_partition_a_round_still_waits_one_interval(interval: float) -> None:
    worker = RecordingWorker([])
    await worker.flush_round(interval, worker.record_wait)
    assert worker.flushed == [[]]  # metrics and the idle heartbeat still happen
    assert worker.waits == [interval]
