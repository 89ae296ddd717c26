"""CatalogRepair's decisions without Redis: when it repairs, what it writes back, what it
leaves in the cache, and when it may trim the copy.

The Redis side (the copy written by the flush script, a real Cluster failover, replicas
acknowledging) is in tests/integration/test_catalog_lost_write.py; here a fake store
answers with chosen markers and replication states.
"""

from __future__ import annotations

import asyncio

from streamer.config import Settings
from streamer.events.validation import TrackMeta
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_for
from streamer.pipeline.catalog_repair import TRIM_EVERY_S, CatalogRepair
from streamer.state.catalog import CatalogCache
from streamer.state.keys import CATALOG_COPY_BUCKET_MS
from streamer.state.partition import PartitionState
from streamer.state.store import ReplicationMark


def _meta(holder: str) -> TrackMeta:
    return TrackMeta("lofi", "human", ((holder, 1_000_000),), ())


class FakeStore:
    def __init__(self) -> None:
        self.marker: str | None = "epoch 1"
        self.copies: dict[int, dict[str, bytes]] = {}
        self.catalog: dict[str, TrackMeta] = {}
        self.durable = True
        self.dropped: list[tuple[int, range]] = []
        self.copy_reads: list[int] = []

    async def failover_marker(self) -> str | None:
        return self.marker

    async def load_catalog_copy(self, partition: int, buckets: range) -> dict[str, bytes]:
        self.copy_reads.append(partition)
        return dict(self.copies.get(partition, {}))

    async def get_catalog(self, track_ids: list[str]) -> dict[str, TrackMeta]:
        return {track: self.catalog[track] for track in track_ids if track in self.catalog}

    async def put_catalog(self, entries: dict[str, bytes], ttl_ms: int) -> None:
        self.catalog.update({track: TrackMeta.from_json(raw) for track, raw in entries.items()})

    async def replication_mark(self) -> ReplicationMark | None:
        return None if self.marker is None else ReplicationMark(self.marker, {})

    async def replicated(self, mark: ReplicationMark) -> bool:
        return self.durable and mark.marker == self.marker

    async def drop_catalog_copy(self, partition: int, buckets: range) -> None:
        self.dropped.append((partition, buckets))


class Rig:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.cache = CatalogCache(1 << 20)
        self.now = 100.0
        self.metrics = Metrics()
        self.repair = CatalogRepair(Settings(), self.store, self.cache,  # type: ignore[arg-type]
                                    self.metrics, clock=lambda: self.now)
        self.states = {0: PartitionState(0, "owner", 0, 300_000),
                       1: PartitionState(1, "owner", 0, 300_000)}

    def restored(self) -> float:
        return self.metrics.registry.get_sample_value("streamer_catalog_restored_total") or 0.0


def test_a_claim_writes_back_missing_and_differing_entries_only() -> None:
    rig = Rig()
    kept, lost, replaced = _meta("kept"), _meta("lost"), _meta("new")
    rig.store.copies[0] = {"t-kept": kept.to_json(), "t-lost": lost.to_json(),
                           "t-replaced": replaced.to_json()}
    rig.store.catalog = {"t-kept": kept, "t-replaced": _meta("old")}
    assert asyncio.run(rig.repair.repair(0)) == 2
    assert rig.store.catalog == {"t-kept": kept, "t-lost": lost, "t-replaced": replaced}
    assert rig.restored() == 2


def test_cached_plans_follow_the_copy_except_for_newer_unflushed_metadata() -> None:
    rig = Rig()
    rig.store.copies[0] = {"t-stale": _meta("flushed").to_json(),
                           "t-unflushed": _meta("flushed").to_json()}
    rig.cache.put("t-stale", plan_for(_meta("lost-in-memory")))
    newest = plan_for(_meta("handled-since"))
    rig.cache.put("t-unflushed", newest)
    asyncio.run(rig.repair.repair(0, unflushed={"t-unflushed"}))
    assert rig.cache.get("t-stale") == plan_for(_meta("flushed"))
    assert rig.cache.get("t-unflushed") is newest
    assert "t-absent" not in rig.cache  # the copy does not fill the cache


def test_a_failover_repairs_every_held_partition_once_its_marker_settled() -> None:
    async def scenario() -> None:
        rig = Rig()
        for partition in rig.states:
            await rig.repair.repair(partition)  # the claims
        reads = len(rig.store.copy_reads)
        await rig.repair.after_failover(rig.states)
        await rig.repair.after_failover(rig.states)
        assert len(rig.store.copy_reads) == reads, "no failover: no repair"

        rig.store.marker = None  # the cluster is not ok: nothing trusted
        await rig.repair.after_failover(rig.states)
        rig.store.marker = "epoch 2"
        await rig.repair.after_failover(rig.states)
        assert len(rig.store.copy_reads) == reads, "not settled yet"
        await rig.repair.after_failover(rig.states)
        assert sorted(rig.store.copy_reads[reads:]) == [0, 1]
        await rig.repair.after_failover(rig.states)
        assert len(rig.store.copy_reads) == reads + 2, "once per marker"

    asyncio.run(scenario())


