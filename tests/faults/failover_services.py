"""Replicated services of the failover scenarios (issue 26), on ports of their own.

* :class:`SentinelRedis`: deploy/local/redis-sentinel.sh (primary, two replicas, three
  Sentinels) on 26380-26399.
* :class:`ClusterRedis`: deploy/local/redis-cluster.sh with a replica per primary on
  7100-7199.
* :class:`KafkaCluster`: deploy/local/kafka-cluster.sh (three KRaft nodes, replication
  factor 3, ``min.insync.replicas=2``) on 19100-19191.

:func:`kill_with_lagging_replicas` is how a scenario makes a promoted replica miss
flushes the worker saw acknowledged: the replicas are frozen (SIGSTOP), a large value
written to the primary fills the replication link's socket buffers, the worker's next
flushes are acknowledged behind it (they sit in the primary's own output buffer), and
the primary is SIGKILLed before the replicas wake up. What is lost is measured, not
assumed: the ``seq`` of every partition on the primary just before the kill against the
one on the promoted replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping

import redis.asyncio as aioredis
from fault_harness import LOCAL_SCRIPTS, _PrivateService, free_ports, log

from streamer.state.keys import KeyLayout

# Larger than what the loopback socket buffers of a frozen replica's link take in
# (tcp_wmem max 4 MiB here, a receive buffer that a frozen reader does not grow).
FILLER_BYTES = 64 << 20


class _ScriptService(_PrivateService):
    def run_args(self, *args: str, timeout: float = 180.0) -> str:
        started = time.monotonic()
        result = subprocess.run([str(LOCAL_SCRIPTS / self.script), *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{self.script} {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        log(f"{self.script} {' '.join(args)}: {time.monotonic() - started:.1f}s")
        return result.stdout

    async def arun_args(self, *args: str, timeout: float = 180.0) -> str:
        return await asyncio.to_thread(self.run_args, *args, timeout=timeout)


class _RedisNodes(_ScriptService):
    node_root: str
    ports: list[int]

    def pid(self, port: int) -> int:
        return int((self.dir / self.node_root / str(port) / "redis.pid").read_text().strip())

    def client(self, port: int) -> aioredis.Redis:
        return aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=10)

    def freeze(self, ports: list[int]) -> None:
        for port in ports:
            os.kill(self.pid(port), signal.SIGSTOP)

    def thaw(self, ports: list[int]) -> None:
        for port in ports:
            with contextlib.suppress(OSError, ValueError):
                os.kill(self.pid(port), signal.SIGCONT)

    def thaw_all(self) -> None:
        self.thaw(self.ports)


class SentinelRedis(_RedisNodes):
    script = "redis-sentinel.sh"
    node_root = "redis-sentinel"

    def __init__(self, name: str, appendfsync: str = "always") -> None:
        ports = free_ports(26380, 6, step=10, tries=2)
        self.ports, self.sentinel_ports = ports[:3], ports[3:]
        super().__init__(name, {
            "STREAMER_LOCAL_SENTINEL_REDIS_PORTS": " ".join(map(str, self.ports)),
            "STREAMER_LOCAL_SENTINEL_PORTS": " ".join(map(str, self.sentinel_ports)),
            "STREAMER_LOCAL_SENTINEL_DOWN_AFTER_MS": "3000",  # > a lag cycle's freeze
            "STREAMER_LOCAL_SENTINEL_FAILOVER_TIMEOUT_MS": "10000",
            "STREAMER_LOCAL_REDIS_APPENDFSYNC": appendfsync,
        })
        self.appendfsync = appendfsync
        self.url = ("redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
                    + "/streamer/0")

    async def primary(self) -> int:
        return int((await self.arun_args("primary", timeout=30)).strip())

    async def wait_new_primary(self, old: int, timeout: float = 60.0) -> tuple[int, float]:
        """The port of the primary the Sentinels promoted instead of ``old``, and when."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                port = await self.primary()
            except RuntimeError:
                port = old
            if port != old:
                async with self.client(port) as client:
                    role = await client.role()
                if role[0] in (b"master", "master"):
                    return port, time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"no replica promoted within {timeout:.0f}s after {old} died")


