"""The verification tools themselves (streamer.verify), checked against hand-computed values.

Every pipeline test trusts ``GroundTruth``, ``read_counters``, ``compare`` and
``wait_drained``; these tests pin them down with numbers written out by hand, against the
real Redis and Kafka (no worker needed).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from support.pipeline import MakeTopic

from streamer.verify import GroundTruth, Reconciliation, compare
from streamer.verify.kafka_progress import wait_drained
from streamer.verify.redis_counters import pending_tracks, read_counters
from streamer.verify.truth import share_to_micro

M, H = 60_000, 3_600_000
WINDOWS = (("1m", M), ("1h", H))


def track(track_id: str, genre: str, origin: str, *rights: tuple[str, str, object]
          ) -> dict[str, object]:
    return {"event_id": f"tc-{track_id}-{genre}", "track_id": track_id, "occurred_at": 0,
            "creator_id": "c", "genre": genre, "ai_origin": origin,
            "rights": [{"holder_id": h, "right": r, "share": s} for h, r, s in rights]}


def use(track_id: str, kind: str, at: int) -> dict[str, object]:
    return {"event_id": f"u-{track_id}-{kind}-{at}", "track_id": track_id, "occurred_at": at,
            "user_id": "u", "use": kind, "country": "DE"}


def test_share_parsing_is_exact() -> None:
    assert share_to_micro(0.1) + share_to_micro(0.2) == 300_000  # 0.1 + 0.2 != 0.3 in floats
    assert share_to_micro("0.000001") == 1
    assert share_to_micro(1) == share_to_micro("1.000000") == 1_000_000
    assert share_to_micro(0.333333) == 333_333
    for bad in ("0.1234567", 0.1234567, 0, "0", 1.5, "-0.5", True, "abc", None, "NaN"):
        with pytest.raises(ValueError):
            share_to_micro(bad)


def test_ground_truth_matches_hand_computed_counters() -> None:
    truth = GroundTruth(WINDOWS)
    t = 61 * M + 5  # minute 61, hour 1
    truth.track_created(track("A", "lofi", "human", ("L1", "master", "0.5")))
    truth.use(use("A", "play", t))
    truth.use(use("A", "play", t + 1))
    truth.use(use("A", "create", t + M))  # next minute, same hour
    truth.use(use("B", "play", t))  # B has no metadata yet ...
    truth.use(use("C", "create", t))  # ... nor C, which never gets any
    truth.track_created(track("B", "ambient", "ai_generated", ("L2", "master", 1),
                              ("P2", "publishing", 0.25)))  # ... B's arrives: attributed
    truth.track_created(track("A", "phonk", "ai_assisted", ("L3", "master", 0.25)))
    truth.use(use("A", "play", t + 2))  # after the replacement
    assert truth.pending_tracks() == {"C"}
    truth.finish()
    m61, m62, h1 = 61 * M, 62 * M, H

    expected: dict[tuple[object, ...], int] = {}

    def add(key: tuple[object, ...], value: int) -> None:
        expected[key] = expected.get(key, 0) + value

    for window, start_a_play, start_a_create in (("1m", m61, m62), ("1h", h1, h1)):
        s = start_a_play
        add(("track", window, s, "A", "play"), 3)
        add(("track", window, start_a_create, "A", "create"), 1)
        add(("trending", window, start_a_create, "A"), 1)
        add(("track", window, s, "B", "play"), 1)
        add(("track", window, s, "C", "create"), 1)
        add(("trending", window, s, "C"), 1)
        # A's two plays before the replacement: L1 half, the rest unclaimed; no publisher.
        for holder, right, uses, micro in (("L1", "master", 2, 1_000_000),
                                           ("_unclaimed", "master", 2, 1_000_000),
                                           ("_unclaimed", "publishing", 2, 2_000_000)):
            add(("holder", window, s, holder, right, "play", "uses"), uses)
            add(("holder", window, s, holder, right, "play", "weighted_micro"), micro)
        add(("genre", window, s, "lofi", "human", "play"), 2)
        # A's create (before the replacement) is in the next minute, same hour.
        c = start_a_create
        for holder, right, micro in (("L1", "master", 500_000), ("_unclaimed", "master", 500_000),
                                     ("_unclaimed", "publishing", 1_000_000)):
            add(("holder", window, c, holder, right, "create", "uses"), 1)
            add(("holder", window, c, holder, right, "create", "weighted_micro"), micro)
        add(("genre", window, c, "lofi", "human", "create"), 1)
        # A's play after the replacement: L3 a quarter.
        for holder, right, micro in (("L3", "master", 250_000), ("_unclaimed", "master", 750_000),
                                     ("_unclaimed", "publishing", 1_000_000)):
            add(("holder", window, s, holder, right, "play", "uses"), 1)
            add(("holder", window, s, holder, right, "play", "weighted_micro"), micro)
        add(("genre", window, s, "phonk", "ai_assisted", "play"), 1)
        # B: attributed when its metadata came.
        for holder, right, micro in (("L2", "master", 1_000_000), ("P2", "publishing", 250_000),
                                     ("_unclaimed", "publishing", 750_000)):
            add(("holder", window, s, holder, right, "play", "uses"), 1)
            add(("holder", window, s, holder, right, "play", "weighted_micro"), micro)
        add(("genre", window, s, "ambient", "ai_generated", "play"), 1)
        # C: never attributed -> _unattributed, both rights, full weight, no genre.
        for right in ("master", "publishing"):
            add(("holder", window, s, "_unattributed", right, "create", "uses"), 1)
            add(("holder", window, s, "_unattributed", right, "create", "weighted_micro"),
                1_000_000)

    assert truth.expected() == expected
    assert truth.uses_counted == 6


def test_ground_truth_expected_before_finish_treats_waiting_uses_as_unattributed() -> None:
    truth = GroundTruth(WINDOWS)
    truth.use(use("X", "play", 5))
    before = truth.expected()
    assert before[("holder", "1h", 0, "_unattributed", "master", "play", "uses")] == 1
    truth.track_created(track("X", "lofi", "human", ("L", "master", "1")))  # still in time
    after = truth.expected()
    assert ("holder", "1h", 0, "_unattributed", "master", "play", "uses") not in after
    assert after[("holder", "1h", 0, "L", "master", "play", "weighted_micro")] == 1_000_000
    assert after[("genre", "1m", 0, "lofi", "human", "play")] == 1


def test_compare_counts_lost_double_and_mismatches() -> None:
    expected = {("track", "1m", 0, "a", "play"): 5, ("track", "1h", 0, "a", "play"): 5,
                ("track", "1m", 0, "b", "play"): 1, ("track", "1h", 0, "b", "play"): 1,
                ("genre", "1h", 0, "g", "human", "play"): 6}
    actual = {("track", "1m", 0, "a", "play"): 3, ("track", "1h", 0, "a", "play"): 3,
              ("track", "1m", 0, "b", "play"): 2, ("track", "1h", 0, "b", "play"): 2,
              ("genre", "1h", 0, "g", "human", "play"): 6,
              ("trending", "1h", 0, "zzz"): 1}
    result = compare(expected, actual)
    assert (result.lost, result.double) == (4, 2)
    assert sorted(result.mismatches, key=repr) == sorted([
        (("track", "1m", 0, "a", "play"), 5, 3), (("track", "1h", 0, "a", "play"), 5, 3),
        (("track", "1m", 0, "b", "play"), 1, 2), (("track", "1h", 0, "b", "play"), 1, 2),
        (("trending", "1h", 0, "zzz"), 0, 1)], key=repr)
    assert not result.ok
    assert result.summary() == ("events expected 6, counted 5, lost 4, double 2, "
                                "mismatched counters 5")
    same = compare(expected, dict(expected))
    assert same.ok and same.summary() == ("events expected 6, counted 6, lost 0, double 0, "
                                          "mismatched counters 0")
    # Shards compared one by one add up to the whole comparison.
    per_shard = Reconciliation()
    for track in ("a", "b"):
        def shard(counters: dict[Any, int], track: str = track) -> dict[Any, int]:
            return {k: v for k, v in counters.items() if (k[3] == "a") == (track == "a")}
        per_shard.add(compare(shard(expected), shard(actual)))
    assert per_shard.summary() == result.summary()
    assert sorted(per_shard.mismatches, key=repr) == sorted(result.mismatches, key=repr)


async def test_read_counters_reads_the_documented_layout(redis_url: str,
                                                         redis_prefix: str) -> None:
    prefix = redis_prefix.rstrip(":")
    client = aioredis.from_url(redis_url)
    try:
        for p, n in ((0, 2), (1, 3)):
            tag = "{" + f"{prefix}:{p}" + "}"
            await client.hset(f"{tag}:t:1h:3600000", mapping={"play|trk": n, "create|trk": 1})
            await client.hset(f"{tag}:h:1h:3600000", mapping={
                "master|play|u|lab|el": n, "master|play|w|lab|el": n * 250_000,
                "publishing|create|u|_unclaimed": 1})
            await client.hset(f"{tag}:g:1d:0", mapping={"ai_generated|play|lofi": n})
            await client.zadd(f"{tag}:z:1h:3600000", {"trk": 1})
            await client.hset(f"{tag}:meta", mapping={"off:u": 7, "seq": 3})  # ignored
            await client.hset(f"{tag}:pending", mapping={"trk": "[]"})  # pending_tracks
            await client.set(f"{tag}:dd:u:12", b"\x00" * 8)  # ignored
        await client.set(f"{prefix}:cat:{{trk}}", b"{}")  # ignored
        # A neighbouring prefix that starts the same must not be read.
        await client.hset("{" + f"{prefix}x:0" + "}:t:1h:3600000", mapping={"play|trk": 100})
        # One shard: partition 1 only, not 10.
        await client.hset("{" + f"{prefix}:10" + "}:t:1h:3600000", mapping={"play|trk": 100})
        shard_1 = await read_counters(client, prefix, partition=1)
        await client.delete("{" + f"{prefix}:10" + "}:t:1h:3600000")
        got = await read_counters(client, prefix)
        assert got == await read_counters(redis_url, prefix)  # a URL works too
        assert await pending_tracks(client, prefix, 2) == 2  # one waiting track per shard
        assert await pending_tracks(client, prefix, 1) == 1
    finally:
        await client.delete("{" + f"{prefix}x:0" + "}:t:1h:3600000",
                            "{" + f"{prefix}:10" + "}:t:1h:3600000")
        for p in (0, 1):
            tag = "{" + f"{prefix}:{p}" + "}"
            for suffix in (":t:1h:3600000", ":h:1h:3600000", ":g:1d:0", ":z:1h:3600000",
                           ":meta", ":pending", ":dd:u:12"):
                await client.delete(tag + suffix)
        await client.aclose()
    assert got == {
        ("track", "1h", 3_600_000, "trk", "play"): 5,
        ("track", "1h", 3_600_000, "trk", "create"): 2,
        ("holder", "1h", 3_600_000, "lab|el", "master", "play", "uses"): 5,
        ("holder", "1h", 3_600_000, "lab|el", "master", "play", "weighted_micro"): 1_250_000,
        ("holder", "1h", 3_600_000, "_unclaimed", "publishing", "create", "uses"): 2,
        ("genre", "1d", 0, "lofi", "ai_generated", "play"): 5,
        ("trending", "1h", 3_600_000, "trk"): 2,
    }
    assert shard_1 == {
        ("track", "1h", 3_600_000, "trk", "play"): 3,
        ("track", "1h", 3_600_000, "trk", "create"): 1,
        ("holder", "1h", 3_600_000, "lab|el", "master", "play", "uses"): 3,
        ("holder", "1h", 3_600_000, "lab|el", "master", "play", "weighted_micro"): 750_000,
        ("holder", "1h", 3_600_000, "_unclaimed", "publishing", "create", "uses"): 1,
        ("genre", "1d", 0, "lofi", "ai_generated", "play"): 3,
        ("trending", "1h", 3_600_000, "trk"): 1,
    }


async def test_wait_drained_compares_redis_offsets_with_kafka_end_offsets(
        kafka_bootstrap: str, redis_url: str, redis_prefix: str, make_topic: MakeTopic) -> None:
    prefix = redis_prefix.rstrip(":")
    uses = await make_topic("verify-uses", partitions=2)
    tracks = await make_topic("verify-tracks", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(uses, b"x", partition=1)
        await producer.send_and_wait(tracks, b"x", partition=0)
    finally:
        await producer.stop()
    with pytest.raises(TimeoutError) as failure:
        await wait_drained(kafka_bootstrap, redis_url, prefix, [uses, tracks], 2, 0.5)
    text = str(failure.value)
    assert f"{uses}[1] counted to 0 of 3 BEHIND" in text
    assert f"{tracks}[0] counted to 0 of 1 BEHIND" in text
    assert f"{uses}[0] counted to 0 of 0;" in text

    client = aioredis.from_url(redis_url)
    try:
        await client.hset("{" + f"{prefix}:1" + "}:meta", mapping={"off:u": 3})
        await client.hset("{" + f"{prefix}:0" + "}:meta", mapping={"off:t": 1})
        progress = await wait_drained(kafka_bootstrap, client, prefix, [uses, tracks], 2, 10)
        assert progress == {0: {"u": (0, 0), "t": (1, 1)}, 1: {"u": (3, 3), "t": (0, 0)}}
        # Only sounds.used, given as a mapping of codes.
        await wait_drained(kafka_bootstrap, client, prefix, {"u": uses}, [1], 10)
        # A Redis stall longer than the client's socket timeout is waited out.
        impatient = aioredis.from_url(redis_url, socket_timeout=0.3)
        try:
            await client.execute_command("CLIENT", "PAUSE", 1500, "ALL")
            stalled = time.monotonic()
            assert await wait_drained(kafka_bootstrap, impatient, prefix, [uses, tracks], 2,
                                      10) == progress
            assert time.monotonic() - stalled >= 1.2
        finally:
            await client.execute_command("CLIENT", "UNPAUSE")
            await impatient.aclose()
    finally:
        for p in (0, 1):
            await client.delete("{" + f"{prefix}:{p}" + "}:meta")
        await client.aclose()
