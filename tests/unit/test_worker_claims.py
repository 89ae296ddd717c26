"""PipelineWorker.handle while a partition's claim is in flight (pure unit test).

With direct delivery, handle() runs inside Faust's fetch loop: an exception or a
cancellation escaping it ends that loop for good, and the worker stays up without
counting. The real Redis claim is covered in tests/integration and tests/faults.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.worker import PipelineWorker


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class BlockedStore:
    """A Redis store whose claims never answer, as while Redis or the network stalls."""

    def __init__(self) -> None:
        self.claims_started = asyncio.Event()

    async def claim(self, partition: int, owner: str) -> Any:
        self.claims_started.set()
        await asyncio.Event().wait()


def _worker() -> tuple[PipelineWorker, BlockedStore, Settings]:
    settings = Settings()
    store = BlockedStore()
    return PipelineWorker(settings, store, Metrics()), store, settings  # type: ignore[arg-type]


async def test_a_record_waiting_for_a_claim_that_is_revoked_is_skipped_not_raised() -> None:
    worker, store, settings = _worker()
    assignment = [TP(settings.uses_topic, 2), TP(settings.tracks_topic, 2)]
    assigning = asyncio.ensure_future(worker.on_assigned(assignment))
    await store.claims_started.wait()

    handling = asyncio.ensure_future(worker.handle(settings.uses_topic, 2, 0, b"{}"))
    await asyncio.sleep(0.01)
    assert not handling.done(), "the record waits for its partition's claim"

    await worker.on_revoked(assignment)  # cancels the claim in flight
    await asyncio.wait_for(handling, 1)  # returns: the next owner counts the record
    assert handling.exception() is None
    assert worker.states == {}
    await asyncio.wait_for(assigning, 1)


async def test_cancelling_the_fetch_loop_itself_still_cancels_handle() -> None:
    worker, store, settings = _worker()
    assigning = asyncio.ensure_future(worker.on_assigned([TP(settings.uses_topic, 0)]))
    await store.claims_started.wait()

    handling = asyncio.ensure_future(worker.handle(settings.uses_topic, 0, 0, b"{}"))
    await asyncio.sleep(0.01)
    handling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handling
    assert 0 in worker._claims, "the shielded claim goes on for the next record"
    assigning.cancel()
    worker._claims[0].cancel()
