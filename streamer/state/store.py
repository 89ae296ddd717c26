"""Redis access: claiming a partition, the atomic flush, the catalog and state loading.

The flush is one Lua script per partition, so counter increments, dedupe hashes,
pending attributions and the input offsets they came from are applied all or
nothing. Two guards make it safe to retry and safe against zombies:

* ``owner``: claiming a partition writes a fresh token; a flush carrying another
  token is refused (the partition moved to another worker, which re-reads the offsets).
* ``seq``: each flush names the sequence number it builds on and sets the next one;
  a retry of a flush that was applied before the connection broke sees ``seq`` already
  advanced and reports success without applying it twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from streamer.events.validation import TrackMeta
from streamer.state import connection
from streamer.state.keys import CLOSED_BEFORE_FIELD, KeyLayout, parse_catalog_copy_value

log = logging.getLogger(__name__)

Redis = aioredis.Redis | RedisCluster

# KEYS[1] = meta hash. ARGV[1] = owner token.
_CLAIM = """
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] = meta hash, KEYS[2..n] = the keys written.
# ARGV[1] owner, ARGV[2] expected seq, ARGV[3] MessagePack payload, ARGV[4..] binary values.
# Payload: m {field: value} meta;
#   h [[key#, ttl_ms, [field, ...], [delta, ...], [big field, ...], [big delta, ...]]]
#     hash increments (the "big" ones: |delta| >= 2^53, sent as decimal strings);
#   z [[key#, ttl_ms, [member, ...], [delta, ...]]] sorted-set increments;
#   p [[key#, {field: value}, ttl_ms?]] HSET, "" = HDEL (then PEXPIRE if a TTL is given);
#   a [[key#, ttl_ms, argv#]] APPEND; d [key#] DEL.
# Returns 1 applied, 2 already applied (a retry), 0 refused (not the owner / other seq).
#
# Redis replicates a script by its effects: each write command it runs is appended to
# the AOF on its own, with the full key name. So increments are not applied with one
# HINCRBY / ZINCRBY per field (~100 AOF bytes each) but computed here from one HMGET /
# ZMSCORE per chunk of fields and written with one HSET / ZADD per chunk (~30 bytes a
# field), which also spares Redis a command dispatch per field.
# Hash fields: Lua numbers are doubles, so a field takes that path only if its current
# value is a canonical integer string (what HINCRBY and this script write; HINCRBY
# refuses others, such as "007" or "1e2") and it, its
# delta and their sum all lie strictly within +-2^53, where doubles hold every integer
# and string.format('%d') (a C long) prints it exactly. Any other field is left to
# HINCRBY, with Redis' own int64 arithmetic and errors.
# Sorted sets: scores are doubles in Redis too. ZMSCORE prints a score with %.17g, which
# reads back as the same double; old + delta in Lua is the very addition ZINCRBY does;
# a number passed to ZADD is printed with %.17g again. A sum that is not finite is left
# to ZINCRBY (which refuses NaN).
_FLUSH = """
local LIMIT = 9007199254740992  -- 2^53
local CHUNK = 1000  -- fields per HMGET/HSET; unpack() takes at most ~8000 values
local fmt, find, min, tonumber, unpack = string.format, string.find, math.min, tonumber, unpack
local HUGE = math.huge

local function incr_hash(key, fields, deltas)
  local n = #fields
  for first = 1, n, CHUNK do
    local last = min(n, first + CHUNK - 1)
    local olds = redis.call('HMGET', key, unpack(fields, first, last))
    local args, m, j = {}, 0, 0
    for i = first, last do
      local d = deltas[i]
      local old = olds[j + 1]
      j = j + 1
      local v = 0
      if old then
        v = tonumber(old)
        if not (v and v > -LIMIT and v < LIMIT and (old == '0' or find(old, '^%-?[1-9]%d*$')))
        then v = nil end
      end
      local new = v and d > -LIMIT and d < LIMIT and d % 1 == 0 and v + d
      if new and new > -LIMIT and new < LIMIT then
        args[m + 1] = fields[i]; args[m + 2] = fmt('%d', new); m = m + 2
      else
        redis.call('HINCRBY', key, fields[i], d)
      end
    end
    if m > 0 then redis.call('HSET', key, unpack(args, 1, m)) end
  end
end

local function incr_zset(key, members, deltas)
  local n = #members
  for first = 1, n, CHUNK do
    local last = min(n, first + CHUNK - 1)
    local olds = redis.call('ZMSCORE', key, unpack(members, first, last))
    local args, m, j = {}, 0, 0
    for i = first, last do
      local d = deltas[i]
      local old = olds[j + 1]
      j = j + 1
      local v = 0
      if old then v = tonumber(old) end
      local new = v and v + d
      if new and new > -HUGE and new < HUGE then
        args[m + 1] = new; args[m + 2] = members[i]; m = m + 2
      else
        redis.call('ZINCRBY', key, d, members[i])
      end
    end
    if m > 0 then redis.call('ZADD', key, unpack(args, 1, m)) end
  end
end

local function in_chunks(command, key, args, m)
  for first = 1, m, 2 * CHUNK do
    redis.call(command, key, unpack(args, first, min(m, first + 2 * CHUNK - 1)))
  end
end

local meta = KEYS[1]
local state = redis.call('HMGET', meta, 'owner', 'seq')
if state[1] ~= ARGV[1] then return 0 end
local seq = tonumber(state[2] or '0')
local want = tonumber(ARGV[2])
if seq == want + 1 then return 2 end
if seq ~= want then return 0 end
local p = cmsgpack.unpack(ARGV[3])
local marks, m = {}, 0
for field, value in pairs(p.m) do marks[m + 1] = field; marks[m + 2] = value; m = m + 2 end
redis.call('HSET', meta, 'seq', want + 1, unpack(marks, 1, m))
for _, e in ipairs(p.h) do
  local key = KEYS[e[1]]
  incr_hash(key, e[3], e[4])
  for i, f in ipairs(e[5]) do redis.call('HINCRBY', key, f, e[6][i]) end
  redis.call('PEXPIRE', key, e[2])
end
for _, e in ipairs(p.z) do
  incr_zset(KEYS[e[1]], e[3], e[4])
  redis.call('PEXPIRE', KEYS[e[1]], e[2])
end
for _, e in ipairs(p.p) do
  local sets, dels, ns, nd = {}, {}, 0, 0
  for field, value in pairs(e[2]) do
    if value == '' then nd = nd + 1; dels[nd] = field
    else sets[ns + 1] = field; sets[ns + 2] = value; ns = ns + 2 end
  end
  in_chunks('HDEL', KEYS[e[1]], dels, nd)
  in_chunks('HSET', KEYS[e[1]], sets, ns)
  if e[3] then redis.call('PEXPIRE', KEYS[e[1]], e[3]) end
end
for _, e in ipairs(p.a) do
  redis.call('APPEND', KEYS[e[1]], ARGV[e[3]])
  redis.call('PEXPIRE', KEYS[e[1]], e[2])
end
for _, k in ipairs(p.d) do redis.call('DEL', KEYS[k]) end
return 1
"""


