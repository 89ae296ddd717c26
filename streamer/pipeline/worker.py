"""The partition lifecycle of one worker: claim, count, flush, hand over.

Faust tells us which partitions we hold (assignment and revocation signals) and
feeds records to the agent; this class owns everything else:

* on assignment, claim each partition number in Redis (pipeline/claims.py: a fresh
  owner token, its offsets, watermarks, pending attributions and dedupe hashes), and
  seek Kafka to the stored offsets;
* for each record, skip it if it was counted before (offset below the stored one),
  otherwise hand it to the RecordProcessor;
* flush every partition once per ``flush_interval_s``, spread over the interval;
* on revocation, flush and forget the partition.

Kafka offsets are committed only after the Redis flush that contains them, so the
group's committed offset never runs ahead of the counters (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.exceptions import RedisError

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_bytes
from streamer.pipeline.catalog_repair import CatalogRepair
from streamer.pipeline.claims import PartitionClaims
from streamer.pipeline.day_closing import DayCloser
from streamer.pipeline.dlq import DLQ_MAX_RECORD_BYTES, DeadLetters
from streamer.pipeline.faust_compat import commit_offsets, highwater, seek_offset
from streamer.pipeline.flusher import Flusher
from streamer.pipeline.processor import RecordProcessor
from streamer.pipeline.watchdog import DeliveryWatch
from streamer.state.catalog import CatalogCache
from streamer.state.partition import TRACKS_CODE, USES_CODE, PartitionState
from streamer.state.store import FlushRefused, RedisStore

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]
"""Next offset to read per (topic, partition)."""


class PipelineWorker:
    def __init__(self, settings: Settings, store: RedisStore, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: monotonic seconds (flush rounds, health), replaceable in tests."""
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.cache = CatalogCache(settings.catalog_cache_bytes, plan_bytes)
        self.processor = RecordProcessor(settings, self.cache, metrics)
        self.flusher = Flusher(settings, store, self.cache, metrics)
        self.catalog_repair = CatalogRepair(settings, store, self.cache, metrics, clock)
        self.closer = DayCloser(settings, store)
        self.worker_id = uuid.uuid4().hex[:12]
        self._topic_codes = {settings.uses_topic: USES_CODE, settings.tracks_topic: TRACKS_CODE}
        self.claims = PartitionClaims(store, metrics, self.worker_id, self._topic_codes,
                                      settings.dedupe_horizon_ms, self._expect_rewind,
                                      repair=self.catalog_repair.repair)
        # Per (topic code, partition): one past the highest offset delivered to handle().
        self._seen: dict[tuple[str, int], int] = {}
        # Offsets at or above this frontier are stale prefetches after a backward seek.
        self._resync: dict[tuple[str, int], int] = {}
        self._dlq: AIOKafkaProducer | None = None
        self._dead_letters: DeadLetters | None = None
        self._consumer: Any = None
        self.last_flush_ok = clock()
        self.watch = DeliveryWatch(settings.delivery_stall_after_s)

    @property
    def states(self) -> dict[int, PartitionState]:
        """The partitions this worker counts now, by number."""
        return self.claims.states

    @property
    def rebalancing(self) -> bool:
        return self.claims.rebalancing

    # -- lifecycle ---------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._dlq is not None

    async def start(self, consumer: Any) -> None:
        """Start the dead-letter producer before any partition is assigned."""
        self._consumer = consumer
        # Not idempotent on purpose: a record the broker refuses as too large would
        # break an idempotent producer's sequence for good (OutOfOrderSequenceNumber).
        # The DLQ is at-least-once anyway (see pipeline/dlq.py).
        producer = AIOKafkaProducer(
            **self.settings.kafka.aiokafka_kwargs(), acks="all", enable_idempotence=False,
            linger_ms=5, max_request_size=DLQ_MAX_RECORD_BYTES,
        )
        await producer.start()
        self._dlq = producer
        self._dead_letters = DeadLetters(producer, self.settings.dlq_topic, self.metrics)
        self.flusher.dead_letters = self._dead_letters

    async def stop(self) -> None:
        states = list(self.states.values())
        self.states.clear()
        await self._final_flush(states, timeout=10)
        await self.closer.stop()
        if self._dlq is not None:
            await self._dlq.stop()

    # -- rebalancing (the claims themselves: pipeline/claims.py) -------------------

    async def on_revoked(self, revoked: Iterable[Any], generation: int = -1) -> None:
        """Flush what we counted, then forget: the next owner resumes from Redis.

        ``generation``: the consumer group generation of the assignment being revoked.
        """
        partitions, states = self.claims.revoke(revoked, generation)
        await self._final_flush(states, timeout=15)
        self.cache.clear()
        self.metrics.partitions_assigned.set(len(self.states))
        for partition in partitions:  # a revoked partition's lag is its new owner's to report
            for topic in self._topic_codes:
                self.metrics.consumer_lag.remove(topic, str(partition))

    async def _final_flush(self, states: list[PartitionState], timeout: float) -> None:
        """Best effort within the rebalance budget: whatever is not flushed is re-read."""
        if not states:
            return
        results = await asyncio.gather(
            *(asyncio.wait_for(self.flusher.flush(state), timeout) for state in states),
            return_exceptions=True,
        )
        for state, result in zip(states, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("partition %d handed over without a final flush: %r",
                            state.partition, result)

    async def on_assigned(self, assigned: Iterable[Any]) -> None:
        await self.claims.assign(assigned)

    async def stored_positions(self, assignment: Iterable[Any], generation: int) -> dict[
            Any, int]:
        """Where Faust resumes each assigned input partition (``PartitionClaims``)."""
        return await self.claims.stored_positions(assignment, generation)

    def _expect_rewind(self, state: PartitionState) -> None:
        """Drop records delivered before the claim's rewind until the rewound ones arrive.

        Records this process saw beyond the stored offset (read before a rebalance or a
        refused flush, not counted in Redis) may still sit in Faust's buffers. Counting one
        of them before the records at the stored offset come back would jump the offset
        over the gap and lose it. Faust and _seek both rewind to or before the stored
        offset, so the first record below the frontier ends the resync.
        """
        for code in (USES_CODE, TRACKS_CODE):
            key = (code, state.partition)
            seen = self._seen.get(key, 0)
            if seen > state.next_offset[code]:
                self._resync[key] = seen
            else:
                self._resync.pop(key, None)

    async def _seek(self, state: PartitionState) -> None:
        """Rewind to the stored offsets outside a rebalance (a refused flush)."""
        for topic, code in self._topic_codes.items():
            offset = state.next_offset[code]  # 0 too: records seen here may be uncounted
            try:
                await asyncio.wait_for(
                    seek_offset(self._consumer, topic, state.partition, offset), 10)
            except Exception as exc:
                log.warning("seek %s/%d to %d failed: %r", topic, state.partition, offset, exc)

    # -- the record path ----------------------------------------------------------

    async def handle(self, topic: str, partition: int, offset: int, value: bytes | None) -> bool:
        """Count one record; False if it was dropped to come again after a rewind (the
        fetch loop must then keep Faust's read offset below it)."""
        code = self._topic_codes.get(topic)
        if code is None:
            return True
        key = (code, partition)
        if offset >= self._seen.get(key, 0):
            self._seen[key] = offset + 1
        state = self.states.get(partition)
        if state is None:
            # None: not ours (any more), or revoked while we waited for the claim: the
            # owner counts the record from the Redis offset.
            state = await self.claims.claimed(partition)
            if state is None:
                return True
            if key in self._resync and offset > state.next_offset[code]:
                return False  # delivered before the claim's rewind; it comes again after it
        frontier = self._resync.get(key)
        if frontier is not None:
            if offset >= frontier:
                return False  # fetched before we rewound; it comes again after the rewind
            del self._resync[key]
        now_ms = int(time.time() * 1000)
        if code == USES_CODE:
            self.metrics.hot.records_uses += 1
            self.processor.handle_uses(state, offset, value, now_ms)
        else:
            self.metrics.hot.records_tracks += 1
            self.processor.handle_track(state, offset, value, now_ms)
        if state.rejections:
            await self._send_rejections(state)
        if state.unflushed_events >= self.settings.max_unflushed_events:
            self.metrics.backpressure_waits.inc()
            await self.flush_partition(state)
        return key not in self._resync  # a refused flush just rewound the partition

    async def _send_rejections(self, state: PartitionState) -> None:
        assert self._dead_letters is not None
        for rejection in state.take_rejections():
            state.sent_to_dlq(await self._dead_letters.send(rejection))

    # -- flushing -----------------------------------------------------------------

    async def flush_all(self) -> None:
        await self.flush_partitions(list(self.states))

    async def flush_round(self, interval_s: float,
                          sleep: Callable[[float], Awaitable[Any]]) -> None:
        """Flush each owned partition once, spread evenly over ``interval_s``, one per
        tick, start to start.

        Spread rather than all at once: an event waits for its own partition's flush,
        not for a pass over every partition (one pass over all of them put p99 at the
        interval plus the pass; docs/BENCHMARKS.md), and Redis gets the writes evenly. A tick
        that overruns its share shortens the next waits, down to none. One offset
        commit covers the round (a cross-thread call and a request each).
        """
        await self._repair_after_failover()
        ticks = [[partition] for partition in sorted(self.states)] or [[]]
        share = interval_s / len(ticks)
        flushed: Offsets = {}
        clock = self.clock
        for due in ticks:
            started = clock()
            flushed.update(await self.flush_partitions(due, commit=False))
            await sleep(max(0.0, share - (clock() - started)))
        await self._commit(flushed)

    async def _repair_after_failover(self) -> None:
        """A Redis Cluster failover may have lost catalog writes whose flushes survived:
        restore them from the partitions' copies (pipeline/catalog_repair.py). A failure
        is retried next round; the flushes go on meanwhile."""
        try:
            await self.catalog_repair.after_failover(self.states)
        except (RedisError, OSError, TimeoutError) as exc:
            self.metrics.redis_errors.labels(operation="catalog repair").inc()
            log.warning("catalog repair after a failover failed, retried next round: %r", exc)
        except Exception:  # a reply it cannot read: the flushes must go on regardless
            self.metrics.redis_errors.labels(operation="catalog repair").inc()
            log.exception("catalog repair after a failover failed, retried next round")

    async def flush_partitions(self, partitions: Iterable[int], commit: bool = True) -> Offsets:
        """Flush these partitions (those still owned); return the Kafka offsets Redis
        now holds for them, and commit them unless told not to."""
        # Concurrently: while Redis applies one partition's script, the next snapshot is
        # taken, so a pass takes about the Redis time of its partitions, not the sum.
        states = [self.states[partition] for partition in partitions
                  if partition in self.states]
        started = time.perf_counter()
        flushed = await asyncio.gather(*(self._flush(state) for state in states))
        if states:
            self.metrics.flush_pass_seconds.observe(time.perf_counter() - started)
        offsets = {key: offset for partition_offsets in flushed if partition_offsets
                   for key, offset in partition_offsets.items()}
        if commit:
            await self._commit(offsets)
        self.metrics.publish()
        self.metrics.unflushed_events.set(
            sum(state.unflushed_events for state in self.states.values()))
        self.metrics.pending_unattributed.set(
            sum(state.pending_uses for state in self.states.values()))
        self.metrics.last_flush.set(time.time())  # a pass done: idle partitions are flushed too
        return offsets

    async def flush_partition(self, state: PartitionState) -> None:
        await self._commit(await self._flush(state) or {})

    async def _flush(self, state: PartitionState) -> Offsets | None:
        """Flush one partition; return the Kafka offsets Redis now holds (None: refused)."""
        # Read before the flush: it writes these offsets or later ones to Redis. Committing
        # state.next_offset after it would run ahead of Redis, because the agent keeps
        # counting while the flush awaits; a crash then skipped the gap (tests/faults).
        flushed_offsets = {(topic, state.partition): state.next_offset[code]
                           for topic, code in self._topic_codes.items()}
        state.note_tracks_caught_up(self._caught_up(self.settings.tracks_topic, state))
        state.note_uses_caught_up(self._consumer is not None
                                  and self._caught_up(self.settings.uses_topic, state))
        self.closer.seal(state)
        try:
            await self.flusher.flush(state)
        except FlushRefused:
            await self._recover_refused(state)
            return None
        self.last_flush_ok = self.clock()
        self.closer.after_flush(state)
        return flushed_offsets

    def _caught_up(self, topic: str, state: PartitionState) -> bool:
        """Whether this process has read the partition to its end.

        Not before the first fetch told the partition's end offset: assuming it then let
        pending attributions expire at start-up while a backlog of TrackCreated waited.
        """
        if self._consumer is None:
            return True
        end = highwater(self._consumer, topic, state.partition)
        return end is not None and state.next_offset[self._topic_codes[topic]] >= end

    async def _recover_refused(self, state: PartitionState) -> None:
        """Redis no longer matches our state: another owner, or Redis lost recent writes."""
        new_state = await self.claims.reclaim(state)
        if new_state is not None:
            await self._seek(new_state)

    async def _commit(self, offsets: Offsets) -> None:
        """Best effort: lets Kafka tools show the group's progress; Redis stays the truth."""
        offsets = {key: offset for key, offset in offsets.items() if offset > 0}
        try:
            await commit_offsets(self._consumer, offsets)
        except Exception as exc:
            log.debug("offset commit failed: %r", exc)

    # -- reporting -----------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        stale_after = max(10.0, 5 * self.settings.backlog_flush_interval_s)
        now = self.clock()
        stale = now - self.last_flush_ok > stale_after
        busy = any(state.unflushed_events for state in self.states.values())
        stalled = self.watch.stalled(now)
        healthy = not self.rebalancing and not (stale and busy) and not stalled
        partitions = {
            str(partition): {
                "next_offset": {topic: state.next_offset[code]
                                for topic, code in self._topic_codes.items()},
                "watermark_ms": state.watermark[USES_CODE],
                "unflushed_events": state.unflushed_events,
                "pending_tracks": len(state.pending),
            }
            for partition, state in sorted(self.states.items())
        }
        return healthy, {
            "status": "ok" if healthy else "unavailable",
            "worker_id": self.worker_id,
            "rebalancing": self.rebalancing,
            "delivery_stalled": stalled,
            "partitions": partitions,
        }
