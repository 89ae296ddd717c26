"""The counting rules on a 3-master Redis Cluster (redis-py's cluster client).

The cluster comes from ``deploy/local/redis-cluster.sh`` (127.0.0.1:7001-7003): started
here if it is not running, and stopped again at the end only in that case. The worker
picks the cluster client from the URL the script prints (``redis+cluster://...``).

What makes the same code run on a cluster: every key of one atomic partition flush
shares the partition's hash tag ``{prefix:N}`` (one slot, so the Lua flush is legal);
catalog keys are per track (``prefix:cat:{track}``) and written idempotently outside
the flush; queries read the per-partition shards with a pipeline, which the cluster
client splits per node. The test checks exact counts against the ground truth through
batch and single records, pending attribution resolved by a late TrackCreated,
metadata replacement, duplicates, late and invalid events, and a SIGKILL mid-run; then
that the partitions' state really is spread over several masters and that two
workers' query APIs give the ground truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio.cluster import RedisCluster
from support.pipeline import (
    DAY,
    HOUR,
    MINUTE,
    WINDOWS,
    MakeTopic,
    Pipeline,
    past_hour_start,
    right,
    send_single,
    track_event,
    use_event,
)

from streamer.verify import GroundTruth, compare
from streamer.verify.worker_process import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = ROOT / "deploy" / "local" / "redis-cluster.sh"
PARTITIONS = 4
USES = ("create", "play")
RIGHTS = ("master", "publishing")
ORIGINS = ("human", "ai_assisted", "ai_generated")


def cluster_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLUSTER_SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def redis_cluster_url() -> Any:
    """The local Redis Cluster's URL; started (and later stopped) here unless running."""
    started = cluster_script("status").returncode != 0
    if started:
        up = cluster_script("up")
        if up.returncode != 0:
            cluster_script("down")
            pytest.fail(f"deploy/local/redis-cluster.sh up failed:\n{up.stdout}{up.stderr}",
                        pytrace=False)
    url = cluster_script("url").stdout.strip()
    assert url.startswith("redis+cluster://"), url
    try:
        yield url
    finally:
        if started:
            down = cluster_script("down")
            assert down.returncode == 0, down.stdout + down.stderr


def open_cluster(url: str) -> RedisCluster:
    return RedisCluster.from_url(url.replace("+cluster", "", 1))


@pytest_asyncio.fixture(loop_scope="session")
async def cluster_pipeline(kafka_bootstrap: str, redis_cluster_url: str, make_topic: MakeTopic,
                           tmp_path: Path) -> AsyncIterator[Pipeline]:
    prefix = f"test:cluster-{uuid.uuid4().hex[:10]}"
    pipe = await Pipeline.create(kafka_bootstrap=kafka_bootstrap, redis_url=redis_cluster_url,
                                 make_topic=make_topic, redis_prefix=prefix + ":",
                                 workdir=tmp_path, partitions=PARTITIONS)
    try:
        yield pipe
    finally:
        pipe.kill_all()
        await _delete_faust_topics(kafka_bootstrap, pipe.app_id)
        client = open_cluster(redis_cluster_url)
        try:
            for pattern in ("{" + pipe.key_prefix + ":*", pipe.key_prefix + ":*"):
                async for key in client.scan_iter(match=pattern, count=1000):
                    await client.delete(key)  # one key per call: keys span slots
        finally:
            await client.aclose()