class ClusterRedis(_RedisNodes):
    """Three primaries with a replica each."""

    script = "redis-cluster.sh"
    node_root = "redis-cluster"

    def __init__(self, name: str) -> None:
        self.ports = free_ports(7101, 6, step=10, tries=9)
        super().__init__(name, {
            "STREAMER_LOCAL_REDIS_CLUSTER_PORTS": " ".join(map(str, self.ports)),
            "STREAMER_LOCAL_REDIS_CLUSTER_REPLICAS": "1",
            "STREAMER_LOCAL_REDIS_CLUSTER_NODE_TIMEOUT_MS": "2000",
        })
        self.url = f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    async def roles(self) -> dict[int, tuple[str, int | None]]:
        """port -> ("master", None) or ("slave", port of its primary), for live nodes."""
        roles: dict[int, tuple[str, int | None]] = {}
        for port in self.ports:
            try:
                async with self.client(port) as client:
                    role = await client.role()
            except Exception:
                continue
            kind = role[0].decode() if isinstance(role[0], bytes) else role[0]
            roles[port] = (kind, int(role[2]) if kind == "slave" else None)
        return roles

    async def primary_of_slot(self, slot: int) -> int:
        async with self.client(self.ports[0]) as client:
            for start, end, primary, *_ in await client.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(primary[1])
        raise LookupError(slot)

    async def wait_promoted(self, old: int, slot: int, timeout: float = 60.0) -> tuple[int, float]:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            for port in self.ports:
                if port == old:
                    continue
                try:
                    async with self.client(port) as client:
                        info = await client.execute_command("CLUSTER INFO")
                        if not _cluster_ok(info):
                            continue
                        owner = await self.primary_of_slot_via(client, slot)
                except Exception:
                    continue
                if owner is not None and owner != old:
                    return owner, time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"no replica took over slot {slot} from {old} in {timeout:.0f}s")

    @staticmethod
    async def primary_of_slot_via(client: aioredis.Redis, slot: int) -> int | None:
        for start, end, primary, *_ in await client.execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
        return None


def _cluster_ok(info: object) -> bool:
    """``cluster_state:ok`` in a CLUSTER INFO reply (redis-py parses it into a dict)."""
    if isinstance(info, dict):
        state = info.get("cluster_state", info.get(b"cluster_state"))
        return state in ("ok", b"ok")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


class KafkaCluster(_ScriptService):
    """Three KRaft nodes, each broker and controller."""

    script = "kafka-cluster.sh"

    def __init__(self, name: str) -> None:
        ports = free_ports(19101, 6, step=10, tries=8)
        self.broker_ports, self.controller_ports = ports[:3], ports[3:]
        super().__init__(name, {
            "STREAMER_LOCAL_KAFKA_CLUSTER_PORTS": " ".join(map(str, self.broker_ports)),
            "STREAMER_LOCAL_KAFKA_CLUSTER_CONTROLLER_PORTS":
                " ".join(map(str, self.controller_ports)),
            "STREAMER_LOCAL_KAFKA_HEAP": "384m",
        })
        self.bootstrap = ",".join(f"127.0.0.1:{port}" for port in self.broker_ports)

    async def controller(self) -> int:
        """The node id (1-3) of the active KRaft controller (the quorum leader)."""
        return int((await self.arun_args("controller", timeout=120)).strip())


# ------------------------------------------------------------------ measuring a loss


async def partition_seqs(client: aioredis.Redis, prefix: str, partitions: int,
                         only: list[int] | None = None) -> dict[int, int]:
    """``seq`` of each partition's meta hash on one server (``only`` those it holds)."""
    layout = KeyLayout(prefix)
    wanted = list(range(partitions)) if only is None else only
    async with client.pipeline(transaction=False) as pipe:
        for partition in wanted:
            pipe.hget(layout.meta(partition), "seq")
        values = await pipe.execute()
    return {partition: int(value or 0) for partition, value in zip(wanted, values, strict=True)}


def flushes_lost(acknowledged: Mapping[int, int], promoted: Mapping[int, int]) -> int:
    """Flushes the worker saw applied that the promoted replica does not have."""
    return sum(max(0, seq - promoted.get(partition, 0))
               for partition, seq in acknowledged.items())


async def kill_with_lagging_replicas(
        nodes: _RedisNodes, primary: int, replicas: list[int], filler_key: str,
        seqs: Callable[[aioredis.Redis], Awaitable[dict[int, int]]],
        flushes: int = 2, timeout: float = 15.0) -> dict[int, int]:
    """SIGKILL ``primary`` while its replicas miss its last writes; return the ``seq`` per
    partition it had acknowledged just before (see the module docstring).

    Waits for ``flushes`` flushes of partitions held by ``primary`` (their ``seq`` on it)
    after the filler, so the flushes that the replicas miss are really there.
    """
    async with nodes.client(primary) as client:
        nodes.freeze(replicas)
        try:
            await client.set(filler_key, b"\0" * FILLER_BYTES)
            before = await seqs(client)
            deadline = time.monotonic() + timeout
            while True:
                acknowledged = await seqs(client)
                if sum(acknowledged.values()) - sum(before.values()) >= flushes:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {flushes} flushes on {primary} within "
                                         f"{timeout:.0f}s while its replicas lagged")
                await asyncio.sleep(0.02)
            os.kill(nodes.pid(primary), signal.SIGKILL)
        finally:
            nodes.thaw(replicas)
    return acknowledged
