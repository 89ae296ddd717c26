"""One isolated pipeline per test: its own topics, consumer group, Redis prefix and ports.

``Pipeline`` knows the names a test's workers use, starts ``WorkerProcess``es with the
matching environment, sends events (valid ones through ``UsageProducer``, raw bytes
through a plain aiokafka producer that reports each record's partition and offset),
waits until Redis has counted everything, and reads counters and the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from streamer.config import KafkaSettings
from streamer.producer import UsageProducer
from streamer.verify.kafka_progress import wait_drained
from streamer.verify.redis_counters import delete_prefixed_keys, read_counters
from streamer.verify.worker_process import WorkerProcess

MakeTopic = Callable[..., Awaitable[str]]

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
WINDOWS = (("1m", MINUTE), ("1h", HOUR), ("1d", DAY))
DRAIN_TIMEOUT_S = 120.0
HEALTHY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def now_ms() -> int:
    return int(time.time() * 1000)


def past_hour_start(min_age_ms: int = 15 * MINUTE) -> int:
    """The latest UTC hour boundary at least ``min_age_ms`` in the past."""
    return (now_ms() - min_age_ms) // HOUR * HOUR


def window_start(at_ms: int, size_ms: int) -> int:
    return at_ms - at_ms % size_ms


class _Ids:
    """Unique, readable event ids within a test run."""

    def __init__(self) -> None:
        self._run = uuid.uuid4().hex[:6]
        self._next = 0

    def __call__(self, kind: str = "e") -> str:
        self._next += 1
        return f"{kind}-{self._run}-{self._next}"


new_id = _Ids()


def use_event(track_id: str, use: str, occurred_at: int, *, event_id: str | None = None,
              user_id: str = "user-1", country: str = "DE", **extra: Any) -> dict[str, Any]:
    event = {"event_id": event_id or new_id("use"), "track_id": track_id,
             "occurred_at": occurred_at, "user_id": user_id, "use": use, "country": country}
    event.update(extra)
    return event


def track_event(track_id: str, occurred_at: int, *, genre: str = "lofi",
                ai_origin: str = "human", rights: list[dict[str, Any]] | None = None,
                event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    if rights is None:
        rights = [{"holder_id": "label-default", "right": "master", "share": "1"}]
    event = {"event_id": event_id or new_id("track"), "track_id": track_id,
             "occurred_at": occurred_at, "creator_id": "creator-1", "genre": genre,
             "ai_origin": ai_origin, "rights": rights}
    event.update(extra)
    return event


def right(holder_id: str, right_name: str, share: Any) -> dict[str, Any]:
    return {"holder_id": holder_id, "right": right_name, "share": share}


@dataclass
class DlqRecord:
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int

    @property
    def reason(self) -> str:
        return self.headers.get("reason", "")

    @property
    def source(self) -> tuple[str, int, int]:
        return (self.headers.get("source_topic", ""), int(self.headers.get("source_partition", -1)),
                int(self.headers.get("source_offset", -1)))


@dataclass
class Pipeline:
    kafka_bootstrap: str
    redis_url: str
    key_prefix: str
    app_id: str
    uses_topic: str
    tracks_topic: str
    dlq_topic: str
    partitions: int
    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)
    # Topics not made by make_topic (so not deleted by it), deleted by cleanup().
    own_topics: list[str] = field(default_factory=list)

    @classmethod
    async def create(cls, *, kafka_bootstrap: str, redis_url: str, make_topic: MakeTopic,
                     redis_prefix: str, workdir: Path, partitions: int = 4,
                     topic_config: Mapping[str, str] | None = None,
                     dlq_topic_config: Mapping[str, str] | None = None,
                     create_dlq: bool = True,
                     **settings: str) -> Pipeline:
        """Create the topics (deleted after the test) and name everything else.

        With ``create_dlq=False`` the dead-letter topic is left for the worker to create.
        """
        config = dict(topic_config or {})
        uses = await make_topic("pipe-uses", partitions=partitions, config=config)
        tracks = await make_topic("pipe-tracks", partitions=partitions, config=config)
        if create_dlq:
            dlq = await make_topic("pipe-dlq", partitions=1,
                                   config=dict(dlq_topic_config or config))
            own_topics: list[str] = []
        else:  # the worker creates it, with its own settings
            dlq = f"pipe-dlq-{uuid.uuid4().hex[:10]}"
            own_topics = [dlq]
        (workdir / "faust").mkdir(parents=True, exist_ok=True)
        return cls(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                   key_prefix=redis_prefix.rstrip(":"), app_id=f"app-{uses}",
                   uses_topic=uses, tracks_topic=tracks, dlq_topic=dlq, partitions=partitions,
                   workdir=workdir, settings=dict(settings), own_topics=own_topics)

    # -- workers ---------------------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "STREAMER_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "STREAMER_REDIS_URL": self.redis_url,
            "STREAMER_APP_ID": self.app_id,
            "STREAMER_TRACKS_TOPIC": self.tracks_topic,
            "STREAMER_USES_TOPIC": self.uses_topic,
            "STREAMER_DLQ_TOPIC": self.dlq_topic,
            "STREAMER_PARTITIONS": str(self.partitions),
            "STREAMER_KEY_PREFIX": self.key_prefix,
            "STREAMER_KAFKA_SESSION_TIMEOUT": "6s",
            "STREAMER_FLUSH_INTERVAL_S": "0.5",
            # The default data dir (/tmp/streamer) must exist before the worker starts.
            "STREAMER_DATA_DIR": str(self.workdir / "faust"),
            # Closed days go to the test's own ledger, never to a folder in the cwd.
            "STREAMER_LEDGER_URL": str(self.workdir / "ledger"),
        }
        env.update(self.settings)
        env.update(overrides)
        return env

    def worker(self, name: str = "worker", **overrides: str) -> WorkerProcess:
        """A worker of this pipeline's group on a free port (not started yet)."""
        env = self.env(STREAMER_WEB_PORT=str(free_port()), **overrides)
        worker = WorkerProcess(env, self.workdir / f"{name}.log")
        self.workers.append(worker)
        return worker

    async def start_worker(self, name: str = "worker", **overrides: str) -> WorkerProcess:
        worker = self.worker(name, **overrides).start()
        await worker.wait_healthy(HEALTHY_TIMEOUT_S)
        return worker

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()

    # -- sending ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def producer(self, **kwargs: Any) -> AsyncIterator[UsageProducer]:
        producer = UsageProducer(KafkaSettings(self.kafka_bootstrap), uses_topic=self.uses_topic,
                                 tracks_topic=self.tracks_topic, **kwargs)
        await producer.start()
        try:
            yield producer
        finally:
            await producer.stop()

    @contextlib.asynccontextmanager
    async def raw_producer(self) -> AsyncIterator[RawSender]:
        sender = RawSender(self.kafka_bootstrap)
        await sender.start()
        try:
            yield sender
        finally:
            await sender.stop()

    def partition_for(self, track_id: str) -> int:
        """The partition Kafka's default partitioner (and UsageProducer) picks."""
        parts = list(range(self.partitions))
        return DefaultPartitioner()(track_id.encode(), parts, parts)

    def track_in_partition(self, partition: int, stem: str) -> str:
        """A track id (``<stem>-<n>``) whose records go to ``partition``."""
        for n in range(10_000):
            candidate = f"{stem}-{n}"
            if self.partition_for(candidate) == partition:
                return candidate
        raise AssertionError(f"no track id for partition {partition}")

    # -- reading ---------------------------------------------------------------------

    async def drained(self, timeout: float = DRAIN_TIMEOUT_S) -> dict[int, Any]:
        try:
            return await wait_drained(self.kafka_bootstrap, self.redis_url, self.key_prefix,
                                      [self.uses_topic, self.tracks_topic], self.partitions,
                                      timeout)
        except TimeoutError:
            for worker in self.workers:
                if worker.starts:
                    worker.print_log_tail(60)
            raise

    async def counters(self) -> dict[tuple[Any, ...], int]:
        return await read_counters(self.redis_url, self.key_prefix)

    async def dlq(self, timeout: float = 30.0) -> list[DlqRecord]:
        """Every record of the dead-letter topic, up to its current end."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=8 << 20, fetch_max_bytes=16 << 20)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka_bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([self.dlq_topic])
        finally:
            await admin.close()
        partitions = sorted(p["partition"] for p in described["partitions"])
        assert partitions, f"dead-letter topic {self.dlq_topic} does not exist: {described}"
        await consumer.start()
        records: list[DlqRecord] = []
        try:
            tps = [TopicPartition(self.dlq_topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            deadline = time.monotonic() + timeout
            positions = {tp: 0 for tp in tps}
            while any(positions[tp] < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"DLQ read stuck at {positions} of {ends}")
                batches = await consumer.getmany(timeout_ms=500)
                for tp, batch in batches.items():
                    for record in batch:
                        headers = {key: value.decode() for key, value in record.headers or ()}
                        records.append(DlqRecord(record.value or b"", headers, record.partition,
                                                 record.offset))
                        positions[tp] = record.offset + 1
        finally:
            await consumer.stop()
        return records

    async def redis(self) -> aioredis.Redis:
        return aioredis.from_url(self.redis_url)

    async def cleanup(self) -> None:
        """Kill workers; delete the partition-tagged keys (conftest's cleanup misses them),
        the topics Faust created for the group (``<app_id>-...``) and ``own_topics``."""
        self.kill_all()
        if os.environ.get("STREAMER_TEST_KEEP", "") not in ("", "0"):
            print(f"kept: topics {self.uses_topic} {self.tracks_topic} {self.dlq_topic}, "
                  f"Redis prefix {self.key_prefix!r}, logs in {self.workdir}")
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka_bootstrap)
        try:
            await admin.start()
            existing = await admin.list_topics()
            doomed = [t for t in existing
                      if t.startswith(self.app_id) or t in self.own_topics]
            if doomed:
                await admin.delete_topics(doomed)
        except Exception as exc:  # cleanup only: names are unique anyway
            print(f"could not delete Faust topics of {self.app_id}: {exc!r}")
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        client = aioredis.from_url(self.redis_url)
        try:
            await delete_prefixed_keys(client, self.key_prefix)
        finally:
            await client.aclose()


class RawSender:
    """Bytes as they are, to a chosen partition; returns ``(partition, offset)``."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                          enable_idempotence=True, max_request_size=4 << 20)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, value: bytes | None, *, key: str | bytes | None = None,
                   partition: int | None = None) -> tuple[int, int]:
        key_bytes = key.encode() if isinstance(key, str) else key
        meta = await self._producer.send_and_wait(topic, value, key=key_bytes,
                                                  partition=partition)
        return meta.partition, meta.offset

    async def send_json(self, topic: str, obj: Any, *, key: str,
                        partition: int | None = None) -> tuple[int, int]:
        return await self.send(topic, orjson.dumps(obj), key=key, partition=partition)


