"""Topics and Redis keys that earlier benchmark runs left behind, found before a run starts.

A run deletes its own state when it ends, but a killed run (or one with ``--keep``)
leaves its topics and up to millions of Redis keys. They skew the next measurement:
every AOF rewrite writes them out again and stalls Redis for seconds, which shows in a
sustained run's p99 (measured: docs/BENCHMARKS.md, "Leftovers of earlier runs"). So the
harness looks first and, as ``--leftovers`` says, refuses to start, deletes them, or runs
anyway and records them in the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from streamer.verify.redis_counters import delete_prefixed_keys, open_redis

if TYPE_CHECKING:
    from benchmarks.common import Stack

# Every run's topics, app id and key prefix start with its id: bench-<label>-<8 hex>.
# Keys are "{<id>:<partition>}..." (per-partition state) or "<id>:..." (catalog); the
# Quix peer's own topics put "changelog__" or "repartition__" before it.
RUN_ID = re.compile(r"^(?:[a-z]+__)?\{?(bench-[a-z0-9-]+?-[0-9a-f]{8})(?=[:.}-]|$)")
KEY_PATTERNS = ("bench-*", "{bench-*")


def run_id_of(name: str) -> str | None:
    """The benchmark run a topic or key belongs to, or None if it is not a run's."""
    match = RUN_ID.match(name)
    return match.group(1) if match else None


@dataclass(slots=True)
class Leftovers:
    """Per run id: how many Redis keys and which topics are still there."""

    keys: dict[str, int] = field(default_factory=dict)
    topics: dict[str, list[str]] = field(default_factory=dict)

    @property
    def runs(self) -> list[str]:
        return sorted(set(self.keys) | set(self.topics))

    def __bool__(self) -> bool:
        return bool(self.keys or self.topics)

    def describe(self) -> str:
        return "; ".join(f"{run} ({self.keys.get(run, 0):,} Redis keys, "
                         f"{len(self.topics.get(run, []))} topics)" for run in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {run: {"redis_keys": self.keys.get(run, 0),
                      "topics": sorted(self.topics.get(run, []))} for run in self.runs}


async def find_leftovers(stack: Stack) -> Leftovers:
    found = Leftovers()
    for topic in await _list_topics(stack):
        run = run_id_of(topic)
        if run:
            found.topics.setdefault(run, []).append(topic)
    client = open_redis(stack.redis_url)
    try:
        for pattern in KEY_PATTERNS:
            async for key in client.scan_iter(match=pattern, count=5000):
                run = run_id_of(key.decode() if isinstance(key, bytes) else key)
                if run:
                    found.keys[run] = found.keys.get(run, 0) + 1
    finally:
        await client.aclose()
    return found


async def delete_run_state(stack: Stack, run_id: str) -> None:
    """Delete the topics and Redis keys of one run (this one's at its end, or a leftover)."""
    from aiokafka.admin import AIOKafkaAdminClient

    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if run_id_of(t) == run_id]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()
    client = open_redis(stack.redis_url)
    try:
        await delete_prefixed_keys(client, run_id)  # the run id is its key prefix
    finally:
        await client.aclose()


async def compact_aof(stack: Stack, timeout_s: float = 300.0) -> None:
    """Rewrite Redis' append-only file now, so the deleted keys' history is not rewritten
    (and Redis not stalled) in the middle of the next measurement."""
    client = open_redis(stack.redis_url)
    try:
        if not (await client.info("persistence")).get("aof_enabled"):
            return
        with contextlib.suppress(ResponseError):  # "already in progress" or scheduled
            await client.bgrewriteaof()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = await client.info("persistence")
            if not (state.get("aof_rewrite_in_progress") or state.get("aof_rewrite_scheduled")):
                return
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


async def _list_topics(stack: Stack) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()
