"""A catalog write lost while its partition's flush survived (Redis Cluster failover).

On a Redis Cluster the catalog entry ``P:cat:{track}`` has a slot of its own, not the
partition's ``{P:N}``: a failover of the catalog's shard to a replica that lacked the
write loses it while the flush with the offsets past the TrackCreated survives on
another shard (docs/RELIABILITY.md). The TrackCreated is never read again, so without a
repair the track's later uses wait in ``pending`` and are counted for ``_unattributed``.
The flush keeps a copy of its catalog writes under the partition's tag
(``{P:N}:cw:<bucket>``), and the worker restores the catalog from it on claim and after a
cluster failover (pipeline/catalog_repair.py).

Real Redis and real PipelineWorkers without Kafka (records handed to ``handle`` as the
fetch loop would). On one Redis the failover's loss is modelled by deleting the catalog
key (or putting back the entry a lost replacement overwrote), which is what the promoted
replica holds; on a real cluster with replicas (deploy/local/redis-cluster.sh on ports of
its own) the key is deleted and a replica of its shard takes over (``CLUSTER FAILOVER``),
while the worker runs on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pipeline.catalog_repair import TRIM_EVERY_S
from streamer.pipeline.worker import PipelineWorker
from streamer.state.keys import (
    CATALOG_COPY_BUCKET_MS,
    KeyLayout,
    catalog_copy_bucket,
    catalog_copy_value,
)
from streamer.state.store import RedisStore, connect
from streamer.verify.redis_counters import delete_prefixed_keys, read_counters
from tests.support.pipeline import right, track_event, use_event

CLUSTER_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "redis-cluster.sh"
TRACK = "track-catalog-lost"
HOLDER = "label-catalog-lost"


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


def _worker(redis_url: str, settings: Settings) -> PipelineWorker:
    return PipelineWorker(settings, RedisStore(connect(redis_url), KeyLayout(settings.key_prefix)),
                          Metrics())


async def _assign(worker: PipelineWorker, settings: Settings) -> None:
    await worker.on_assigned([TP(settings.uses_topic, 0), TP(settings.tracks_topic, 0)])


def _holder_uses(counters: dict[tuple[object, ...], int], holder: str) -> int:
    return sum(value for key, value in counters.items()
               if key[0] == "holder" and key[1] == "1d" and key[3] == holder
               and key[4] == "master" and key[6] == "uses")


async def test_uses_after_a_restart_keep_their_holder_when_the_catalog_write_was_lost(
        redis_url: str) -> None:
    settings = Settings(key_prefix=f"test:catalog-lost-{uuid.uuid4().hex[:8]}",
                        allowed_lateness_ms=120_000)
    uses, tracks = settings.uses_topic, settings.tracks_topic
    start = (int(time.time() * 1000) // 60_000 - 30) * 60_000  # half an hour ago

    def use(offset: int, at: int, track: str = TRACK) -> bytes:
        return orjson.dumps(use_event(track, "play", at, event_id=f"catalog-lost-{offset}"))

    first = _worker(redis_url, settings)
    await _assign(first, settings)
    await first.handle(tracks, 0, 0, orjson.dumps(track_event(
        TRACK, start, rights=[right(HOLDER, "master", "1")])))
    await first.handle(uses, 0, 0, use(0, start + 1_000))
    await first.flush_all()
    await first.store.close()

    client = aioredis.from_url(redis_url)
    try:
        # The failover: the catalog's shard lost the entry, the partition's kept the flush.
        assert await client.delete(KeyLayout(settings.key_prefix).catalog(TRACK)) == 1

        restarted = _worker(redis_url, settings)  # nothing in its cache
        await _assign(restarted, settings)
        assert restarted.states[0].next_offset == {"u": 1, "t": 1}  # not read again
        for offset in (1, 2, 3):
            await restarted.handle(uses, 0, offset, use(offset, start + offset * 1_000))
        # Event time moves past the uses' window plus the allowed lateness, so uses of a
        # track whose catalog entry Redis does not have give up waiting.
        later = start + 60_000 + settings.allowed_lateness_ms + 60_000
        await restarted.handle(uses, 0, 4, use(4, later, track="track-catalog-clock"))
        await restarted.flush_all()
        await restarted.flush_all()
        await restarted.store.close()

        counters = await read_counters(client, settings.key_prefix)
        assert _holder_uses(counters, "_unattributed") == 0
        assert _holder_uses(counters, HOLDER) == 4
    finally:
        await delete_prefixed_keys(client, settings.key_prefix)
        await client.aclose()


def _restored(worker: PipelineWorker) -> float:
    return worker.metrics.registry.get_sample_value("streamer_catalog_restored_total") or 0.0


async def test_a_lost_replacement_is_restored_on_claim_and_the_copy_expires(
        redis_url: str) -> None:
    """The promoted replica had the track's first entry but not its replacement: the claim
    puts back the replacement (the copy holds the partition's latest flushed write), and
    later uses go to the new holder. The copy expires after its retention."""
    settings = Settings(key_prefix=f"test:catalog-replaced-{uuid.uuid4().hex[:8]}",
                        allowed_lateness_ms=120_000)
    uses, tracks = settings.uses_topic, settings.tracks_topic
    layout = KeyLayout(settings.key_prefix)
    start = (int(time.time() * 1000) // 60_000 - 30) * 60_000
    old_holder, new_holder = "label-before", "label-after"

    first = _worker(redis_url, settings)
    await _assign(first, settings)
    await first.handle(tracks, 0, 0, orjson.dumps(track_event(
        TRACK, start, rights=[right(old_holder, "master", "1")])))
    await first.flush_all()
    client = aioredis.from_url(redis_url)
    try:
        first_entry = await client.get(layout.catalog(TRACK))
        assert first_entry is not None
        await first.handle(tracks, 0, 1, orjson.dumps(track_event(
            TRACK, start + 1_000, rights=[right(new_holder, "master", "1")])))
        await first.flush_all()
        await first.store.close()
        replacement = await client.get(layout.catalog(TRACK))
        assert replacement is not None and new_holder.encode() in replacement

        copies = [key async for key in client.scan_iter(match=layout.tag(0) + ":cw:*")]
        assert len(copies) in (1, 2)  # two if the flushes straddled a bucket
        for key in copies:  # bounded: each bucket expires after the retention
            assert 0 < await client.pttl(key) <= settings.catalog_copy_retention_ms

        # The failover: the catalog's shard went back to the first entry.
        await client.set(layout.catalog(TRACK), first_entry)

        restarted = _worker(redis_url, settings)
        await _assign(restarted, settings)
        assert await client.get(layout.catalog(TRACK)) == replacement
        assert _restored(restarted) == 1
        for offset in (0, 1):
            await restarted.handle(uses, 0, offset, orjson.dumps(use_event(
                TRACK, "play", start + 2_000 + offset, event_id=f"replaced-{offset}")))
        await restarted.flush_all()
        await restarted.store.close()

        counters = await read_counters(client, settings.key_prefix)
        assert _holder_uses(counters, new_holder) == 2
        assert _holder_uses(counters, old_holder) == 0

        again = _worker(redis_url, settings)  # nothing lost any more: nothing to restore
        await _assign(again, settings)
        assert _restored(again) == 0
        await again.store.close()
    finally:
        await delete_prefixed_keys(client, settings.key_prefix)
        await client.aclose()


@dataclass(frozen=True)
class Cluster:
    url: str
    ports: list[int]
    nodes_dir: Path
    script: Callable[[str], subprocess.CompletedProcess[str]]

    def pid(self, port: int) -> int:
        return int((self.nodes_dir / str(port) / "redis.pid").read_text().strip())


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three primaries with a replica each, on free ports of their own (not the shared
    stack's, nor test_ops_redis_cluster's 7001-7003); stopped and deleted at the end."""
    base = next((base for base in range(7161, 7400, 10)
                 if all(_free(port) for port in range(base, base + 6))), None)
    assert base is not None, "no six free consecutive ports in 7161-7399"
    ports = list(range(base, base + 6))
    local_dir = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "STREAMER_LOCAL_DIR": str(local_dir),
           "STREAMER_LOCAL_REDIS_CLUSTER_PORTS": " ".join(map(str, ports)),
           "STREAMER_LOCAL_REDIS_CLUSTER_REPLICAS": "1",
           "STREAMER_LOCAL_REDIS_CLUSTER_NODE_TIMEOUT_MS": "2000"}

    def script(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLUSTER_SCRIPT), action], env=env, capture_output=True,
                              text=True, timeout=180, check=False)

    try:
        up = script("up")
        assert up.returncode == 0, f"redis-cluster.sh up failed:\n{up.stdout}{up.stderr}"
        yield Cluster(f"redis+cluster://127.0.0.1:{ports[0]}/0", ports,
                      local_dir / "redis-cluster", script)
    finally:
        down = script("down")
        assert down.returncode == 0, down.stdout + down.stderr