async def send_single(producer: UsageProducer, event: Mapping[str, Any]) -> None:
    """One SoundUsed as its own record (not a batch), to the partition of its track."""
    track_id = str(event["track_id"])
    await producer.send_raw(producer.uses_topic, orjson.dumps(dict(event)),
                            key=track_id.encode(), partition=producer.partition_for(track_id))


async def poll_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str,
                     interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def pipeline_factory(kafka_bootstrap: str, redis_url: str, make_topic: MakeTopic,
                           redis_prefix: str, workdir: Path
                           ) -> AsyncIterator[Callable[..., Awaitable[Pipeline]]]:
    """``await make(**STREAMER_settings)`` creates a Pipeline; all are cleaned up at exit."""
    created: list[Pipeline] = []

    async def make(partitions: int = 4, topic_config: Mapping[str, str] | None = None,
                   dlq_topic_config: Mapping[str, str] | None = None, create_dlq: bool = True,
                   **settings: str) -> Pipeline:
        prefix = redis_prefix if not created else f"{redis_prefix}{len(created)}:"
        pipe = await Pipeline.create(
            kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, make_topic=make_topic,
            redis_prefix=prefix, workdir=workdir / f"pipeline-{len(created)}",
            partitions=partitions, topic_config=topic_config,
            dlq_topic_config=dlq_topic_config, create_dlq=create_dlq, **settings)
        created.append(pipe)
        return pipe

    try:
        yield make
    finally:
        for pipe in created:
            await pipe.cleanup()


def http_expectations(expected: Mapping[tuple[Any, ...], int]) -> Callable[..., int]:
    """``get(kind, window, start, *rest)`` -> the expected counter or 0."""

    def get(*key: Any) -> int:
        return int(expected.get(tuple(key), 0))

    return get
