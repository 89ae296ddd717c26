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
    assert 0 in worker.claims.in_flight, "the shielded claim goes on for the next record"
    assigning.cancel()
    worker.claims.in_flight[0].cancel()


@dataclass
class Claimed:
    seq: int = 0
    offsets: dict[str, int] | None = None
    watermarks: dict[str, int] | None = None
    closed_before: int = 0

    def __post_init__(self) -> None:
        self.offsets = self.offsets or {}
        self.watermarks = self.watermarks or {}


class GatedStore:
    """Claims that answer when the test opens their gate (one gate per claim, in order).

    ``swallow_cancel``: a claim goes on to answer after it is cancelled, as a client
    that finishes its request before it notices.
    """

    def __init__(self, swallow_cancel: bool = False) -> None:
        self.swallow_cancel = swallow_cancel
        self.gates: list[asyncio.Event] = []
        self.owners: list[tuple[int, str]] = []

    async def claim(self, partition: int, owner: str) -> Claimed:
        gate = asyncio.Event()
        self.gates.append(gate)
        self.owners.append((partition, owner))
        try:
            await gate.wait()
        except asyncio.CancelledError:
            if not self.swallow_cancel:
                raise
            await gate.wait()
        return Claimed()

    async def load_pending(self, partition: int) -> dict[bytes, bytes]:
        return {}

    async def load_dedupe(self, partition: int, code: str, buckets: Any) -> dict[int, bytes]:
        return {}

    async def load_catalog_copy(self, partition: int, buckets: Any) -> dict[str, bytes]:
        return {}  # no catalog writes to repair

    async def failover_marker(self) -> None:
        return None  # no failover to follow, no copy to trim


def _gated_worker(swallow_cancel: bool = False) -> tuple[PipelineWorker, GatedStore, Settings]:
    settings = Settings()
    store = GatedStore(swallow_cancel)
    worker = PipelineWorker(settings, store, Metrics())  # type: ignore[arg-type]
    return worker, store, settings


def _tps(settings: Settings, partitions: list[int]) -> set[TP]:
    return {TP(topic, p) for p in partitions
            for topic in (settings.uses_topic, settings.tracks_topic)}


async def _open_gates(store: GatedStore) -> None:
    for gate in store.gates:
        gate.set()
    await asyncio.sleep(0.01)


async def test_a_seek_for_a_revoked_generation_claims_nothing() -> None:
    """Faust's recovery can seek for generation 1 after generation 1 was revoked."""
    worker, store, settings = _gated_worker()
    resuming = asyncio.ensure_future(worker.stored_positions(_tps(settings, [0, 1, 2, 3]), 1))
    await asyncio.sleep(0.01)
    await _open_gates(store)
    assert set((await resuming).values()) == {0}
    await worker.on_assigned(_tps(settings, [0, 1, 2, 3]))
    assert set(worker.states) == {0, 1, 2, 3}

    await worker.on_revoked(_tps(settings, [0, 1, 2, 3]), generation=1)
    claims_before = len(store.owners)
    stale = worker.stored_positions(_tps(settings, [0, 1, 2, 3]), 1)
    assert await asyncio.wait_for(stale, 1) == {}
    assert len(store.owners) == claims_before, "a revoked generation starts no claim"
    assert worker.claims.assigned == set() and worker.states == {}

    # Generation 2 gives this worker partitions 2 and 3 only: it keeps no other.
    resuming = asyncio.ensure_future(worker.stored_positions(_tps(settings, [2, 3]), 2))
    await asyncio.sleep(0.01)
    await _open_gates(store)
    await resuming
    await worker.on_assigned(_tps(settings, [2, 3]))
    assert set(worker.states) == {2, 3}
    assert not worker.rebalancing


async def test_a_revoked_claim_that_answers_late_does_not_replace_the_new_one() -> None:
    worker, store, settings = _gated_worker(swallow_cancel=True)
    first = asyncio.ensure_future(worker.on_assigned(_tps(settings, [0])))
    await asyncio.sleep(0.01)
    await worker.on_revoked(_tps(settings, [0]), generation=1)  # its cancel is swallowed
    second = asyncio.ensure_future(worker.on_assigned(_tps(settings, [0])))
    await asyncio.sleep(0.01)
    assert [p for p, _ in store.owners] == [0, 0]
    store.gates[1].set()  # the new claim answers first, then the revoked one
    await asyncio.sleep(0.01)
    store.gates[0].set()
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert worker.states[0].owner == store.owners[1][1], "the newer claim's owner token"
    assert worker.claims.in_flight == {}


async def test_health_says_unhealthy_until_assigned_and_while_a_rebalance_is_in_flight() -> None:
    """/v1/health answers 503 during a rebalance (readiness does not: test_probes)."""
    worker, store, settings = _gated_worker()
    assert not worker.health()[0], "no assignment yet"
    first = asyncio.ensure_future(worker.on_assigned(_tps(settings, [0, 1])))
    await asyncio.sleep(0.01)
    await _open_gates(store)
    await asyncio.wait_for(first, 1)
    assert worker.health()[0]

    await worker.on_revoked(_tps(settings, [0, 1]), generation=1)
    assert not worker.health()[0], "revoked, not yet assigned again"
    second = asyncio.ensure_future(worker.on_assigned(_tps(settings, [1])))
    await asyncio.sleep(0.01)
    assert worker.rebalancing and not worker.health()[0], "claim in flight"
    await _open_gates(store)
    await asyncio.wait_for(second, 1)
    assert not worker.rebalancing and worker.health()[0]