# KEYS = catalog keys; ARGV[1] = TTL in ms, ARGV[i + 1] = the value of KEYS[i].
# One command for many entries: redis-py's client CPU per pipelined command (queueing,
# packing, parsing each reply) is over ten times that per entry of one script call
# (docs/BENCHMARKS.md).
_PUT_CATALOG = """
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[1]) end
return #KEYS
"""
_CATALOG_CHUNK = 1_000  # entries per script call: keeps each call short on the server


_MSGPACK = msgspec.msgpack.Encoder()
# Integers within +-2^53 survive the script's decoding into Lua numbers (doubles) exactly.
_EXACT = 2 ** 53


def _hash_entry(index: int, ttl_ms: int, increments: dict[str, int]) -> tuple[object, ...]:
    """``[key#, ttl, fields, deltas, big fields, big deltas]`` of one hash.

    A delta of 2^53 or more (never seen in practice: 9e9 uses of one holder in one
    flush) would be rounded in Lua, so it travels as a decimal string in the big lists,
    for HINCRBY to parse exactly. Deltas are counts, never negative, so their sum (a
    cheap C loop; max() costs twice as much per field) bounds every one of them.
    """
    deltas = list(increments.values())
    if sum(deltas) < _EXACT:
        return index, ttl_ms, list(increments), deltas, (), ()
    small = {f: d for f, d in increments.items() if -_EXACT < d < _EXACT}
    big = {f: str(d) for f, d in increments.items() if not -_EXACT < d < _EXACT}
    return index, ttl_ms, list(small), list(small.values()), list(big), list(big.values())