async def _delete_faust_topics(kafka_bootstrap: str, app_id: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        await admin.start()
        topics = [t for t in await admin.list_topics() if t.startswith(app_id)]
        if topics:
            await admin.delete_topics(topics)
    except Exception as exc:  # cleanup only: names are unique anyway
        print(f"could not delete Faust topics of {app_id}: {exc!r}")
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def query(worker: WorkerProcess, path: str, **params: Any) -> dict[str, Any]:
    status, body = await worker.get(path, params)
    assert status == 200, (path, params, status, body)
    return body


async def check_api(worker: WorkerProcess, expected: dict[tuple[Any, ...], int],
                    tracks: list[str], holders: list[str], genres: list[str], hour: int,
                    day: int) -> None:
    def get(*key: Any) -> int:
        return int(expected.get(tuple(key), 0))

    for track in tracks:
        body = await query(worker, f"/v1/tracks/{track}/usage", window="1h", at=hour)
        assert body["uses"] == {use: get("track", "1h", hour, track, use) for use in USES}, body
    for holder in holders:
        body = await query(worker, f"/v1/holders/{holder}/usage", window="1d", at=day)
        for right_name in RIGHTS:
            for measure in ("uses", "weighted_micro"):
                assert body["rights"][right_name][measure] == {
                    use: get("holder", "1d", day, holder, right_name, use, measure)
                    for use in USES}, (holder, right_name, measure, body)
    for genre in genres:
        body = await query(worker, f"/v1/genres/{genre}/usage", window="1d", at=day)
        assert body["uses_by_origin"] == {
            origin: {use: get("genre", "1d", day, genre, origin, use) for use in USES}
            for origin in ORIGINS}, body
    body = await query(worker, "/v1/trending", window="1h", at=hour, limit=100)
    want = sorted(((t, get("trending", "1h", hour, t)) for t in tracks),
                  key=lambda item: (-item[1], item[0]))
    assert [(i["track_id"], i["creates"]) for i in body["items"]] == [
        item for item in want if item[1]], body


@pytest.mark.timeout(420)
async def test_counting_rules_on_redis_cluster(cluster_pipeline: Pipeline) -> None:
    pipe = cluster_pipeline
    rng = random.Random(7)
    truth = GroundTruth(WINDOWS)
    base = past_hour_start()
    hour, day = base - base % HOUR, base - base % DAY

    tracks = [pipe.track_in_partition(p, f"cl-{p}-{n}") for p in range(PARTITIONS)
              for n in range(2)]
    late_meta_track, replaced_track = tracks[0], tracks[3]
    genres = ["lofi", "hyperpop", "ambient"]
    holders = ["label-a", "label-b", "publisher-c", "publisher-d", "_unclaimed",
               "_unattributed"]

    def meta(track: str, n: int, **kwargs: Any) -> dict[str, Any]:
        return track_event(track, base - MINUTE, genre=genres[n % 3], ai_origin=ORIGINS[n % 3],
                           rights=[right("label-a", "master", "0.6"),
                                   right("label-b", "master", 0.4 if n % 2 else "0.2"),
                                   right("publisher-c", "publishing", "0.333333")], **kwargs)

    sent: list[dict[str, Any]] = []

    def uses(count: int, only: list[str] | None = None) -> list[dict[str, Any]]:
        events = [use_event(rng.choice(only or tracks), rng.choice(USES),
                            base + rng.randrange(3 * MINUTE), user_id=f"u{rng.randrange(9)}")
                  for _ in range(count)]
        sent.extend(events)
        return events

    async def send(events: list[dict[str, Any]], count_them: bool = True) -> None:
        async with pipe.producer(batch_events=20, linger_ms=10) as producer:
            for event in events:
                if rng.random() < 0.25:
                    await send_single(producer, event)
                else:
                    await producer.send_use(event)
                if count_them:
                    truth.use(event)

    worker = await pipe.start_worker("worker-1")

    # Metadata for every track but one; uses of that one wait for it (pending).
    async with pipe.producer() as producer:
        for n, track in enumerate(tracks):
            if track != late_meta_track:
                event = meta(track, n)
                await producer.send_track(event)
                truth.track_created(event)
    await send(uses(200))
    await send(uses(30, only=[late_meta_track]))
    await pipe.drained()
    # Counted per track at once, attribution pending.
    status, body = await worker.get("/v1/health")
    assert status == 200
    pending = sum(p["pending_tracks"] for p in body["partitions"].values())
    assert pending == 1, body

    # SIGKILL in the middle of a stream of events, restart, carry on.
    async def crash_and_restart() -> None:
        await asyncio.sleep(0.4)
        worker.kill()
        await asyncio.sleep(0.5)
        worker.start()
        await worker.wait_healthy(120)

    await asyncio.gather(send(uses(300)), crash_and_restart())

    # The missing TrackCreated arrives (attributes the pending uses); another track's
    # metadata is replaced (only uses after it get the new holders).
    await pipe.drained()
    async with pipe.producer() as producer:
        first = meta(late_meta_track, 0)
        await producer.send_track(first)
        truth.track_created(first)
        replacement = track_event(replaced_track, base, genre="ambient", ai_origin="ai_generated",
                                  rights=[right("publisher-d", "publishing", "1"),
                                          right("label-b", "master", "0.125")])
        await producer.send_track(replacement)
        truth.track_created(replacement)
    await pipe.drained()
    await send(uses(150))

    # Not counted: duplicates (same event ids), late events, invalid events.
    duplicates = [dict(event) for event in rng.sample(sent[-150:], 25)]
    await send(duplicates, count_them=False)
    late = [use_event(tracks[1], "play", base - 2 * HOUR) for _ in range(3)]
    invalid = [use_event(tracks[2], "share", base) for _ in range(2)]
    async with pipe.producer(validate=False) as producer:
        for event in [*late, *invalid]:
            await send_single(producer, event)
    await pipe.drained()

    expected = truth.expected()
    result = compare(expected, await pipe.counters())
    print(result.summary())
    assert result.ok, str(result)
    assert result.events_expected == len(sent) == 680  # duplicates are not in `sent`
    dlq = await pipe.dlq()
    assert sorted(r.reason.split(":")[0] for r in dlq) == ["invalid_value"] * 2 + ["late"] * 3

    # Each partition's keys share one slot (one atomic flush); the partitions and the
    # per-track catalog spread over the masters.
    client = open_cluster(pipe.redis_url)
    try:
        nodes_by_partition: dict[int, set[str]] = {p: set() for p in range(PARTITIONS)}
        catalog_nodes: set[str] = set()
        async for raw_key in client.scan_iter(match="*" + pipe.key_prefix + ":*", count=1000):
            key = raw_key.decode()
            node = client.get_node_from_key(key)
            assert node is not None
            if key.startswith("{"):
                partition = int(key[len(pipe.key_prefix) + 2:key.index("}")])
                nodes_by_partition[partition].add(node.name)
                assert client.keyslot(key) == client.keyslot(
                    "{" + pipe.key_prefix + f":{partition}}}:meta"), key
            elif key != pipe.key_prefix + ":schema_version":  # one key (state layout)
                assert key.startswith(pipe.key_prefix + ":cat:{"), key
                catalog_nodes.add(node.name)
        assert all(len(nodes) == 1 for nodes in nodes_by_partition.values()), nodes_by_partition
        used = set().union(*nodes_by_partition.values(), catalog_nodes)
        assert len(used) >= 2, used
        assert len({client.keyslot("{" + pipe.key_prefix + f":{p}}}:meta")
                    for p in range(PARTITIONS)}) == PARTITIONS
        for p in range(PARTITIONS):
            meta_hash = await client.hgetall("{" + pipe.key_prefix + f":{p}}}:meta")
            assert meta_hash[b"owner"] and int(meta_hash[b"seq"]) > 0
    finally:
        await client.aclose()

    # Any worker answers any query from the cluster: the restarted one and a new one.
    second = await pipe.start_worker("worker-2")
    for any_worker in (worker, second):
        await check_api(any_worker, expected, tracks, holders, genres, hour, day)
