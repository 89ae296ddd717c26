"""The partition lifecycle of one worker: claim, count, flush, hand over.

Faust tells us which partitions we hold (assignment and revocation signals) and
feeds records to the agent; this class owns everything else:

* on assignment, claim each partition number in Redis (a fresh owner token), load
  its offsets, watermarks, pending attributions and dedupe hashes, and seek Kafka to
  the stored offsets;
* for each record, skip it if it was counted before (offset below the stored one),
  otherwise hand it to the RecordProcessor;
* flush every partition once per ``flush_interval_s``, spread over the interval;
* on revocation, flush and forget the partition.

Kafka offsets are committed only after the Redis flush that contains them, so the
group's committed offset never runs ahead of the counters (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import TopicPartition
from redis.exceptions import RedisError

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.cancellation import cancelling
from streamer.pipeline.dlq import DLQ_MAX_RECORD_BYTES, DeadLetters
from streamer.pipeline.faust_compat import commit_offsets, highwater, seek_offset
from streamer.pipeline.flusher import Flusher
from streamer.pipeline.processor import RecordProcessor
from streamer.pipeline.watchdog import DeliveryWatch
from streamer.state.catalog import CatalogCache
from streamer.state.partition import TRACKS_CODE, USES_CODE, PartitionState
from streamer.state.store import FlushRefused, RedisStore, retry_forever

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]
"""Next offset to read per (topic, partition)."""


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


class PipelineWorker:
    def __init__(self, settings: Settings, store: RedisStore, metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.cache = CatalogCache(settings.catalog_cache_size)
        self.processor = RecordProcessor(settings, self.cache, metrics)
        self.flusher = Flusher(settings, store, self.cache, metrics)
        self.worker_id = uuid.uuid4().hex[:12]
        self.states: dict[int, PartitionState] = {}
        self.assigned: set[int] = set()
        self._claims: dict[int, asyncio.Task[PartitionState]] = {}
        # Per (topic code, partition): one past the highest offset delivered to handle().
        self._seen: dict[tuple[str, int], int] = {}
        # Offsets at or above this frontier are stale prefetches after a backward seek.
        self._resync: dict[tuple[str, int], int] = {}
        self._topic_codes = {settings.uses_topic: USES_CODE, settings.tracks_topic: TRACKS_CODE}
        self._dlq: AIOKafkaProducer | None = None
        self._dead_letters: DeadLetters | None = None
        self._consumer: Any = None
        self.rebalancing = True
        self._revocations = 0
        # The consumer group generation of the last assignment revoked (see stored_positions).
        self._revoked_generation = -1
        self.last_flush_ok = time.monotonic()
        self.watch = DeliveryWatch(settings.delivery_stall_after_s)

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
        if self._dlq is not None:
            await self._dlq.stop()

    # -- rebalancing ---------------------------------------------------------------

    def _partitions(self, tps: Iterable[Any]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic in self._topic_codes}

    async def on_revoked(self, revoked: Iterable[Any], generation: int = -1) -> None:
        """Flush what we counted, then forget: the next owner resumes from Redis.

        ``generation``: the consumer group generation of the assignment being revoked.
        """
        self.rebalancing = True
        self._revocations += 1
        self._revoked_generation = max(self._revoked_generation, generation)
        partitions = self._partitions(revoked)
        self.assigned -= partitions
        states = []
        for partition in partitions:
            claim = self._claims.pop(partition, None)
            if claim is not None:
                claim.cancel()
            state = self.states.pop(partition, None)
            if state is not None:
                states.append(state)
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
        self.metrics.rebalances.inc()
        claims = self._start_claims(self._partitions(assigned))
        if claims:
            await asyncio.gather(*claims, return_exceptions=True)
        self.rebalancing = False

    async def stored_positions(self, assignment: Iterable[Any], generation: int) -> dict[
            Any, int]:
        """Where Faust resumes each assigned input partition: the offsets stored in Redis.

        Faust calls this (pipeline/faust_compat.py) before it fetches after a rebalance,
        possibly before the assignment signal reaches on_assigned; both share the claims.
        A call for a generation already revoked claims nothing: its partitions may be
        another worker's by now, and a claim here would keep a partition this worker no
        longer reads (Faust's recovery can seek after the next revocation began).
        """
        if generation <= self._revoked_generation:
            log.info("not resuming generation %d: it was revoked", generation)
            return {}
        revocations = self._revocations
        claims = self._start_claims(self._partitions(assignment))
        if claims:
            await asyncio.gather(*claims, return_exceptions=True)
        if self._revocations != revocations:
            return {}  # a newer rebalance began meanwhile: its own seek resumes its partitions
        partitions = self._partitions(assignment)
        return {
            TopicPartition(topic, partition): state.next_offset[code]
            for partition in partitions if (state := self.states.get(partition)) is not None
            for topic, code in self._topic_codes.items()
        }

    def _start_claims(self, partitions: set[int]) -> list[asyncio.Task[PartitionState]]:
        """Claim newly assigned partitions (each one once); return the claims in flight.

        Every rebalance revokes all partitions first (Faust's eager protocol), so a kept
        partition is claimed again too: one rule, a new owner token per assignment.
        """
        for partition in partitions - self.assigned:
            self.assigned.add(partition)
            self._claims[partition] = asyncio.ensure_future(self._claim(partition))
        return [claim for partition in partitions
                if (claim := self._claims.get(partition)) is not None]

    async def _claim(self, partition: int) -> PartitionState:
        owner = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        attempt = 0
        while True:
            try:
                state = await self._load(partition, owner)
                break
            except (RedisError, OSError, TimeoutError) as exc:
                self.metrics.redis_errors.labels(operation="claim").inc()
                log.debug("claim error %r", exc)
            await retry_forever(f"claim partition {partition}", attempt)
            attempt += 1
        # Only the partition's current claim installs its state: one that a revocation
        # popped (and whose cancellation came too late) must not replace a newer claim's.
        if self._claims.get(partition) is asyncio.current_task():
            del self._claims[partition]
            if partition in self.assigned:
                self.states[partition] = state
                self._expect_rewind(state)
        self.metrics.partitions_assigned.set(len(self.states))
        return state

    async def _load(self, partition: int, owner: str) -> PartitionState:
        claimed = await self.store.claim(partition, owner)
        state = PartitionState(partition, owner, claimed.seq, self.settings.dedupe_horizon_ms)
        for code in (USES_CODE, TRACKS_CODE):
            state.next_offset[code] = claimed.offsets.get(code, 0)
            state.watermark[code] = claimed.watermarks.get(code, 0)
        state.flushed_marks = (tuple(state.next_offset.values()), tuple(state.watermark.values()))
        for track_id, encoded in (await self.store.load_pending(partition)).items():
            state.pending[track_id.decode()] = {
                (use, base): uses for use, base, uses in orjson.loads(encoded)
            }
        for code in (USES_CODE, TRACKS_CODE):
            deduper = state.dedupe[code]
            buckets = deduper.live_buckets(state.watermark[code])
            for bucket, packed in (await self.store.load_dedupe(partition, code, buckets)).items():
                deduper.load(bucket, packed)
        log.info("claimed partition %d: offsets %s, %d pending tracks", partition,
                 state.next_offset, len(state.pending))
        return state

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
            claim = self._claims.get(partition)
            if claim is None:
                return True  # not ours (any more): the owner counts it from the Redis offset
            state = await _claimed(claim)
            if state is None or self.states.get(partition) is not state:
                return True  # revoked while we waited: the next owner counts it from Redis
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
        rejections, state.rejections = state.rejections, []
        for rejection in rejections:
            state.dlq_pending.append(await self._dead_letters.send(rejection))

    # -- flushing -----------------------------------------------------------------

    async def flush_all(self) -> None:
        await self.flush_partitions(list(self.states))

    async def flush_round(self, interval_s: float,
                          sleep: Callable[[float], Awaitable[Any]]) -> None:
        """Flush each owned partition once, spread evenly over ``interval_s``, one per
        tick, start to start.

        Spread rather than all at once: an event waits for its own partition's flush,
        not for a pass over every partition (a 0.4 s pass of all of them put p99
        latency at the interval plus 0.4 s), and Redis gets the writes evenly. A tick
        that overruns its share shortens the next waits, down to none. One offset
        commit covers the round (a cross-thread call and a request each).
        """
        ticks = [[partition] for partition in sorted(self.states)] or [[]]
        share = interval_s / len(ticks)
        flushed: Offsets = {}
        for due in ticks:
            started = time.monotonic()
            flushed.update(await self.flush_partitions(due, commit=False))
            await sleep(max(0.0, share - (time.monotonic() - started)))
        await self._commit(flushed)

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
        state.tracks_caught_up = self._caught_up(self.settings.tracks_topic, state)
        try:
            await self.flusher.flush(state)
        except FlushRefused:
            await self._recover_refused(state)
            return None
        self.last_flush_ok = time.monotonic()
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
        """Redis no longer matches our state: another owner, or Redis lost recent writes.

        Lost writes may include our own latest claims (a failover to a replica that had
        not received them): Redis then names one of this process's earlier tokens, or no
        owner at all. Nobody else claimed the partition, so it is re-claimed like a lost
        flush; only another worker's token means the partition moved.
        """
        partition = state.partition
        if self.states.get(partition) is not state:
            return
        del self.states[partition]
        owner = await self._owner_in_redis(partition)
        if owner is not None and not owner.startswith(f"{self.worker_id}:"):
            log.error("partition %d is owned by %s now; dropping it here", partition, owner)
            self.assigned.discard(partition)
            return
        log.error("partition %d: Redis is behind our state (restarted without the last writes?);"
                  " re-reading from the offsets stored in Redis", partition)
        claim = self._claims[partition] = asyncio.ensure_future(self._claim(partition))
        new_state = await _claimed(claim)  # sets the resync frontier
        if new_state is not None and self.states.get(partition) is new_state:
            await self._seek(new_state)

    async def _owner_in_redis(self, partition: int) -> str | None:
        """The partition's owner token in Redis, retried: giving up here would leave the
        partition neither ours nor dropped (a second failover can follow the first)."""
        attempt = 0
        while True:
            try:
                return await self.store.owner(partition)
            except (RedisError, OSError, TimeoutError) as exc:
                self.metrics.redis_errors.labels(operation="claim").inc()
                log.debug("owner read error %r", exc)
            await retry_forever(f"read the owner of partition {partition}", attempt)
            attempt += 1

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
        stale = time.monotonic() - self.last_flush_ok > stale_after
        busy = any(state.unflushed_events for state in self.states.values())
        stalled = self.watch.stalled(time.monotonic())
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


async def ensure_topics(settings: Settings) -> int:
    """Create missing input and dead-letter topics; return the inputs' partition count."""
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, settings.partitions, settings.replication_factor)
            for name in (settings.tracks_topic, settings.uses_topic)
            if name not in existing
        ]
        if settings.dlq_topic not in existing:
            # The DLQ takes any rejected record whole, even one over the input limit.
            wanted.append(NewTopic(settings.dlq_topic, settings.partitions,
                                   settings.replication_factor,
                                   topic_configs={"max.message.bytes": str(DLQ_MAX_RECORD_BYTES)}))
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent worker won
                await admin.create_topics(wanted)
        described = await admin.describe_topics([settings.tracks_topic, settings.uses_topic])
        counts = {item["topic"]: len(item["partitions"]) for item in described}
        if len(set(counts.values())) != 1:
            raise RuntimeError(
                f"{settings.tracks_topic} and {settings.uses_topic} must have the same number of "
                f"partitions (co-partitioned by track_id), found {counts}"
            )
        return counts[settings.uses_topic]
    finally:
        await admin.close()