@dataclass(frozen=True, slots=True)
class ReplicationMark:
    """The failover marker and, on a Redis Cluster, each primary's replication id and
    offset at one moment (``RedisStore.replication_mark``)."""

    marker: str
    primaries: dict[str, tuple[str, int]]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FlushRefused(RuntimeError):
    """The partition is owned by someone else now, or its state moved on without us."""


@dataclass(slots=True)
class FlushPayload:
    """One atomic write, encoded as one MessagePack argument (cheap for client and Lua)."""

    keys: list[str] = field(default_factory=list)
    meta: dict[str, int | str] = field(default_factory=dict)
    hashes: list[tuple[int, int, dict[str, int]]] = field(default_factory=list)
    zsets: list[tuple[int, int, dict[str, int]]] = field(default_factory=list)
    pending: list[tuple[int, dict[str, str]] | tuple[int, dict[str, str], int]] = field(
        default_factory=list)
    appends: list[tuple[int, int, int]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    fields_written: int = 0

    def _key(self, key: str) -> int:
        self.keys.append(key)
        return len(self.keys) + 1  # KEYS[1] is the meta hash

    @property
    def empty(self) -> bool:
        return not self.keys

    def add_hash(self, key: str, ttl_ms: int, increments: dict[str, int]) -> None:
        self.hashes.append((self._key(key), ttl_ms, increments))
        self.fields_written += len(increments)

    def add_zset(self, key: str, ttl_ms: int, increments: dict[str, int]) -> None:
        self.zsets.append((self._key(key), ttl_ms, increments))
        self.fields_written += len(increments)

    def set_pending(self, key: str, values: dict[str, str], ttl_ms: int | None = None) -> None:
        """HSET the fields ("" deletes one); with ``ttl_ms``, PEXPIRE the key after."""
        index = self._key(key)
        self.pending.append((index, values) if ttl_ms is None else (index, values, ttl_ms))

    def add_append(self, key: str, ttl_ms: int, value: bytes) -> None:
        self.blobs.append(value)
        self.appends.append((self._key(key), ttl_ms, len(self.blobs) + 3))  # ARGV index

    def add_delete(self, key: str) -> None:
        self.deletes.append(self._key(key))

    def encode(self) -> bytes:
        """MessagePack, which the script decodes several times faster than JSON (no number
        parsing); increments as parallel lists of fields and deltas, which it reads in
        chunks without a pass over a map's pairs."""
        return _MSGPACK.encode({"m": self.meta, "h": [_hash_entry(*entry) for entry in self.hashes],
                             "z": [(index, ttl_ms, list(members), list(members.values()))
                                   for index, ttl_ms, members in self.zsets],
                             "p": self.pending, "a": self.appends, "d": self.deletes})


@dataclass(slots=True)
class ClaimedPartition:
    """What Redis remembers of a partition when a worker takes it over."""

    seq: int
    offsets: dict[str, int]
    watermarks: dict[str, int]
    # Days before this (epoch ms) are closed for the ledger: uses of them are late.
    closed_before: int = 0


def connect(url: str) -> Redis:
    """A client for any URL of ``state/connection.py``: ``redis://``, ``rediss://`` (TLS),
    a cluster (``redis+cluster://``) or a Sentinel-found primary (``redis+sentinel://``)."""
    return connection.connect(url)


class RedisStore:
    """The worker's only door to Redis; everything is batched per partition."""

    def __init__(self, client: Redis, layout: KeyLayout) -> None:
        self.client = client
        self.layout = layout
        self._claim = client.register_script(_CLAIM)
        self._flush = client.register_script(_FLUSH)
        self._put_catalog = client.register_script(_PUT_CATALOG)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def claim(self, partition: int, owner: str) -> ClaimedPartition:
        meta = self.layout.meta(partition)
        raw = await self._claim(keys=[meta], args=[owner])
        values = {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw), 2)}
        offsets = {k[4:]: int(v) for k, v in values.items() if k.startswith("off:")}
        watermarks = {k[3:]: int(v) for k, v in values.items() if k.startswith("wm:")}
        return ClaimedPartition(int(values.get("seq", 0)), offsets, watermarks,
                                int(values.get(CLOSED_BEFORE_FIELD, 0)))

    async def owner(self, partition: int) -> str | None:
        value = cast("bytes | None", await self.client.hget(self.layout.meta(partition), "owner"))
        return value.decode() if value is not None else None

    async def flush(self, partition: int, owner: str, seq: int, payload: FlushPayload) -> bool:
        """Apply the payload; True if applied now, False if it had been applied already."""
        args: list[str | int | bytes] = [owner, seq, payload.encode(), *payload.blobs]
        result = await self._flush(keys=[self.layout.meta(partition), *payload.keys], args=args)
        if result == 0:
            raise FlushRefused(f"partition {partition}: owner or sequence changed in Redis")
        return bool(result == 1)

    async def load_pending(self, partition: int) -> dict[bytes, bytes]:
        return cast("dict[bytes, bytes]",
                    await self.client.hgetall(self.layout.pending(partition)))

    async def load_dedupe(
        self, partition: int, topic_code: str, buckets: range
    ) -> dict[int, bytes]:
        keys = [self.layout.dedupe(partition, topic_code, bucket) for bucket in buckets]
        if not keys:
            return {}
        values = cast("list[bytes | None]", await self.client.mget(keys)
                      if not isinstance(self.client, RedisCluster)
                      else await self.client.mget_nonatomic(keys))
        return {bucket: value for bucket, value in zip(buckets, values, strict=True) if value}

    async def get_catalog(self, track_ids: list[str]) -> dict[str, TrackMeta]:
        if not track_ids:
            return {}
        keys = [self.layout.catalog(track_id) for track_id in track_ids]
        if isinstance(self.client, RedisCluster):
            values = await self.client.mget_nonatomic(keys)
        else:
            values = await self.client.mget(keys)
        return {
            track_id: TrackMeta.from_json(value)
            for track_id, value in zip(track_ids, values, strict=True)
            if value is not None
        }

    async def load_catalog_copy(self, partition: int, buckets: range) -> dict[str, bytes]:
        """The partition's copy of its flushed catalog writes: per track, the entry its
        latest flush (highest ``seq``) wrote, in whichever of ``buckets`` it is."""
        layout = self.layout
        async with self.client.pipeline(transaction=False) as pipe:
            for bucket in buckets:  # one slot: the partition's hash tag
                pipe.hgetall(layout.catalog_copy(partition, bucket))
            found = cast("list[dict[bytes, bytes]]", await pipe.execute())
        latest: dict[str, tuple[int, bytes]] = {}
        for entries in found:
            for track_id, value in entries.items():
                seq, entry = parse_catalog_copy_value(value)
                track = track_id.decode()
                known = latest.get(track)
                if known is None or seq > known[0]:
                    latest[track] = (seq, entry)
        return {track: entry for track, (_, entry) in latest.items()}

    async def drop_catalog_copy(self, partition: int, buckets: range) -> None:
        """Delete these buckets of the partition's copy (one slot: one DEL)."""
        if buckets:
            await self.client.delete(*(self.layout.catalog_copy(partition, bucket)
                                       for bucket in buckets))

    async def failover_marker(self) -> str | None:
        """A value that changes with every failover: a Redis Cluster's current epoch (as
        one node sees it while the cluster is ok), else the primary's replication id (a
        promoted replica starts a new one). None while there is no answer to trust (the
        cluster is not ok, or the server is not a primary), and where the server refuses
        the command (a managed Redis may rename or forbid it): then only claims repair
        the catalog, and the copy only expires."""
        try:
            if isinstance(self.client, RedisCluster):
                info = cast("dict[str, object]", await self.client.cluster_info())
                if str(info.get("cluster_state")) != "ok":
                    return None
                return f"epoch {info['cluster_current_epoch']}"
            replication = cast("dict[str, object]", await self.client.info("replication"))
        except ResponseError as exc:
            log.warning("no failover marker from Redis (%s): failovers are not followed", exc)
            return None
        if replication.get("role") != "master":
            return None
        return f"replid {replication['master_replid']}"

    async def replication_mark(self) -> ReplicationMark | None:
        """Where every primary's replication stream stands now: each write acknowledged
        before this call is at or below its primary's offset."""
        marker = await self.failover_marker()
        if marker is None:
            return None
        primaries: dict[str, tuple[str, int]] = {}
        if isinstance(self.client, RedisCluster):
            for node in self.client.get_primaries():
                info = await self._replication_of(node)
                primaries[node.name] = (str(info["master_replid"]),
                                        int(str(info["master_repl_offset"])))
        return ReplicationMark(marker, primaries)

    async def replicated(self, mark: ReplicationMark) -> bool:
        """Whether every write acknowledged before ``mark`` survives a failover.

        One server or Sentinel: a primary's writes reach a replica in order, so one that
        has a flush has the catalog writes made before it; only a failover between them
        (the client follows it) can split them, and it changes the marker. A Redis
        Cluster: no failover since the mark (epoch) and, in every shard, each replica the
        cluster knows, connected or not, has acknowledged its primary's offset of the mark
        (what ``WAIT`` checks for one connection's writes).
        """
        if await self.failover_marker() != mark.marker:
            return False
        if not isinstance(self.client, RedisCluster):
            return True
        shards = cast("list[dict[str, Any]]", await self.client.execute_command(
            "CLUSTER SHARDS", target_nodes=self.client.get_random_node()))
        seen = 0
        for shard in shards:
            nodes = [{_text(key): value for key, value in node.items()}
                     for node in shard["nodes"]]
            primary = [node for node in nodes if _text(node["role"]) == "master"]
            if len(primary) != 1:
                return False
            name = f"{_text(primary[0]['ip'])}:{primary[0]['port']}"
            marked = mark.primaries.get(name)
            node = self.client.get_node(node_name=name)
            if marked is None or node is None:
                return False
            seen += 1
            info = await self._replication_of(node)
            if str(info["master_replid"]) != marked[0]:
                return False
            acked = {f"{entry['ip']}:{entry['port']}": int(entry["offset"])
                     for key, entry in info.items()
                     if key.startswith("slave") and isinstance(entry, dict)}
            for replica in nodes:
                if replica is primary[0]:
                    continue
                if acked.get(f"{_text(replica['ip'])}:{replica['port']}", -1) < marked[1]:
                    return False
        return seen == len(mark.primaries)

    async def _replication_of(self, node: Any) -> dict[str, Any]:
        assert isinstance(self.client, RedisCluster)
        return cast("dict[str, Any]", await self.client.execute_command(
            "INFO", "replication", target_nodes=node))

    async def put_catalog(self, entries: dict[str, bytes], ttl_ms: int) -> None:
        """Idempotent metadata writes: replaying them after a crash gives the same result.

        A script call per chunk of entries; on a cluster, where each entry has a slot of
        its own, a pipeline of SETs.
        """
        if not entries:
            return
        if not isinstance(self.client, RedisCluster):
            items = list(entries.items())
            for start in range(0, len(items), _CATALOG_CHUNK):
                chunk = items[start:start + _CATALOG_CHUNK]
                await self._put_catalog(
                    keys=[self.layout.catalog(track_id) for track_id, _ in chunk],
                    args=[ttl_ms, *(value for _, value in chunk)])
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for track_id, value in entries.items():
                pipe.set(self.layout.catalog(track_id), value, px=ttl_ms)
            await pipe.execute()


async def retry_forever(what: str, attempt: int, cause: BaseException | None = None) -> None:
    """Back off between Redis retries: 50 ms doubling to 2 s. The warning names the cause
    (identical ones are rate-limited with a count, see streamer/logs.py)."""
    delay = min(2.0, 0.05 * (2 ** min(attempt, 6)))
    reason = f"{type(cause).__name__}: {cause}" if cause is not None else "unknown cause"
    log.warning("%s failed (attempt %d): %s; retrying in %.2fs", what, attempt + 1, reason,
                delay)
    await asyncio.sleep(delay)
