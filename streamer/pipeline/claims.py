"""Which input partitions this worker holds: claims in Redis, rebalances from Faust.

Faust tells the worker what it holds (assignment and revocation signals, and
``stored_positions`` before it fetches after a rebalance). For each partition number
newly assigned, a claim takes it over in Redis with a fresh owner token and loads its
state (``PartitionState.load``); a revocation cancels the claims in flight and hands the
states back for a last flush (pipeline/worker.py). Partition N of both input topics is
one claim: they are co-partitioned and flushed together.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka.structs import TopicPartition
from redis.exceptions import RedisError

from streamer.metrics import Metrics
from streamer.pipeline.cancellation import cancelling
from streamer.state.partition import PartitionState
from streamer.state.store import RedisStore, retry_forever

log = logging.getLogger(__name__)


async def _claimed(claim: asyncio.Task[PartitionState]) -> PartitionState | None:
    """The claim's state; None if a revocation cancelled the claim.

    Shielded, so cancelling the waiter (the fetch loop, at shutdown) leaves the claim
    running; that cancellation still propagates, only the claim's own is absorbed.
    """
    try:
        return await asyncio.shield(claim)
    except asyncio.CancelledError:
        if cancelling():
            raise
        return None


class PartitionClaims:
    """The partitions assigned to this worker, their claims in flight and their states.

    ``on_claimed`` runs when a claim installs its state, before any record of it counts;
    ``repair`` (the partition number) before that, once Redis holds the claim: the
    catalog's repair from the partition's copy (pipeline/catalog_repair.py).
    """

    def __init__(self, store: RedisStore, metrics: Metrics, worker_id: str,
                 topic_codes: Mapping[str, str], dedupe_horizon_ms: int,
                 on_claimed: Callable[[PartitionState], None],
                 repair: Callable[[int], Awaitable[object]] | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.worker_id = worker_id
        self.topic_codes = topic_codes
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.on_claimed = on_claimed
        self.repair = repair
        self.states: dict[int, PartitionState] = {}
        self.assigned: set[int] = set()
        self.in_flight: dict[int, asyncio.Task[PartitionState]] = {}
        self.rebalancing = True
        self._revocations = 0
        # The consumer group generation of the last assignment revoked (see stored_positions).
        self._revoked_generation = -1

    def partitions(self, tps: Iterable[Any]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic in self.topic_codes}

    # -- rebalances ------------------------------------------------------------------

    def revoke(self, revoked: Iterable[Any], generation: int) -> tuple[set[int],
                                                                      list[PartitionState]]:
        """Forget the revoked partitions: cancel their claims in flight; return them and
        the states to flush (the next owner resumes from Redis).

        ``generation``: the consumer group generation of the assignment being revoked.
        """
        self.rebalancing = True
        self._revocations += 1
        self._revoked_generation = max(self._revoked_generation, generation)
        partitions = self.partitions(revoked)
        self.assigned -= partitions
        states = []
        for partition in partitions:
            claim = self.in_flight.pop(partition, None)
            if claim is not None:
                claim.cancel()
            state = self.states.pop(partition, None)
            if state is not None:
                states.append(state)
        return partitions, states

    async def assign(self, assigned: Iterable[Any]) -> None:
        self.metrics.rebalances.inc()
        claims = self._start(self.partitions(assigned))
        if claims:
            await asyncio.gather(*claims, return_exceptions=True)
        self.rebalancing = False

    async def stored_positions(self, assignment: Iterable[Any], generation: int) -> dict[
            Any, int]:
        """Where Faust resumes each assigned input partition: the offsets stored in Redis.

        Faust calls this (pipeline/faust_compat.py) before it fetches after a rebalance,
        possibly before the assignment signal reaches ``assign``; both share the claims.
        A call for a generation already revoked claims nothing: its partitions may be
        another worker's by now, and a claim here would keep a partition this worker no
        longer reads (Faust's recovery can seek after the next revocation began).
        """
        if generation <= self._revoked_generation:
            log.info("not resuming generation %d: it was revoked", generation)
            return {}
        revocations = self._revocations
        claims = self._start(self.partitions(assignment))
        if claims:
            await asyncio.gather(*claims, return_exceptions=True)
        if self._revocations != revocations:
            return {}  # a newer rebalance began meanwhile: its own seek resumes its partitions
        partitions = self.partitions(assignment)
        return {
            TopicPartition(topic, partition): state.next_offset[code]
            for partition in partitions if (state := self.states.get(partition)) is not None
            for topic, code in self.topic_codes.items()
        }

    # -- claims ----------------------------------------------------------------------

    def _start(self, partitions: set[int]) -> list[asyncio.Task[PartitionState]]:
        """Claim newly assigned partitions (each one once); return the claims in flight.

        Every rebalance revokes all partitions first (Faust's eager protocol), so a kept
        partition is claimed again too: one rule, a new owner token per assignment.
        """
        for partition in partitions - self.assigned:
            self.assigned.add(partition)
            self.in_flight[partition] = asyncio.ensure_future(self._claim(partition))
        return [claim for partition in partitions
                if (claim := self.in_flight.get(partition)) is not None]

    async def _claim(self, partition: int) -> PartitionState:
        owner = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        attempt = 0
        while True:
            try:
                state = await PartitionState.load(self.store, partition, owner,
                                                  self.dedupe_horizon_ms)
                if self.repair is not None:  # once claimed: an older owner's flushes are refused
                    await self.repair(partition)
                break
            except (RedisError, OSError, TimeoutError) as exc:
                self.metrics.redis_errors.labels(operation="claim").inc()
                cause = exc
            await retry_forever(f"Redis claim of partition {partition}", attempt, cause)
            attempt += 1
        log.info("claimed partition %d: offsets %s, %d pending tracks", partition,
                 state.next_offset, len(state.pending))
        # Only the partition's current claim installs its state: one that a revocation
        # popped (and whose cancellation came too late) must not replace a newer claim's.
        if self.in_flight.get(partition) is asyncio.current_task():
            del self.in_flight[partition]
            if partition in self.assigned:
                self.states[partition] = state
                self.on_claimed(state)
        self.metrics.partitions_assigned.set(len(self.states))
        return state

    async def claimed(self, partition: int) -> PartitionState | None:
        """The partition's state once its claim in flight is done; None if there is no
        claim (not ours any more) or a revocation cancelled it meanwhile."""
        claim = self.in_flight.get(partition)
        if claim is None:
            return None
        state = await _claimed(claim)
        if state is None or self.states.get(partition) is not state:
            return None
        return state

    async def reclaim(self, state: PartitionState) -> PartitionState | None:
        """Redis refused a flush of ``state``: drop it, and if this worker still owns the
        partition (Redis lost recent writes), claim it again from what Redis holds.
        Returns the new state, or None if the partition is gone or was reclaimed already."""
        partition = state.partition
        if self.states.get(partition) is not state:
            return None
        del self.states[partition]
        # Lost writes may include our own latest claims (a failover to a replica that had
        # not received them): Redis then names one of this process's earlier tokens, or no
        # owner at all. Nobody else claimed the partition, so it is claimed again like
        # after a lost flush; only another worker's token means the partition moved.
        owner = await self._owner_in_redis(partition)
        if owner is not None and not owner.startswith(f"{self.worker_id}:"):
            log.error("partition %d is owned by %s now; dropping it here", partition, owner)
            self.assigned.discard(partition)
            return None
        log.error("partition %d: Redis is behind our state (restarted without the last writes?);"
                  " re-reading from the offsets stored in Redis", partition)
        claim = self.in_flight[partition] = asyncio.ensure_future(self._claim(partition))
        new_state = await _claimed(claim)  # on_claimed sets the resync frontier
        if new_state is not None and self.states.get(partition) is new_state:
            return new_state
        return None

    async def _owner_in_redis(self, partition: int) -> str | None:
        """The partition's owner token in Redis, retried: giving up here would leave the
        partition neither held nor dropped (a second failover can follow the first)."""
        attempt = 0
        while True:
            try:
                return await self.store.owner(partition)
            except (RedisError, OSError, TimeoutError) as exc:
                self.metrics.redis_errors.labels(operation="claim").inc()
                cause: BaseException = exc
            await retry_forever(f"Redis owner read of partition {partition}", attempt, cause)
            attempt += 1