async def _role_of(port: int) -> tuple[str, int | None]:
    async with aioredis.Redis(port=port) as node:
        role = await node.role()
    kind = role[0].decode() if isinstance(role[0], bytes) else role[0]
    return kind, int(role[2]) if kind == "slave" else None


async def _cluster_ok(port: int) -> bool:
    """The node sees the whole cluster ok (after a failover, each learns it by gossip)."""
    async with aioredis.Redis(port=port) as node:
        info = await node.execute_command("CLUSTER INFO")
    if isinstance(info, dict):  # redis-py parses the reply into a dict
        return info.get("cluster_state", info.get(b"cluster_state")) in ("ok", b"ok")
    return "cluster_state:ok" in (info.decode() if isinstance(info, bytes) else str(info))


async def test_a_catalog_write_lost_in_a_cluster_failover_is_restored_by_the_running_worker(
        replicated_cluster: Cluster) -> None:
    """A replica of the catalog entry's shard that lacks it takes over (the entry is
    deleted, then ``CLUSTER FAILOVER`` promotes the replica): the worker, which goes on
    running, sees the cluster's epoch move and writes the entry back from its copy."""
    url, ports = replicated_cluster.url, replicated_cluster.ports
    settings = Settings(key_prefix=f"test:catalog-failover-{uuid.uuid4().hex[:8]}")
    layout = KeyLayout(settings.key_prefix)
    start = (int(time.time() * 1000) // 60_000 - 30) * 60_000
    worker = _worker(url, settings)
    cluster = RedisCluster.from_url(url.replace("+cluster", "", 1))
    try:
        await _assign(worker, settings)
        await worker.handle(settings.tracks_topic, 0, 0, orjson.dumps(track_event(
            TRACK, start, rights=[right(HOLDER, "master", "1")])))
        await worker.flush_round(0.0, asyncio.sleep)  # the flush, and the epoch seen
        entry = await cluster.get(layout.catalog(TRACK))
        assert entry is not None
        epoch_before = await worker.store.failover_marker()
        assert epoch_before is not None

        slot = key_slot(layout.catalog(TRACK).encode())
        primary = cluster.get_node_from_key(layout.catalog(TRACK)).port
        roles = {port: await _role_of(port) for port in ports}
        [replica] = [port for port, role in roles.items() if role == ("slave", primary)]
        # What the promoted replica holds: the entry's write never reached it.
        assert await cluster.delete(layout.catalog(TRACK)) == 1
        async with aioredis.Redis(port=replica) as node:
            assert await node.execute_command("CLUSTER FAILOVER")  # waits for the DEL first
        deadline = time.monotonic() + 30
        while not (await _role_of(replica) == ("master", None) and await _cluster_ok(replica)):
            assert time.monotonic() < deadline, f"{replica} did not take over slot {slot}"
            await asyncio.sleep(0.1)

        restored = None
        while restored is None:  # flush rounds until the worker has seen the epoch settle
            assert time.monotonic() < deadline, "the catalog entry was not restored"
            await worker.flush_round(0.0, asyncio.sleep)
            restored = await cluster.get(layout.catalog(TRACK))
            await asyncio.sleep(0.1)
        assert restored == entry
        assert await worker.store.failover_marker() != epoch_before
        assert _restored(worker) == 1
        await worker.flush_round(0.0, asyncio.sleep)  # once per epoch, not every round
        assert _restored(worker) == 1
    finally:
        await worker.store.close()
        for pattern in ("{" + settings.key_prefix + ":*", settings.key_prefix + ":*"):
            async for key in cluster.scan_iter(match=pattern):
                await cluster.delete(key)  # one key per call: keys span slots
        await cluster.aclose()


async def test_the_copy_is_trimmed_once_every_replica_has_its_catalog_writes(
        replicated_cluster: Cluster) -> None:
    """A bucket of the copy older than two buckets goes once every replica of every shard
    has acknowledged the writes before a mark; not while one replica is frozen behind
    it (SIGSTOP). The current bucket stays."""
    url, ports = replicated_cluster.url, replicated_cluster.ports
    settings = Settings(key_prefix=f"test:catalog-trim-{uuid.uuid4().hex[:8]}")
    layout = KeyLayout(settings.key_prefix)
    now = [1000.0]
    worker = PipelineWorker(settings, RedisStore(connect(url), layout), Metrics(),
                            clock=lambda: now[0])
    cluster = RedisCluster.from_url(url.replace("+cluster", "", 1))
    frozen: int | None = None
    try:
        await _assign(worker, settings)
        await worker.handle(settings.tracks_topic, 0, 0, orjson.dumps(track_event(
            TRACK, int(time.time() * 1000), rights=[right(HOLDER, "master", "1")])))
        await worker.flush_all()
        current = [key async for key in cluster.scan_iter(match=layout.tag(0) + ":cw:*")]
        assert len(current) == 1
        old = layout.catalog_copy(
            0, catalog_copy_bucket(int(time.time() * 1000)) - 3 * CATALOG_COPY_BUCKET_MS)
        await cluster.hset(old, "track-older", catalog_copy_value(0, b"{}"))

        # A replica frozen behind a write its primary took before the mark.
        filler = "{catalog-trim}filler"
        primary = cluster.get_node_from_key(filler).port
        roles = {port: await _role_of(port) for port in ports}
        [frozen] = [port for port, role in roles.items() if role == ("slave", primary)]
        os.kill(replicated_cluster.pid(frozen), signal.SIGSTOP)
        await cluster.set(filler, "x")

        now[0] += 1  # the claim's repair came before the mark
        for _ in range(2):  # the marker settles; the first trim check takes the mark
            await worker.flush_round(0.0, asyncio.sleep)
        now[0] += TRIM_EVERY_S + 1
        await asyncio.sleep(2)  # the other replicas acknowledge meanwhile (every second)
        await worker.flush_round(0.0, asyncio.sleep)
        assert await cluster.exists(old) == 1, "trimmed while a replica lacked the writes"

        os.kill(replicated_cluster.pid(frozen), signal.SIGCONT)
        frozen = None
        deadline = time.monotonic() + 30
        while await cluster.exists(old):
            assert time.monotonic() < deadline, "the durable bucket was not trimmed"
            now[0] += TRIM_EVERY_S + 1
            await worker.flush_round(0.0, asyncio.sleep)
            await asyncio.sleep(0.5)
        assert await cluster.exists(*current) == 1  # the current bucket stays
    finally:
        if frozen is not None:
            os.kill(replicated_cluster.pid(frozen), signal.SIGCONT)
        await worker.store.close()
        for pattern in ("{" + settings.key_prefix + ":*", settings.key_prefix + ":*",
                        "{catalog-trim}*"):
            async for key in cluster.scan_iter(match=pattern):
                await cluster.delete(key)
        await cluster.aclose()


async def test_one_redis_trims_the_copy_before_the_mark_and_keeps_the_current_bucket(
        redis_url: str) -> None:
    """One primary: a flush and the catalog writes before it reach any replica in order,
    so buckets written before a mark go at the next check while no failover happened
    (the replication id stayed)."""
    settings = Settings(key_prefix=f"test:catalog-trim1-{uuid.uuid4().hex[:8]}")
    layout = KeyLayout(settings.key_prefix)
    now = [1000.0]
    worker = PipelineWorker(settings, RedisStore(connect(redis_url), layout), Metrics(),
                            clock=lambda: now[0])
    client = aioredis.from_url(redis_url)
    try:
        await _assign(worker, settings)
        await worker.handle(settings.tracks_topic, 0, 0, orjson.dumps(track_event(
            TRACK, int(time.time() * 1000), rights=[right(HOLDER, "master", "1")])))
        await worker.flush_all()
        [current] = [key async for key in client.scan_iter(match=layout.tag(0) + ":cw:*")]
        old = layout.catalog_copy(
            0, catalog_copy_bucket(int(time.time() * 1000)) - 3 * CATALOG_COPY_BUCKET_MS)
        await client.hset(old, "track-older", catalog_copy_value(0, b"{}"))

        now[0] += 1
        for _ in range(2):  # the marker settles; the first trim check takes the mark
            await worker.flush_round(0.0, asyncio.sleep)
        assert await client.exists(old) == 1
        now[0] += TRIM_EVERY_S - 2
        await worker.flush_round(0.0, asyncio.sleep)
        assert await client.exists(old) == 1, "checked again before a minute passed"
        now[0] += 3
        await worker.flush_round(0.0, asyncio.sleep)
        assert await client.exists(old) == 0
        assert await client.exists(current) == 1
    finally:
        await worker.store.close()
        await delete_prefixed_keys(client, settings.key_prefix)
        await client.aclose()


async def test_a_catalog_write_a_killed_primary_never_replicated_is_restored(
        replicated_cluster: Cluster) -> None:
    """The real loss: the catalog shard's replica is frozen behind a 64 MiB value, the
    worker's flush writes the entry there (acknowledged, stuck in the primary's output
    buffer) and its offsets on another shard, the primary is SIGKILLed and the replica
    takes over without the entry (measured, not assumed). The running worker restores
    it from the copy; a worker claiming the partition afterwards has nothing to do."""
    cluster_nodes = replicated_cluster
    url, ports = cluster_nodes.url, cluster_nodes.ports
    settings = Settings(key_prefix=f"test:catalog-killed-{uuid.uuid4().hex[:8]}")
    layout = KeyLayout(settings.key_prefix)
    cluster = RedisCluster.from_url(url.replace("+cluster", "", 1))
    worker = _worker(url, settings)
    killed: int | None = None
    try:
        await cluster.initialize()
        partition_primary = cluster.get_node_from_key(layout.meta(0)).port
        track = next(track for track in (f"track-killed-{i}" for i in range(100))
                     if cluster.get_node_from_key(layout.catalog(track)).port
                     != partition_primary)
        key = layout.catalog(track)
        catalog_primary = cluster.get_node_from_key(key).port
        roles = {port: await _role_of(port) for port in ports}
        [replica] = [port for port, role in roles.items() if role == ("slave", catalog_primary)]
        await _assign(worker, settings)
        await worker.flush_round(0.0, asyncio.sleep)

        async with aioredis.Redis(port=catalog_primary, socket_timeout=30) as node:
            os.kill(cluster_nodes.pid(replica), signal.SIGSTOP)
            try:
                await node.set("{" + track + "}:filler", b"\0" * (64 << 20))
                await worker.handle(settings.tracks_topic, 0, 0, orjson.dumps(track_event(
                    track, int(time.time() * 1000), rights=[right(HOLDER, "master", "1")])))
                await worker.flush_all()
                entry = await node.get(key)
                assert entry is not None
                killed = catalog_primary
                os.kill(cluster_nodes.pid(catalog_primary), signal.SIGKILL)
            finally:
                os.kill(cluster_nodes.pid(replica), signal.SIGCONT)
        deadline = time.monotonic() + 60
        while not (await _role_of(replica) == ("master", None)
                   and await _cluster_ok(replica) and await _cluster_ok(partition_primary)):
            assert time.monotonic() < deadline, f"{replica} did not take over"
            await asyncio.sleep(0.2)
        async with aioredis.Redis(port=replica) as promoted:
            assert await promoted.get(key) is None, "the promoted replica had the entry"
        async with aioredis.Redis(port=partition_primary) as node:
            assert await node.hget(layout.meta(0), "off:t") == b"1"  # the flush survived

        restored = None
        while restored is None:  # flush rounds until the worker has seen the epoch settle
            assert time.monotonic() < deadline, "the catalog entry was not restored"
            await worker.flush_round(0.0, asyncio.sleep)
            async with aioredis.Redis(port=replica) as promoted:
                restored = await promoted.get(key)
            await asyncio.sleep(0.2)
        assert restored == entry
        assert _restored(worker) == 1
        await worker.store.close()
        worker = _worker(url, settings)  # a claim now: the catalog is whole again
        await _assign(worker, settings)
        assert _restored(worker) == 0
    finally:
        await worker.store.close()
        if killed is not None:  # back as a replica of the promoted node
            up = cluster_nodes.script("up")
            assert up.returncode == 0, up.stdout + up.stderr
        for pattern in ("{" + settings.key_prefix + ":*", settings.key_prefix + ":*",
                        "{track-killed-*"):
            async for found in cluster.scan_iter(match=pattern):
                await cluster.delete(found)
        await cluster.aclose()