def test_a_failover_repair_waits_for_the_partitions_flush() -> None:
    async def scenario() -> None:
        rig = Rig()
        await rig.repair.repair(0)
        rig.states = {0: rig.states[0]}
        rig.store.marker = "epoch 2"
        await rig.repair.after_failover(rig.states)
        async with rig.states[0].flush_lock:  # a flush in progress
            repairing = asyncio.ensure_future(rig.repair.after_failover(rig.states))
            await asyncio.sleep(0.01)
            assert rig.store.copy_reads == [0]
        await repairing
        assert rig.store.copy_reads == [0, 0]

    asyncio.run(scenario())


def test_the_copy_is_trimmed_only_once_durable_and_repaired_before_the_mark() -> None:
    async def scenario() -> None:
        rig = Rig()
        await rig.repair.repair(0)
        rig.now += 1
        await rig.repair.after_failover(rig.states)  # partition 1: first repaired here
        await rig.repair.after_failover(rig.states)  # settled: the first mark
        assert rig.store.dropped == []
        rig.store.durable = False
        rig.now += TRIM_EVERY_S + 1
        await rig.repair.after_failover(rig.states)
        assert rig.store.dropped == [], "the replicas lack the writes"
        rig.store.durable = True
        rig.now += 1
        await rig.repair.after_failover(rig.states)
        assert rig.store.dropped == [], "checked at most once a minute"
        rig.now += TRIM_EVERY_S
        await rig.repair.after_failover(rig.states)
        [(partition, buckets)] = rig.store.dropped  # 1 was repaired as the mark was taken
        assert partition == 0 and buckets.step == CATALOG_COPY_BUCKET_MS
        assert buckets, "some buckets are old enough"

        rig.store.dropped.clear()
        rig.store.marker = "epoch 3"  # a failover: the mark is void, the copy repaired again
        rig.now += TRIM_EVERY_S + 1
        for _ in range(2):
            await rig.repair.after_failover(rig.states)
        rig.now += TRIM_EVERY_S + 1
        await rig.repair.after_failover(rig.states)
        assert rig.store.dropped == [], "a new mark first"
        rig.now += TRIM_EVERY_S + 1
        await rig.repair.after_failover(rig.states)
        assert sorted(partition for partition, _ in rig.store.dropped) == [0, 1]

    asyncio.run(scenario())


def test_fake_store_answers_like_the_real_one() -> None:
    """The fake's methods are the real store's (a renamed method fails here, not silently)."""
    from streamer.state.store import RedisStore

    for name in ("failover_marker", "load_catalog_copy", "get_catalog", "put_catalog",
                 "replication_mark", "replicated", "drop_catalog_copy"):
        assert hasattr(RedisStore, name), name


class _OneRedis:
    """A single server's client: INFO replication answers ``reply`` (or raises it)."""

    def __init__(self, reply: dict[str, object] | Exception) -> None:
        self.reply = reply

    def register_script(self, source: str) -> None:
        return None

    async def info(self, section: str) -> dict[str, object]:
        assert section == "replication"
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def test_one_servers_marker_is_its_replication_id_and_none_when_it_cannot_tell() -> None:
    from redis.exceptions import NoPermissionError, ResponseError

    from streamer.state.keys import KeyLayout
    from streamer.state.store import RedisStore

    def marker(reply: dict[str, object] | Exception) -> str | None:
        store = RedisStore(_OneRedis(reply), KeyLayout("t"))  # type: ignore[arg-type]
        return asyncio.run(store.failover_marker())

    assert marker({"role": "master", "master_replid": "abc"}) == "replid abc"
    assert marker({"role": "slave", "master_replid": "abc"}) is None  # not the primary
    # A managed Redis that forbids INFO: claims still repair, failovers are not followed.
    assert marker(ResponseError("unknown command 'INFO'")) is None
    assert marker(NoPermissionError("no permissions to run the 'info' command")) is None


def test_a_claim_reads_every_bucket_that_can_still_exist() -> None:
    """A bucket lives until its retention after its last write (at most its end); the
    claim's range covers that for writers whose clocks are up to a bucket off, and not
    much more."""
    from streamer.state.keys import catalog_copy_bucket, catalog_copy_buckets

    bucket, retention = CATALOG_COPY_BUCKET_MS, 86_400_000
    now = 1_765_000_123_456
    buckets = catalog_copy_buckets(now, retention)
    assert buckets.step == bucket and all(start % bucket == 0 for start in buckets)
    assert catalog_copy_bucket(now + bucket) in buckets  # a writer's clock a bucket ahead
    # last written at its end (a writer a bucket behind): alive until end + retention
    oldest_alive = catalog_copy_bucket(now - retention) - bucket
    assert oldest_alive in buckets
    assert len(buckets) <= retention // bucket + 4
    assert catalog_copy_bucket(now) == now - now % bucket
