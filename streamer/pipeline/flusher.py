"""Turning a partition's in-memory cells into one atomic Redis write.

``Flusher.flush`` lists the steps of a flush, in order, and why; the partition's state
changes only through its own methods (state/partition.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TypeVar

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
    genre_of,
    known_plan,
    plan_for,
)
from streamer.pipeline.day_closing import idle_clock_ms
from streamer.pipeline.dlq import DeadLetters, PendingRejection
from streamer.pipeline.territory import TerritoryCells
from streamer.state.catalog import CatalogCache, Plan
from streamer.state.deltas import CounterDeltas
from streamer.state.keys import (
    ATTRIBUTIONS,
    CLOSED_BEFORE_FIELD,
    DAY_MS,
    DAY_WINDOW,
    GENRE_COUNTS,
    GENRE_TRENDING,
    HOLDER_COUNTS,
    TERRITORY_GENRE_COUNTS,
    TERRITORY_HOLDER_COUNTS,
    TERRITORY_TRACK_COUNTS,
    TRACK_COUNTS,
    TRACKS_CODE,
    TRENDING,
    USES_CODE,
    catalog_copy_bucket,
    catalog_copy_value,
)
from streamer.state.partition import CellKey, PartitionState
from streamer.state.store import FlushPayload, FlushRefused, RedisStore, retry_forever
from streamer.windows import spread_over_windows

log = logging.getLogger(__name__)

TOPIC_CODES = (USES_CODE, TRACKS_CODE)
T = TypeVar("T")

# Pending tracks are re-checked against the Redis catalog at most this often, for
# tracks whose TrackCreated went through another worker.
_PENDING_RECHECK_S = 5.0

_TERRITORY_KINDS = (TERRITORY_TRACK_COUNTS, TERRITORY_HOLDER_COUNTS, TERRITORY_GENRE_COUNTS)


@dataclass(slots=True)
class Snapshot:
    payload: FlushPayload
    dlq_pending: list[PendingRejection]
    catalog_writes: dict[str, bytes]
    events: int
    newest_event_ms: int | None
    # Per day, the catalog entry fields the payload writes (the state remembers them once
    # Redis applied it).
    entries_written: dict[int, list[str]] = dataclass_field(default_factory=dict)


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


class Flusher:
    def __init__(self, settings: Settings, store: RedisStore, cache: CatalogCache,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.metrics = metrics
        self.windows = settings.windows
        self.territory = settings.territory
        self.base_ms = settings.windows[0][1]
        # Attributions and entries of a day stay until the day is closed (then a grace).
        self.ledger_ttl_ms = max((settings.retention_ms[name] for name in
                                  settings.territory_windows), default=0)
        self._last_pending_check: dict[int, float] = {}
        self.dead_letters: DeadLetters | None = None  # set once the DLQ producer runs

    async def flush(self, state: PartitionState) -> None:
        """Persist everything the state holds; raises FlushRefused if it lost the partition.

        1. Read the track metadata the snapshot needs from Redis (one batched read), so
           attribution needs no await.
        2. Take the snapshot, synchronously, so the agent carries on counting meanwhile:
           swap out the cells, attribute them, resolve or expire pending attributions,
           collect dedupe hashes, offsets and watermarks. Nothing new: done.
        3. Wait for the dead-letter sends of the snapshot's records: a rejected record
           must be in the DLQ before its offset is committed.
        4. Write the catalog entries (idempotent, so a crash before step 5 just repeats
           them).
        5. Apply everything else with the flush script, retrying the same payload until
           Redis answers; ``seq`` makes a retry of an applied flush a no-op. It keeps a
           copy of step 4's entries under the partition's tag, from which a claim or a
           cluster failover restores a catalog write a failover lost
           (pipeline/catalog_repair.py).
        6. Confirm the flush to the state: the next one carries the next ``seq``.
        7. Report its duration, size and the end-to-end latency of its newest event.
        """
        async with state.flush_lock:
            # Step 1. Metadata, before the snapshot (its last await).
            lookup = await self._fetch_metadata(state)
            # Step 2. The snapshot.
            snapshot = self._snapshot(state, lookup)
            if snapshot is None:
                return
            started = time.perf_counter()
            # Step 3. The DLQ holds the snapshot's rejections.
            if snapshot.dlq_pending:
                assert self.dead_letters is not None
                await self.dead_letters.confirm(snapshot.dlq_pending)
            # Step 4. The catalog.
            await self._redis("catalog write", lambda: self.store.put_catalog(
                snapshot.catalog_writes, self.settings.catalog_ttl_ms))
            # Step 5. The atomic flush (FlushRefused: another owner, or Redis lost writes).
            await self._redis("flush", lambda: self.store.flush(
                state.partition, state.owner, state.seq, snapshot.payload))
            # Step 6. Confirmed.
            state.confirm_flush(snapshot.entries_written)
            # Step 7. Metrics.
            self._report(snapshot, time.perf_counter() - started)

    def _report(self, snapshot: Snapshot, seconds: float) -> None:
        metrics = self.metrics
        metrics.flush_seconds.observe(seconds)
        metrics.flush_fields.observe(snapshot.payload.fields_written)
        metrics.flushes.inc()
        now = time.time()
        metrics.last_flush.set(now)
        if snapshot.newest_event_ms is not None:
            metrics.end_to_end.observe(max(0.0, now - snapshot.newest_event_ms / 1000))

    def _expire_before(self, state: PartitionState) -> int:
        """Pending uses of base windows ending at or before this give up on their track.

        A TrackCreated may still come while tracks.created has not passed the use's
        window plus the lateness. Live, both topics move together; in a backlog (after
        an outage) the uses run ahead, so the tracks topic's own watermark is the clock.
        """
        lateness = self.settings.allowed_lateness_ms
        clock = state.watermark[USES_CODE]
        if not state.tracks_caught_up:
            clock = min(clock, state.watermark[TRACKS_CODE])
        expire_before = clock - lateness
        if state.uses_caught_up and state.tracks_caught_up and self.territory:
            # Idle: whole days the wall clock closes (PartitionState.closable_before) give
            # up on their pending uses too, or a TrackCreated that never comes would hold
            # the day open. Only whole past days: recent uses keep the watermark's rule.
            wall = idle_clock_ms(self.settings) - lateness
            expire_before = max(expire_before, wall - wall % DAY_MS)
        return expire_before

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
                elif recheck or any(base <= window_end for _, base, _ in cells):
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
        """Everything to write, taken synchronously so the agent can carry on meanwhile.

        a. Swap out the counted cells (and what was sealed or waits for old metadata).
        b. Attribute them: replaced tracks' cells by the metadata they were counted
           under, the rest by their plans (unknown tracks' cells become pending), and
           pending uses whose metadata arrived; expire those whose track never came.
        c. Build the payload: counters of every window size, changed pending tracks,
           new and expired dedupe hashes.
        d. Close the interval (None: nothing to write and no offset moved), and add its
           offsets and watermarks to the payload.
        """
        lookup.plans.update({track_id: plan_for(meta)  # newer than anything read from Redis
                             for track_id, meta in state.catalog_writes.items()})
        taken = state.take_counts()  # a.
        sealed = taken.sealed  # b.
        self._seal_replaced(taken.needs_old_meta, lookup.previous, sealed)
        by_base, entries = self._aggregate(state, taken.cells, lookup.plans)
        self._resolve_pending(state, sealed, lookup)

        payload = FlushPayload()  # c.
        self._add_counters(payload, state.partition, by_base, sealed)
        entries_written: dict[int, list[str]] = {}
        if self.territory:
            entries_written = self._add_ledger_input(payload, state, by_base, entries, sealed)
        layout = self.store.layout
        partition = state.partition
        changed = state.take_pending_changes()
        if changed:
            payload.set_pending(layout.pending(partition), {
                track_id: orjson.dumps(
                    [[use, base, uses, country] for (use, base, country), uses in cells.items()]
                ).decode() if cells else ""
                for track_id, cells in changed.items()
            })
        dedupe_ttl = max(self.settings.dedupe_horizon_ms * 4, 7 * 86_400_000)
        for code in TOPIC_CODES:
            new_hashes, expired = state.take_dedupe_changes(code)
            for bucket, packed in new_hashes.items():
                if bucket not in expired:
                    payload.add_append(layout.dedupe(partition, code, bucket), dedupe_ttl, packed)
            for bucket in expired:
                payload.add_delete(layout.dedupe(partition, code, bucket))

        closed = state.close_interval(not payload.empty)  # d.
        if closed is None:
            return None
        for code in TOPIC_CODES:
            payload.meta[f"off:{code}"] = closed.offsets[code]
            payload.meta[f"wm:{code}"] = closed.watermarks[code]
        if state.closed_before:
            payload.meta[CLOSED_BEFORE_FIELD] = state.closed_before
        catalog_writes = {track_id: meta.to_json()
                          for track_id, meta in closed.catalog_writes.items()}
        if catalog_writes:  # the partition's copy, to repair a lost catalog write from
            payload.set_pending(
                layout.catalog_copy(partition, catalog_copy_bucket(int(time.time() * 1000))),
                {track_id: catalog_copy_value(state.seq, entry)
                 for track_id, entry in catalog_writes.items()},
                self.settings.catalog_copy_retention_ms)
        newest = closed.watermarks[USES_CODE] if closed.events else None
        return Snapshot(payload, closed.dlq_pending, catalog_writes, closed.events, newest,
                        entries_written)

    def _add_counters(self, payload: FlushPayload, partition: int,
                      by_base: dict[int, dict[str, dict[str, int]]],
                      sealed: CounterDeltas) -> None:
        """Counter increments of every window size: the cells' and the sealed ones."""
        layout = self.store.layout
        retention = self.settings.retention_ms
        key_of = {TRACK_COUNTS: layout.track_counts, HOLDER_COUNTS: layout.holder_counts,
                  GENRE_COUNTS: layout.genre_counts}
        if self.territory:
            key_of.update({TERRITORY_TRACK_COUNTS: layout.territory_track_counts,
                           TERRITORY_HOLDER_COUNTS: layout.territory_holder_counts,
                           TERRITORY_GENRE_COUNTS: layout.territory_genre_counts})
        for kind, key in key_of.items():
            sealed_of_kind = {hash_key[1:]: fields for hash_key, fields in sealed.hashes.items()
                              if hash_key[0] == kind}
            windows = self.territory if kind in _TERRITORY_KINDS else self.windows
            for (window, start), fields in spread_over_windows(
                {base: parts[kind] for base, parts in by_base.items()}, windows,
                sealed_of_kind,
            ).items():
                payload.add_hash(key(partition, window, start), retention[window], fields)
        for (window, start), members in spread_over_windows(
            {base: parts[TRENDING] for base, parts in by_base.items()}, self.windows,
            sealed.trending,
        ).items():
            payload.add_zset(layout.trending(partition, window, start), retention[window], members)
        sealed_ranks = {hash_key[1:]: fields for hash_key, fields in sealed.hashes.items()
                        if hash_key[0] == GENRE_TRENDING}
        for (window, start), fields in spread_over_windows(
            {base: parts[GENRE_TRENDING] for base, parts in by_base.items()}, self.windows,
            sealed_ranks,
        ).items():
            per_genre: dict[str, dict[str, int]] = {}
            for field, creates in fields.items():
                genre, _, track_id = field.partition("|")
                per_genre.setdefault(genre, {})[track_id] = creates
            for genre, members in per_genre.items():
                payload.add_zset(layout.genre_trending(partition, window, start, genre),
                                 retention[window], members)

    def _add_ledger_input(self, payload: FlushPayload, state: PartitionState,
                          by_base: dict[int, dict[str, dict[str, int]]],
                          entries: dict[int, dict[str, str]], sealed: CounterDeltas,
                          ) -> dict[int, list[str]]:
        """The day's attributions (uses per track, country, use and catalog version) and
        the entries of those versions, for the ledger's close of the day; returns the
        entries written, per day.

        An entry this state's confirmed flushes wrote already is left out (the same field
        with the same value: Redis' contents are the same, a flush of a popular track's
        day rewrote it every time); the key's TTL is renewed all the same."""
        layout = self.store.layout
        partition = state.partition
        sealed_of_kind = {hash_key[1:]: fields for hash_key, fields in sealed.hashes.items()
                          if hash_key[0] == ATTRIBUTIONS}
        for (_, day), fields in spread_over_windows(
            {base: parts[ATTRIBUTIONS] for base, parts in by_base.items()},
            ((DAY_WINDOW, DAY_MS),), sealed_of_kind,
        ).items():
            payload.add_hash(layout.attributions(partition, day), self.ledger_ttl_ms, fields)
        for day, more in sealed.entries.items():
            entries.setdefault(day, {}).update(more)
        written: dict[int, list[str]] = {}
        for day, values in entries.items():
            values = state.unwritten_entries(day, values)
            payload.set_pending(layout.attribution_entries(partition, day), values,
                                self.ledger_ttl_ms)
            if values:
                written[day] = list(values)
        return written

    def _seal_replaced(
        self, needs_old_meta: dict[str, tuple[dict[CellKey, int], TrackMeta]],
        previous: dict[str, TrackMeta | None], sealed: CounterDeltas,
    ) -> None:
        """Attribute uses counted before a TrackCreated with the metadata they belong to:
        the entry Redis held before it, or, for a track new to the catalog, that one."""
        territory = self.territory
        for track_id, (cells, arrived) in needs_old_meta.items():
            # _fetch_metadata read every one of them
            plan = plan_for(previous[track_id] or arrived)
            for (_, use, base_start, country), uses in cells.items():
                count_track_uses(sealed, self.windows, track_id, use, base_start, uses,
                                 country=country, territory=territory)
                attribute_uses(sealed, self.windows, plan, use, base_start, uses,
                               track_id=track_id, country=country, territory=territory)

    def _aggregate(
        self, state: PartitionState, cells: dict[CellKey, int], plans: dict[str, Plan],
    ) -> tuple[dict[int, dict[str, dict[str, int]]], dict[int, dict[str, str]]]:
        """Counter increments per base window and the catalog entries of the day's
        attributions (territory on).

        Cells are distinct (track, use, base, country). The plain fields need no country:
        they are attributed once per (track, use, base), with the uses summed over its
        countries (a third of the cells in the benchmark's traffic). Territory holder and
        genre fields are summed per cell by territory.py (numpy over the cells' plans).
        Cells of tracks with no known metadata become pending attributions.
        """
        by_base: dict[int, dict[str, dict[str, int]]] = {}
        entries: dict[int, dict[str, str]] = {}
        cache_get = self.cache.get
        plans_get = plans.get
        totals: dict[tuple[str, str, int], int] = {}
        totals_get = totals.get
        for key, uses in cells.items():
            group = key[:3]
            totals[group] = totals_get(group, 0) + uses
        # The plain counters, per (track, use, base); plans looked up once per track.
        territory = (TerritoryCells(tuple(size for _, size in self.territory))
                     if self.territory else None)
        plan_of: dict[str, Plan | None] = {}
        # With territory: per attributed track, its TerritoryCells code, catalog version
        # and entry.
        known_of: dict[str, tuple[int, str, str]] = {}
        unknown: set[str] = set()
        last_base = None
        parts: dict[str, dict[str, int]] = {}
        day_entries: dict[str, str] = {}
        for (track_id, use, base_start), uses in totals.items():
            if base_start != last_base:
                last_base = base_start
                parts = by_base.get(base_start)  # type: ignore[assignment]
                if parts is None:
                    parts = by_base[base_start] = {
                        TRACK_COUNTS: {}, TRENDING: {}, HOLDER_COUNTS: {}, GENRE_COUNTS: {},
                        TERRITORY_TRACK_COUNTS: {}, TERRITORY_HOLDER_COUNTS: {},
                        TERRITORY_GENRE_COUNTS: {}, ATTRIBUTIONS: {}, GENRE_TRENDING: {}}
                if territory is not None:
                    day_entries = entries.setdefault(base_start - base_start % DAY_MS, {})
            parts[TRACK_COUNTS][f"{use}|{track_id}"] = uses  # groups are distinct
            if track_id in plan_of:
                plan = plan_of[track_id]
            else:
                plan = plan_of[track_id] = plans_get(track_id) or cache_get(track_id)
                if plan is None:
                    unknown.add(track_id)
                elif territory is not None:
                    known_of[track_id] = territory.track(plan)
            if use == USE_CREATE:
                trending = parts[TRENDING]
                trending[track_id] = trending.get(track_id, 0) + uses
                genre = genre_of(plan) if plan is not None else None
                if genre is not None:
                    # keys.genre_trending_field, inline as the track field above
                    parts[GENRE_TRENDING][f"{genre}|{track_id}"] = uses
            if plan is not None:
                add_attribution(parts[HOLDER_COUNTS], parts[GENRE_COUNTS], plan, use, uses)
                if territory is not None:  # the entry on every day the track has uses
                    known = known_of[track_id]
                    day_entries[f"{track_id}|{known[1]}"] = known[2]
        if territory is None:
            if unknown:
                for (track_id, use, base_start, country), uses in cells.items():
                    if track_id in unknown:
                        state.add_pending(track_id, use, base_start, country, uses)
            return by_base, entries
        # The territory counters and the day's attributions, per cell: strings for the
        # track and ledger fields, two ints for the holders and genres (territory.py).
        codes, counts = territory.codes, territory.uses
        country_code: dict[str, int] = {}
        known_get = known_of.get
        last_base = None
        base_code = 0
        for (track_id, use, base_start, country), uses in cells.items():
            if base_start != last_base:  # cells of one base window mostly come together
                last_base = base_start
                parts = by_base[base_start]
                territory_tracks = parts[TERRITORY_TRACK_COUNTS]
                attributions = parts[ATTRIBUTIONS]
                base_code = territory.base_code(base_start)
            territory_tracks[f"{use}|{country}|{track_id}"] = uses
            attributed = known_get(track_id)
            if attributed is None:
                state.add_pending(track_id, use, base_start, country, uses)
                continue
            attributions[f"{track_id}|{country}|{use}|{attributed[1]}"] = uses
            code = country_code.get(country)
            if code is None:
                code = country_code[country] = territory.country_code(country, USE_CREATE)
            codes.append(attributed[0] | base_code | code | (use != USE_CREATE))
            counts.append(uses)
        holders = {base: parts[TERRITORY_HOLDER_COUNTS] for base, parts in by_base.items()}
        genres = {base: parts[TERRITORY_GENRE_COUNTS] for base, parts in by_base.items()}
        territory.sum_into(holders, genres)
        for day in [day for day, values in entries.items() if not values]:
            del entries[day]  # only pending cells that day
        return by_base, entries

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
        territory = self.territory
        window_end = lookup.expire_before - self.base_ms
        for track_id in list(state.pending):
            plan = plans.get(track_id)
            if plan is not None:
                for (use, base_start, country), uses in state.resolve_pending(
                        track_id).items():
                    attribute_uses(deltas, self.windows, plan, use, base_start, uses,
                                   track_id=track_id, country=country, territory=territory)
                continue
            if track_id not in lookup.unknown:
                continue
            for use, base_start, country, uses in state.expire_pending(track_id, window_end):
                attribute_uses(deltas, self.windows, UNATTRIBUTED_PLAN, use, base_start, uses,
                               track_id=track_id, country=country, territory=territory)

    async def _redis(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
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
