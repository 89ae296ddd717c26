"""DeliveryWatch: a worker that stays up but gets no records while they wait."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streamer.pipeline.faust_compat import FetchLoop
from streamer.pipeline.watchdog import DeliveryWatch


def test_lagging_without_progress_for_the_limit_is_a_stall_reported_once(
        caplog: pytest.LogCaptureFixture) -> None:
    watch = DeliveryWatch(stall_after_s=60)
    with caplog.at_level(logging.ERROR, "streamer.pipeline.watchdog"):
        watch.observe(100, lagging=True, rebalancing=False, now=0)
        watch.observe(100, lagging=True, rebalancing=False, now=1)
        assert not watch.stalled(59)
        watch.observe(100, lagging=True, rebalancing=False, now=61)
        assert watch.stalled(61) and watch.stalled_for(61) == 61
        watch.observe(100, lagging=True, rebalancing=False, now=90)
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and "no record delivered for 61 s" in errors[0], errors
    assert "Faust's own" in errors[0]


@pytest.mark.parametrize("change", ["progress", "caught_up", "rebalancing"])
def test_progress_a_caught_up_input_or_a_rebalance_is_no_stall(change: str) -> None:
    watch = DeliveryWatch(stall_after_s=60)
    watch.observe(100, lagging=True, rebalancing=False, now=0)
    watch.observe(100, lagging=True, rebalancing=False, now=50)
    watch.observe(101 if change == "progress" else 100, lagging=change != "caught_up",
                  rebalancing=change == "rebalancing", now=55)
    watch.observe(101 if change == "progress" else 100, lagging=True, rebalancing=False,
                  now=100)
    assert not watch.stalled(100) and watch.stalled_for(100) == 45, "quiet again since 55"


def test_a_stall_clears_when_records_flow_again() -> None:
    watch = DeliveryWatch(stall_after_s=10)
    watch.observe(5, lagging=True, rebalancing=False, now=0)
    watch.observe(5, lagging=True, rebalancing=False, now=20)
    assert watch.stalled(20)
    watch.observe(6, lagging=True, rebalancing=False, now=21)
    assert not watch.stalled(21) and watch.stalled_for(21) == 0


async def test_the_report_shows_where_a_stuck_fetch_loop_waits() -> None:
    async def fetch_loop_stuck_in_a_claim() -> None:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(fetch_loop_stuck_in_a_claim())
    await asyncio.sleep(0)
    watch = DeliveryWatch(stall_after_s=1)
    watch.fetch_loop = FetchLoop()
    watch.fetch_loop.task = task
    assert "fetch_loop_stuck_in_a_claim" in watch.describe_fetch_loop()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watch.describe_fetch_loop() == "ended: cancelled"


async def test_the_report_names_the_error_that_ended_the_fetch_loop() -> None:
    async def fails() -> None:
        raise RuntimeError("handling sounds.used/3@1 was cancelled from inside")

    task = asyncio.ensure_future(fails())
    await asyncio.gather(task, return_exceptions=True)
    watch = DeliveryWatch(stall_after_s=1)
    watch.fetch_loop = FetchLoop()
    watch.fetch_loop.task = task
    assert "cancelled from inside" in watch.describe_fetch_loop()
