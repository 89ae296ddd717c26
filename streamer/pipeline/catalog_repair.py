"""Restoring catalog entries a Redis failover lost while their flush survived.

A catalog entry (``P:cat:{track}``) has a slot of its own, so on a Redis Cluster it
lives on another shard than the flush that moved the offsets past its TrackCreated. A
failover of the catalog's shard to a replica that lacked the write loses it, the flush
survives, and the TrackCreated is never read again. (With one primary, Sentinel, the
same happens only when the failover falls between the catalog write and the flush.)
The flush script therefore keeps a copy of its catalog writes under the partition's own
hash tag (``{P:N}:cw:<bucket>``): the copy survives exactly when the flush's offsets
do. From it the catalog is repaired

* on every claim of the partition, before any record of it counts (a worker that was
  down during the failover, a restart, a rebalance), and
* for every partition a worker holds, once it sees a failover (the cluster's epoch or
  the primary's replication id moved, and held still for a check).

The copy holds, per track, what the partition's latest flush wrote, which under the
co-partitioning rule (docs/ARCHITECTURE.md) is what the catalog must say at the stored
offsets, so an entry that is missing or differs is written back. (Differs: a lost
replacement; or a catalog write whose flush did not land, which the partition writes
again when it re-reads the TrackCreated, so until then uses re-read before it take the
metadata they were counted with the first time.)

The copy is bounded: each bucket expires after ``STREAMER_CATALOG_COPY_RETENTION``, and
is deleted sooner once its catalog writes are known to survive a failover
(``RedisStore.replicated``: on a cluster, every replica has acknowledged them), checked
about once a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container

from streamer.config import Settings
from streamer.events.validation import TrackMeta
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_for
from streamer.state.catalog import CatalogCache
from streamer.state.keys import CATALOG_COPY_BUCKET_MS, catalog_copy_buckets
from streamer.state.partition import PartitionState
from streamer.state.store import RedisStore, ReplicationMark

log = logging.getLogger(__name__)

TRIM_EVERY_S = 60.0
"""How often the copy's durable buckets are looked for (an INFO per cluster primary)."""


class CatalogRepair:
    """Per partition, the failover marker its catalog was last checked against its copy
    at; and the replication mark the next trim of the copies waits for."""

    def __init__(self, settings: Settings, store: RedisStore, cache: CatalogCache,
                 metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.metrics = metrics
        self.clock = clock
        # partition -> (marker seen before the repair, clock when it was done)
        self._checked: dict[int, tuple[str | None, float]] = {}
        self._last_marker: str | None = None
        # (clock and wall ms just before it was taken, the mark)
        self._mark: tuple[float, int, ReplicationMark] | None = None
        self._last_trim_check = 0.0

    async def repair(self, partition: int, unflushed: Container[str] = ()) -> int:
        """Write back the partition's flushed catalog entries the catalog lacks or has
        otherwise; returns how many. Raises Redis errors (the caller retries).

        ``unflushed``: tracks with newer metadata in memory (handled since the last
        flush), whose cached plans are already the newest and stay."""
        marker = await self.store.failover_marker()  # before the reads: a later one is seen
        now_ms = int(time.time() * 1000)
        copy = await self.store.load_catalog_copy(
            partition, catalog_copy_buckets(now_ms, self.settings.catalog_copy_retention_ms))
        restored: dict[str, bytes] = {}
        if copy:
            catalog = await self.store.get_catalog(list(copy))
            for track_id, entry in copy.items():
                meta = TrackMeta.from_json(entry)
                if catalog.get(track_id) != meta:
                    restored[track_id] = entry
                if track_id in self.cache and track_id not in unflushed:
                    # a plan this process read or handled before Redis lost the write
                    self.cache.put(track_id, plan_for(meta))
        if restored:
            await self.store.put_catalog(restored, self.settings.catalog_ttl_ms)
            self.metrics.catalog_restored.inc(len(restored))
            log.warning("partition %d: restored %d catalog entries Redis had lost or had "
                        "otherwise (e.g. %s) from the partition's copy", partition,
                        len(restored), next(iter(restored)))
        self._checked[partition] = (marker, self.clock())
        return len(restored)

    async def after_failover(self, states: dict[int, PartitionState]) -> None:
        """Each flush round: repair the held partitions once a failover's marker has
        settled (the same in two checks in a row), each under its flush lock, so a
        flush's newer catalog write is never overwritten by the copy's older one; then
        trim the copies whose catalog writes are known to survive a failover."""
        marker = await self.store.failover_marker()
        settled = marker is not None and marker == self._last_marker
        self._last_marker = marker
        if not settled:
            return
        for partition, state in list(states.items()):
            if self._checked.get(partition, (None, 0.0))[0] == marker:
                continue
            async with state.flush_lock:
                if states.get(partition) is state:
                    await self.repair(partition, state.catalog_writes)
        await self._trim(states, marker)

    async def _trim(self, states: dict[int, PartitionState], marker: str | None) -> None:
        """Delete the buckets written before the mark, once the mark's writes survive a
        failover, for the partitions repaired at this marker before the mark (a restored
        entry is a catalog write too). Buckets are named by their writer's clock: one
        bucket more is left for clocks up to a bucket apart."""
        now = self.clock()
        if now - self._last_trim_check < TRIM_EVERY_S and self._mark is not None:
            return
        self._last_trim_check = now
        mark = self._mark
        if mark is None or mark[2].marker != marker or not await self.store.replicated(mark[2]):
            if mark is None or mark[2].marker != marker:
                await self._take_mark()
            return  # replicas still behind the mark: it stays, checked again later
        taken, wall_ms, _ = mark
        oldest = catalog_copy_buckets(wall_ms, self.settings.catalog_copy_retention_ms).start
        durable = range(oldest, wall_ms - 2 * CATALOG_COPY_BUCKET_MS + 1,
                        CATALOG_COPY_BUCKET_MS)
        for partition, state in list(states.items()):
            checked = self._checked.get(partition)
            if checked is None or checked[0] != marker or checked[1] >= taken:
                continue
            async with state.flush_lock:
                if states.get(partition) is state:
                    await self.store.drop_catalog_copy(partition, durable)
        await self._take_mark()

    async def _take_mark(self) -> None:
        taken, wall_ms = self.clock(), int(time.time() * 1000)
        mark = await self.store.replication_mark()
        self._mark = (taken, wall_ms, mark) if mark is not None else None
