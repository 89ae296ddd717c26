"""Restoring catalog entries a Redis Cluster failover lost while their flush survived.

A catalog entry (``P:cat:{track}``) has a slot of its own, so on a cluster it lives on
another shard than the flush that moved the offsets past its TrackCreated. A failover
of the catalog's shard to a replica that lacked the write loses it, the flush survives,
and the TrackCreated is never read again. The flush script therefore keeps a copy of
its catalog writes under the partition's own hash tag (``{P:N}:cw:<hour>``): the copy
survives exactly when the flush's offsets do. From it the catalog is repaired

* on every claim of the partition, before any record of it counts (a worker that was
  down during the failover, or a restart, or a rebalance), and
* for every partition a worker holds, once it sees the cluster's epoch move (every
  failover raises it) and settle, under the partition's flush lock.

The copy holds, per track, what the partition's latest flush wrote, which under the
co-partitioning rule (docs/ARCHITECTURE.md) is what the catalog must say at the stored
offsets, so an entry that is missing or differs is written back. (Differs: a lost
replacement; or a catalog write whose flush did not land, which the partition writes
again when it re-reads the TrackCreated, so until then uses re-read before it take the
metadata they were counted with the first time.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container

from streamer.config import Settings
from streamer.events.validation import TrackMeta
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_for
from streamer.state.catalog import CatalogCache
from streamer.state.keys import catalog_copy_buckets
from streamer.state.partition import PartitionState
from streamer.state.store import RedisStore

log = logging.getLogger(__name__)


class CatalogRepair:
    """Per partition, the cluster epoch its catalog was last checked against its copy."""

    def __init__(self, settings: Settings, store: RedisStore, cache: CatalogCache,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.metrics = metrics
        self._checked_at: dict[int, int | None] = {}
        self._last_epoch: int | None = None

    async def repair(self, partition: int, unflushed: Container[str] = ()) -> int:
        """Write back the partition's flushed catalog entries the catalog lacks or has
        otherwise; returns how many. Raises Redis errors (the caller retries).

        ``unflushed``: tracks with newer metadata in memory (handled since the last
        flush), whose cached plans are already the newest and stay."""
        epoch = await self.store.cluster_epoch()  # before the reads: a later failover is seen
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
        self._checked_at[partition] = epoch
        return len(restored)

    async def after_failover(self, states: dict[int, PartitionState]) -> None:
        """Repair the held partitions once the cluster's epoch moved and settled (the same
        in two checks in a row), each under its flush lock, so a flush's newer catalog
        write is never overwritten by the copy's older one. Nothing on one server."""
        epoch = await self.store.cluster_epoch()
        settled = epoch is not None and epoch == self._last_epoch
        self._last_epoch = epoch
        if not settled:
            return
        for partition, state in list(states.items()):
            if self._checked_at.get(partition, epoch) == epoch:
                continue
            async with state.flush_lock:
                if states.get(partition) is state:
                    await self.repair(partition, state.catalog_writes)
