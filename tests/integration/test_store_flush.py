"""The flush script against the real Redis: exact arithmetic and unchanged guarantees.

The script computes hash and sorted-set increments in Lua (doubles) and writes them with
one HSET / ZADD per chunk, falling back to HINCRBY / ZINCRBY where doubles could be
inexact. Every case here is checked against what HINCRBY / ZINCRBY themselves give on a
second copy of the same keys, and against Python's integers, around and beyond 2^53.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from streamer.state.keys import KeyLayout
from streamer.state.store import FlushPayload, FlushRefused, RedisStore

P53 = 2 ** 53
TTL = 3_600_000
# Current values around the edges of exact doubles, and ordinary ones.
EDGE_VALUES = [0, 1, 7, 999_999, 10 ** 15, P53 - 3, P53 - 2, P53 - 1, P53, P53 + 1,
               P53 + 2, 2 ** 60 + 1, 2 ** 63 - 10, -1, -(P53 - 1), -P53, -(P53 + 1),
               -(2 ** 63) + 10]
EDGE_DELTAS = [0, 1, 2, 3, 1_000_000, 999_999_000_000, P53 - 2, P53 - 1]


@pytest_asyncio.fixture(loop_scope="session")
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis_client = aioredis.from_url(redis_url, decode_responses=False)
    yield redis_client
    await redis_client.aclose()


async def claimed(client: aioredis.Redis, prefix: str, partition: int = 0
                  ) -> tuple[RedisStore, str]:
    store = RedisStore(client, KeyLayout(prefix.rstrip(":")))
    await store.claim(partition, "owner-1")
    return store, "owner-1"


def reference_key(key: str) -> str:
    return key + ":ref"


async def hash_ints(client: aioredis.Redis, key: str) -> dict[str, int]:
    return {f.decode(): int(v) for f, v in (await client.hgetall(key)).items()}


async def test_hash_increments_are_exact_around_and_beyond_2_53(
        client: aioredis.Redis, redis_prefix: str) -> None:
    store, owner = await claimed(client, redis_prefix)
    key = store.layout.holder_counts(0, "1d", 0)
    start: dict[str, int] = {}
    deltas: dict[str, int] = {}
    for i, value in enumerate(EDGE_VALUES):
        for j, delta in enumerate(EDGE_DELTAS):
            if -(2 ** 63) <= value + delta < 2 ** 63:
                field = f"master|play|w|h{i}-{j}"
                start[field] = value
                deltas[field] = delta
    for j, delta in enumerate(EDGE_DELTAS):
        deltas[f"new|{j}"] = delta  # fields not in Redis yet
    await client.hset(key, mapping=start)
    await client.hset(reference_key(key), mapping=start)
    payload = FlushPayload()
    payload.add_hash(key, TTL, deltas)
    assert await store.flush(0, owner, 0, payload)
    async with client.pipeline(transaction=False) as pipe:
        for field, delta in deltas.items():
            pipe.hincrby(reference_key(key), field, delta)
        await pipe.execute()

    got = await client.hgetall(key)
    assert got == await client.hgetall(reference_key(key))  # byte for byte
    assert {f.decode(): int(v) for f, v in got.items()} == {
        f: start.get(f, 0) + d for f, d in deltas.items()}
    assert got[b"master|play|w|h7-7"] == str(P53 - 1 + P53 - 1).encode()  # 2^54 - 2
    assert got[b"master|play|w|h7-1"] == b"9007199254740992"  # 2^53 - 1 + 1
    assert 0 < await client.pttl(key) <= TTL


async def test_deltas_of_2_53_and_more_stay_exact(client: aioredis.Redis,
                                                  redis_prefix: str) -> None:
    """Such deltas cannot be Lua numbers: they travel as decimal strings to HINCRBY."""
    store, owner = await claimed(client, redis_prefix)
    key = store.layout.holder_counts(0, "1d", 0)
    deltas = {"a": P53, "b": P53 + 1, "c": 2 ** 62 + 3, "d": 5, "e": P53 - 1}
    await client.hset(key, mapping={"b": 1, "d": P53 + 7})
    payload = FlushPayload()
    payload.add_hash(key, TTL, deltas)
    assert await store.flush(0, owner, 0, payload)
    assert await hash_ints(client, key) == {
        "a": P53, "b": P53 + 2, "c": 2 ** 62 + 3, "d": P53 + 12, "e": P53 - 1}


async def test_many_fields_over_several_chunks_and_repeated_flushes(
        client: aioredis.Redis, redis_prefix: str) -> None:
    rng = random.Random(7)
    store, owner = await claimed(client, redis_prefix)
    keys = [store.layout.track_counts(0, "1m", 0), store.layout.holder_counts(0, "1h", 0)]
    expected: dict[str, dict[str, int]] = {key: {} for key in keys}
    for seq in range(4):
        payload = FlushPayload()
        for key in keys:
            deltas = {f"play|trk{rng.randrange(5_000)}": rng.choice([1, 2, 37, 1_000_000])
                      for _ in range(3_000)}
            payload.add_hash(key, TTL, deltas)
            for field, delta in deltas.items():
                expected[key][field] = expected[key].get(field, 0) + delta
        assert await store.flush(0, owner, seq, payload)
    for key in keys:
        assert await hash_ints(client, key) == expected[key]


async def test_non_integer_values_fail_as_hincrby_does(client: aioredis.Redis,
                                                       redis_prefix: str) -> None:
    """Values HINCRBY refuses (not canonical integers) are not parsed by Lua either."""
    store, owner = await claimed(client, redis_prefix)
    for seq, bad in enumerate([b"1e2", b"007", b"+5", b" 5", b"5.0", b"0x10", b"-0", b"abc"]):
        key = store.layout.genre_counts(0, "1d", seq)
        await client.hset(key, "f", bad)
        await client.hset(reference_key(key), "f", bad)
        with pytest.raises(ResponseError, match="not an integer"):
            await client.hincrby(reference_key(key), "f", 1)
        payload = FlushPayload()
        payload.add_hash(key, TTL, {"f": 1})
        with pytest.raises(ResponseError, match="not an integer"):
            await store.flush(0, owner, seq, payload)
        assert await client.hget(key, "f") == bad
        await client.hset(store.layout.meta(0), "seq", seq + 1)  # the script stopped midway


async def test_sorted_set_increments_equal_zincrby(client: aioredis.Redis,
                                                   redis_prefix: str) -> None:
    store, owner = await claimed(client, redis_prefix)
    key = store.layout.trending(0, "1h", 0)
    start = {"a": 0.1, "b": float(P53), "c": 1e300, "d": float("inf"), "e": -3.0,
             "f": 2.0 ** 60, "g": 12345.0, "h": float("-inf")}
    deltas = {"a": 1, "b": 1, "c": 7, "d": 1, "e": 3, "f": 3, "g": 1, "h": 2, "new": 4,
              "big": P53 + 1}
    await client.zadd(key, start)
    await client.zadd(reference_key(key), start)
    payload = FlushPayload()
    payload.add_zset(key, TTL, deltas)
    assert await store.flush(0, owner, 0, payload)
    for member, delta in deltas.items():
        await client.zincrby(reference_key(key), delta, member)
    got = dict(await client.zrange(key, 0, -1, withscores=True))
    assert got == dict(await client.zrange(reference_key(key), 0, -1, withscores=True))
    assert got[b"a"] == 0.1 + 1 and got[b"g"] == 12346.0 and got[b"new"] == 4.0
    assert 0 < await client.pttl(key) <= TTL


async def test_meta_pending_appends_and_deletes(client: aioredis.Redis,
                                                redis_prefix: str) -> None:
    store, owner = await claimed(client, redis_prefix)
    layout = store.layout
    pending = layout.pending(0)
    await client.hset(pending, mapping={f"old{i}": "[]" for i in range(2_500)})
    dead = layout.dedupe(0, "u", 1)
    await client.set(dead, b"x")
    payload = FlushPayload()
    payload.meta.update({"off:u": 12, "off:t": 3, "wm:u": 1_764_666_000_123, "wm:t": 5})
    payload.set_pending(pending, {**{f"old{i}": "" for i in range(2_400)},
                                  **{f"new{i}": f'[["play",{i},1]]' for i in range(2_100)}})
    payload.add_append(layout.dedupe(0, "u", 2), TTL, b"\x00\x01" * 8)
    payload.add_delete(dead)
    assert await store.flush(0, owner, 0, payload)
    meta = await client.hgetall(layout.meta(0))
    assert meta == {b"owner": owner.encode(), b"seq": b"1", b"off:u": b"12", b"off:t": b"3",
                    b"wm:u": b"1764666000123", b"wm:t": b"5"}
    left = await client.hgetall(pending)
    assert len(left) == 100 + 2_100
    assert left[b"old2400"] == b"[]" and left[b"new2099"] == b'[["play",2099,1]]'
    assert await client.get(layout.dedupe(0, "u", 2)) == b"\x00\x01" * 8
    assert not await client.exists(dead)


async def test_retry_and_zombie_guards_are_unchanged(client: aioredis.Redis,
                                                     redis_prefix: str) -> None:
    store, owner = await claimed(client, redis_prefix)
    key = store.layout.track_counts(0, "1m", 0)
    payload = FlushPayload()
    payload.add_hash(key, TTL, {"play|trk": 2})
    payload.meta["off:u"] = 5
    assert await store.flush(0, owner, 0, payload) is True
    assert await store.flush(0, owner, 0, payload) is False  # a retry: not applied again
    assert await hash_ints(client, key) == {"play|trk": 2}
    await store.claim(0, "owner-2")
    with pytest.raises(FlushRefused):
        await store.flush(0, owner, 1, payload)
    assert await hash_ints(client, key) == {"play|trk": 2}
