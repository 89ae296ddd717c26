"""Read every counter a worker wrote under a key prefix, merged over partition shards.

Key layout (docs/ARCHITECTURE.md, written by streamer/state/keys.py): read here from the
documented names, never through the pipeline's code, so that a mistake in the layout
code shows up as a mismatch instead of being read back the same way. Per input
partition N:

* ``{prefix:N}:t:<window>:<start>`` HASH ``<use>|<track>`` -> uses
* ``{prefix:N}:h:<window>:<start>`` HASH ``<right>|<use>|u|<holder>`` -> uses and
  ``<right>|<use>|w|<holder>`` -> weighted micro-shares
* ``{prefix:N}:g:<window>:<start>`` HASH ``<ai_origin>|<use>|<genre>`` -> uses
* ``{prefix:N}:z:<window>:<start>`` ZSET track -> creates
* ``{prefix:N}:pending`` HASH track -> uses waiting for its TrackCreated (only counted)

and the territory counters (``read_territory_counters``), for the territory windows:

* ``{prefix:N}:tt:<window>:<start>`` HASH ``<use>|<country>|<track>`` -> uses
* ``{prefix:N}:th:<window>:<start>`` HASH ``<right>|<use>|<country>|u|<holder>`` -> uses
  and ``<right>|<use>|<country>|w|<holder>`` -> weighted micro-shares
* ``{prefix:N}:tg:<window>:<start>`` HASH ``<ai_origin>|<use>|<country>|<genre>`` -> uses

Other keys under the prefix (meta, dedupe, catalog) are ignored.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from streamer.state import connection

CounterKey = tuple[Any, ...]

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")
_COUNTER_KINDS = ("t", "h", "g", "z")
TERRITORY_KINDS = ("tt", "th", "tg")
_READ_BATCH = 500


def open_redis(url: str) -> aioredis.Redis | RedisCluster:
    return connection.connect(url)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_counter_key(key: str, key_prefix: str, kinds: tuple[str, ...] = _COUNTER_KINDS
                      ) -> tuple[int, str, str, int] | None:
    """``{prefix:N}:<kind>:<window>:<start>`` -> ``(N, kind, window, start)``, else None."""
    head = "{" + key_prefix + ":"
    if not key.startswith(head):
        return None
    partition, sep, rest = key[len(head):].partition("}:")
    if not sep or not partition.isdigit():
        return None
    parts = rest.split(":")
    if len(parts) != 3 or parts[0] not in kinds:
        return None
    kind, window, start = parts
    if not start.lstrip("-").isdigit():
        return None
    return int(partition), kind, window, int(start)


def _add_hash(totals: defaultdict[CounterKey, int], kind: str, window: str, start: int,
              fields: dict[Any, Any]) -> None:
    for raw_field, raw_value in fields.items():
        field = _text(raw_field)
        value = int(raw_value)
        if kind == "tt":
            use, country, track = field.split("|", 2)
            totals[("ttrack", window, start, track, country, use)] += value
        elif kind == "th":
            right, use, country, code, holder = field.split("|", 4)
            measure = {"u": "uses", "w": "weighted_micro"}[code]
            totals[("tholder", window, start, holder, right, use, country, measure)] += value
        elif kind == "tg":
            origin, use, country, genre = field.split("|", 3)
            totals[("tgenre", window, start, genre, origin, use, country)] += value
        elif kind == "t":
            use, _, track = field.partition("|")
            totals[("track", window, start, track, use)] += value
        elif kind == "h":
            # The holder id comes last and may itself contain "|".
            right, use, code, holder = field.split("|", 3)
            measure = {"u": "uses", "w": "weighted_micro"}[code]
            totals[("holder", window, start, holder, right, use, measure)] += value
        else:
            origin, use, genre = field.split("|", 2)
            totals[("genre", window, start, genre, origin, use)] += value


async def read_territory_counters(redis_client_or_url: Any, key_prefix: str,
                                  partition: int | None = None) -> dict[CounterKey, int]:
    """Every non-zero territory counter (``tt``/``th``/``tg``) under ``key_prefix``, as
    ``read_counters`` reads the plain ones; key shapes in :mod:`streamer.verify`."""
    return await read_counters(redis_client_or_url, key_prefix, partition,
                               kinds=TERRITORY_KINDS)


async def read_counters(redis_client_or_url: Any, key_prefix: str,
                        partition: int | None = None,
                        kinds: tuple[str, ...] = _COUNTER_KINDS) -> dict[CounterKey, int]:
    """Every non-zero counter under ``key_prefix``, summed over the partition shards
    (or only those of the shard of input ``partition``).

    Takes a ``redis.asyncio.Redis``, a ``RedisCluster`` or a URL (``redis://``,
    ``rediss://``, ``redis+cluster://``; a client made from a URL is closed again).
    Reads are not one snapshot: call it when the workers are drained or stopped.
    """
    own = isinstance(redis_client_or_url, str)
    client = open_redis(redis_client_or_url) if own else redis_client_or_url
    try:
        shard = "*" if partition is None else f"{int(partition)}}}:*"
        pattern = "{" + _GLOB_SPECIAL.sub(r"\\\1", key_prefix) + ":" + shard
        wanted: list[tuple[str, str, str, int]] = []
        seen: set[str] = set()
        async for raw_key in client.scan_iter(match=pattern, count=1000):
            key = _text(raw_key)
            if key in seen:  # SCAN may return a key more than once
                continue
            seen.add(key)
            parsed = parse_counter_key(key, key_prefix, kinds)
            if parsed is not None:
                _, kind, window, start = parsed
                wanted.append((key, kind, window, start))
        totals: defaultdict[CounterKey, int] = defaultdict(int)
        for offset in range(0, len(wanted), _READ_BATCH):
            chunk = wanted[offset:offset + _READ_BATCH]
            async with client.pipeline(transaction=False) as pipe:
                for key, kind, _, _ in chunk:
                    if kind == "z":
                        pipe.zrange(key, 0, -1, withscores=True)
                    else:
                        pipe.hgetall(key)
                replies = await pipe.execute()
            for (_, kind, window, start), reply in zip(chunk, replies, strict=True):
                if kind == "z":
                    for member, score in reply:
                        totals[("trending", window, start, _text(member))] += int(score)
                else:
                    _add_hash(totals, kind, window, start, reply)
        return {key: value for key, value in totals.items() if value}
    finally:
        if own:
            await client.aclose()


async def pending_tracks(redis_client_or_url: Any, key_prefix: str, partitions: int) -> int:
    """Tracks whose uses still wait for their TrackCreated, over all partition shards.

    A drained run whose every track was sent should reach 0 within a flush or two;
    counters read before that show those uses in no holder or genre counter yet.
    """
    own = isinstance(redis_client_or_url, str)
    client = open_redis(redis_client_or_url) if own else redis_client_or_url
    try:
        async with client.pipeline(transaction=False) as pipe:
            for partition in range(partitions):
                pipe.hlen(f"{{{key_prefix}:{partition}}}:pending")
            return sum(await pipe.execute())
    finally:
        if own:
            await client.aclose()


async def delete_prefixed_keys(client: Any, key_prefix: str, batch: int = 1000) -> None:
    """Unlink every key a worker wrote under ``key_prefix``: the partition shards
    (``{prefix:N}...``) and the catalog (``prefix:...``). For a test's or a benchmark
    run's cleanup; on a Redis Cluster the keys of one call span slots, so not there."""
    escaped = _GLOB_SPECIAL.sub(r"\\\1", key_prefix)
    for pattern in ("{" + escaped + ":*", escaped + ":*"):
        keys: list[Any] = []
        async for key in client.scan_iter(match=pattern, count=batch):
            keys.append(key)
            if len(keys) >= batch:
                await client.unlink(*keys)
                keys = []
        if keys:
            await client.unlink(*keys)
