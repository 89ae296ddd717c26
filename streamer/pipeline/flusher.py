"""Turning a partition's in-memory cells into one atomic Redis write.

Order of a flush, and why:
1. Look up missing track metadata (one batched read), so attribution needs no await.
2. Snapshot synchronously: swap out the cells, attribute them, resolve or expire
   pending attributions, collect dedupe hashes, offsets and watermarks.
3. Wait for the dead-letter sends of the snapshot's records: a rejected record must be
   in the DLQ before its offset is committed.
4. Write catalog entries (idempotent, so a crash before step 5 just repeats them).
5. Apply everything else with the flush script, retrying the same payload until Redis
   answers; ``seq`` makes a retry of an applied flush a no-op.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import orjson
from redis.exceptions import RedisError

from streamer.config import Settings
from streamer.events.validation import USE_CREATE, TrackMeta
from streamer.metrics import Metrics
from streamer.pipeline.attribution import (
    UNATTRIBUTED_PLAN,
    add_attribution,
    attribute_uses,
    count_track_uses,
    known_plan,
    plan_for,
)
from streamer.pipeline.dlq import DeadLetters, PendingRejection
from streamer.state.catalog import CatalogCache, Plan
from streamer.state.deltas import GENRES, HOLDERS, CounterDeltas
from streamer.state.deltas import TRACKS as TRACK_COUNTS
from streamer.state.partition import TRACKS_CODE, USES_CODE, PartitionState
from streamer.state.store import FlushPayload, FlushRefused, RedisStore, retry_forever

log = logging.getLogger(__name__)

# Pending tracks are re-checked against the Redis catalog at most this often, for
# tracks whose TrackCreated went through another worker.
_PENDING_RECHECK_S = 5.0


@dataclass(slots=True)
class Snapshot:
    payload: FlushPayload
    dlq_pending: list[PendingRejection]
    catalog_writes: dict[str, bytes]
    events: int
    newest_event_ms: int | None


@dataclass(slots=True)
class MetadataLookup:
    """What _fetch_metadata found for one flush, so the snapshot needs no await."""

    # Pending uses of base windows ending at or before this expire (clock of the lookup).
    expire_before: int
    # Plans of pending tracks and of tracks read from Redis for this flush.
    plans: dict[str, Plan] = dataclass_field(default_factory=dict)
    # Tracks Redis had no metadata for: the only pending tracks whose uses may expire.
    unknown: set[str] = dataclass_field(default_factory=set)
    # Redis' entry before this flush's replacement, per track in ``needs_old_meta``.
    previous: dict[str, TrackMeta | None] = dataclass_field(default_factory=dict)


TRACKS_KIND = TRACK_COUNTS
TRENDING = "z"


def _per_window(
    by_base: dict[int, dict[str, dict[str, int]]],
    kind: str,
    windows: tuple[tuple[str, int], ...],
    extra: dict,  # type: ignore[type-arg]
) -> dict[tuple[str, int], dict[str, int]]:
    """Spread base-window increments over every window size, summing where they meet.

    Usually all cells of a flush share one base window; then each window size gets the
    very same dict, and nothing is copied.
    """
    result: dict[tuple[str, int], dict[str, int]] = {}
    shared: set[tuple[str, int]] = set()
    for base_start, parts in by_base.items():
        fields = parts[kind]
        if not fields:
            continue
        for name, size in windows:
            target = (name, base_start - base_start % size)
            existing = result.get(target)
            if existing is None:
                result[target] = fields
                shared.add(target)
                continue
            if target in shared:
                existing = result[target] = dict(existing)
                shared.discard(target)
            for field, value in fields.items():
                existing[field] = existing.get(field, 0) + value
    for key, fields in extra.items():
        target = key if kind == TRENDING else key[1:]
        if kind != TRENDING and key[0] != kind:
            continue
        existing = result.get(target)
        if existing is None:
            result[target] = dict(fields)
            continue
        if target in shared:
            existing = result[target] = dict(existing)
            shared.discard(target)
        for field, value in fields.items():
            existing[field] = existing.get(field, 0) + value
    return result


class Flusher:
    def __init__(self, settings: Settings, store: RedisStore, cache: CatalogCache,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.metrics = metrics
        self.windows = settings.windows
        self.base_ms = settings.windows[0][1]
        self._last_pending_check: dict[int, float] = {}
        self.dead_letters: DeadLetters | None = None  # set once the DLQ producer runs

    async def flush(self, state: PartitionState) -> None:
        """Persist everything the state holds; raises FlushRefused if it lost the partition."""
        async with state.flush_lock:
            lookup = await self._fetch_metadata(state)
            snapshot = self._snapshot(state, lookup)
            if snapshot is None:
                return
            started = time.perf_counter()
            if snapshot.dlq_pending:
                assert self.dead_letters is not None
                await self.dead_letters.confirm(snapshot.dlq_pending)
            await self._write(state, snapshot)
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
            self.metrics.flush_fields.observe(snapshot.payload.fields_written)
            self.metrics.flushes.inc()
            now = time.time()
            self.metrics.last_flush.set(now)
            if snapshot.newest_event_ms is not None:
                self.metrics.end_to_end.observe(max(0.0, now - snapshot.newest_event_ms / 1000))

    def _expire_before(self, state: PartitionState) -> int:
        """Pending uses of base windows ending at or before this give up on their track.

        A TrackCreated may still come while tracks.created has not passed the use's
        window plus the lateness. Live, both topics move together; in a backlog (after
        an outage) the uses run ahead, so the tracks topic's own watermark is the clock.
        """
        clock = state.watermark[USES_CODE]
        if not state.tracks_caught_up:
            clock = min(clock, state.watermark[TRACKS_CODE])
        return clock - self.settings.allowed_lateness_ms

    async def _fetch_metadata(self, state: PartitionState) -> MetadataLookup:
        """Read the metadata this flush needs from Redis, once, before the snapshot.

        The snapshot follows the last await here directly, so every track in
        ``needs_old_meta`` at snapshot time has its old metadata read: a replacement
        handled while a read was in flight is read in one more round. (Holding such a
        track back to the next flush would write offsets past uses this flush does not
        contain: a crash in between lost them and the replacement's catalog entry.)

        Pending tracks are looked up every ``_PENDING_RECHECK_S`` once tracks.created is
        caught up (their TrackCreated may have gone through another partition, by a
        producer partitioning otherwise) and always before their uses expire: a use goes
        to ``_unattributed`` only after Redis said its track is unknown, never because the
        cache evicted it.
        """
        cache = self.cache
        known = state.catalog_writes
        lookup = MetadataLookup(self._expire_before(state))
        wanted = list({key[0] for key in state.cells if key[0] not in cache})
        if state.pending:
            # While tracks.created lags (a backlog), the TrackCreated of pending tracks are
            # most likely still unread there: rechecking all of them would read Redis for
            # nothing, hundreds of thousands of tracks per flush.
            now = time.monotonic()
            recheck = state.tracks_caught_up and now - self._last_pending_check.get(
                state.partition, 0) > _PENDING_RECHECK_S
            if recheck:
                self._last_pending_check[state.partition] = now
            window_end = lookup.expire_before - self.base_ms
            for track_id, cells in state.pending.items():
                plan = known_plan(known, cache, track_id)
                if plan is not None:
                    lookup.plans[track_id] = plan
                elif recheck or any(base <= window_end for _, base in cells):
                    wanted.append(track_id)
        if wanted:
            found = await self._redis("catalog read", lambda: self.store.get_catalog(wanted))
            for track_id, meta in found.items():
                plan = lookup.plans[track_id] = plan_for(meta)
                cache.put(track_id, plan)
            lookup.unknown.update(track_id for track_id in wanted if track_id not in found)
            self.metrics.catalog_lookups.labels(result="hit").inc(len(found))
            self.metrics.catalog_lookups.labels(result="miss").inc(len(wanted) - len(found))
        while replaced := [track for track in state.needs_old_meta
                           if track not in lookup.previous]:
            # Still the old entries: the replacements are written to Redis by this flush.
            found_old = await self._redis("catalog read", lambda: self.store.get_catalog(replaced))
            lookup.previous.update({track_id: found_old.get(track_id) for track_id in replaced})
        return lookup

    def _snapshot(self, state: PartitionState, lookup: MetadataLookup) -> Snapshot | None:
        """Everything to write, taken synchronously so the agent can carry on meanwhile."""
        lookup.plans.update({track_id: plan_for(meta)  # newer than anything read from Redis
                             for track_id, meta in state.catalog_writes.items()})
        cells, state.cells = state.cells, {}
        state.bases = set()
        sealed, state.sealed = state.sealed, CounterDeltas()
        self._seal_replaced(state, lookup.previous, sealed)
        by_base = self._aggregate(state, cells, lookup.plans)
        self._resolve_pending(state, sealed, lookup)

        layout = self.store.layout
        partition = state.partition
        retention = self.settings.retention_ms
        payload = FlushPayload()
        key_of = {TRACKS_KIND: layout.track_counts, HOLDERS: layout.holder_counts,
                  GENRES: layout.genre_counts}
        for kind in (TRACKS_KIND, HOLDERS, GENRES):
            for (window, start), fields in _per_window(
                by_base, kind, self.windows, sealed.hashes
            ).items():
                payload.add_hash(key_of[kind](partition, window, start), retention[window], fields)
        for (window, start), members in _per_window(
            by_base, TRENDING, self.windows, sealed.trending
        ).items():
            payload.add_zset(layout.trending(partition, window, start), retention[window], members)
        if state.pending_dirty:
            payload.set_pending(layout.pending(partition), {
                track_id: orjson.dumps(
                    [[use, base, uses] for (use, base), uses in state.pending[track_id].items()]
                ).decode() if state.pending.get(track_id) else ""
                for track_id in state.pending_dirty
            })
            state.pending_dirty = set()
        dedupe_ttl = max(self.settings.dedupe_horizon_ms * 4, 7 * 86_400_000)
        for code in (USES_CODE, TRACKS_CODE):
            deduper = state.dedupe[code]
            new_hashes = deduper.take_new()
            expired = set(deduper.evict(state.watermark[code]))
            for bucket, packed in new_hashes.items():
                if bucket not in expired:
                    payload.add_append(layout.dedupe(partition, code, bucket), dedupe_ttl, packed)
            for bucket in expired:
                payload.add_delete(layout.dedupe(partition, code, bucket))
        marks = (tuple(state.next_offset.values()), tuple(state.watermark.values()))
        if payload.empty and marks == state.flushed_marks:
            return None
        state.flushed_marks = marks
        for code in (USES_CODE, TRACKS_CODE):
            payload.meta[f"off:{code}"] = state.next_offset[code]
            payload.meta[f"wm:{code}"] = state.watermark[code]
        catalog_writes = {track_id: meta.to_json()
                          for track_id, meta in state.catalog_writes.items()}
        state.catalog_writes = {}
        dlq_pending, state.dlq_pending = state.dlq_pending, []
        events, state.unflushed_events = state.unflushed_events, 0
        newest = state.watermark[USES_CODE] if events else None
        return Snapshot(payload, dlq_pending, catalog_writes, events, newest)

    def _seal_replaced(
        self, state: PartitionState, previous: dict[str, TrackMeta | None], sealed: CounterDeltas
    ) -> None:
        """Attribute uses counted before a TrackCreated with the metadata they belong to:
        the entry Redis held before it, or, for a track new to the catalog, that one."""
        for track_id, (cells, arrived) in state.needs_old_meta.items():
            # _fetch_metadata read every one of them
            plan = plan_for(previous[track_id] or arrived)
            for (_, use, base_start), uses in cells.items():
                count_track_uses(sealed, self.windows, track_id, use, base_start, uses)
                attribute_uses(sealed, self.windows, plan, use, base_start, uses)
        state.needs_old_meta = {}

    def _aggregate(
        self, state: PartitionState, cells: dict[tuple[str, str, int], int],
        plans: dict[str, Plan],
    ) -> dict[int, dict[str, dict[str, int]]]:
        """Counter increments per base window, one pass over the cells.

        Cells are distinct (track, use, base), so per-track fields need no summing; holder
        and genre fields are summed over the tracks that share them.
        """
        by_base: dict[int, dict[str, dict[str, int]]] = {}
        cache_get = self.cache.get
        plans_get = plans.get
        for (track_id, use, base_start), uses in cells.items():
            parts = by_base.get(base_start)
            if parts is None:
                parts = by_base[base_start] = {TRACKS_KIND: {}, TRENDING: {}, HOLDERS: {},
                                               GENRES: {}}
            parts[TRACKS_KIND][use + "|" + track_id] = uses
            if use == USE_CREATE:
                parts[TRENDING][track_id] = uses
            plan = plans_get(track_id) or cache_get(track_id)
            if plan is None:
                state.add_pending(track_id, use, base_start, uses)
                continue
            add_attribution(parts[HOLDERS], parts[GENRES], plan, use, uses)
        return by_base

    def _resolve_pending(
        self, state: PartitionState, deltas: CounterDeltas, lookup: MetadataLookup
    ) -> None:
        """Attribute pending uses whose metadata arrived; expire the rest after the lateness.

        Only tracks Redis did not know in _fetch_metadata can expire, by the clock of that
        lookup: a track first seen in this snapshot's cells, or evicted from the cache
        since, waits for the next flush's lookup.
        """
        if not state.pending:
            return
        plans = lookup.plans
        window_end = lookup.expire_before - self.base_ms
        for track_id in list(state.pending):
            track_cells = state.pending[track_id]
            plan = plans.get(track_id)
            if plan is not None:
                for (use, base_start), uses in track_cells.items():
                    attribute_uses(deltas, self.windows, plan, use, base_start, uses)
                del state.pending[track_id]
                state.pending_dirty.add(track_id)
                continue
            if track_id not in lookup.unknown:
                continue
            expired = [cell for cell in track_cells if cell[1] <= window_end]
            for cell in expired:
                use, base_start = cell
                attribute_uses(deltas, self.windows, UNATTRIBUTED_PLAN, use, base_start,
                               track_cells.pop(cell))
                state.pending_dirty.add(track_id)
            if not track_cells:
                del state.pending[track_id]

    async def _write(self, state: PartitionState, snapshot: Snapshot) -> None:
        await self._redis("catalog write", lambda: self.store.put_catalog(
            snapshot.catalog_writes, self.settings.catalog_ttl_ms))
        await self._redis("flush", lambda: self.store.flush(
            state.partition, state.owner, state.seq, snapshot.payload))
        state.seq += 1

    async def _redis(self, operation: str, call):  # type: ignore[no-untyped-def]
        """Run a Redis call until it succeeds; FlushRefused is final and propagates."""
        attempt = 0
        while True:
            try:
                return await call()
            except FlushRefused:
                self.metrics.flush_refused.inc()
                raise
            except (TimeoutError, RedisError, OSError) as exc:
                self.metrics.redis_errors.labels(operation=operation).inc()
                await retry_forever(f"Redis {operation}", attempt, exc)
                attempt += 1
