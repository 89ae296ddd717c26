"""Sending events the way the worker reads them fastest.

Events are validated with the worker's own rules (a bad event raises ``Rejected``
here instead of landing in the dead-letter topic later), routed to the partition
Kafka's default partitioner (murmur2 of the track id) picks, and packed per
partition into batch records (JSON arrays) that are sent when they reach
``batch_events`` events or ``max_record_bytes``, or after ``linger_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streamer.config import KafkaSettings
from streamer.events.validation import parse_sound_used, parse_track_created


class _Batch:
    __slots__ = ("first_key", "parts", "size", "started")

    def __init__(self, first_key: bytes, started: float) -> None:
        self.first_key = first_key
        self.parts: list[bytes] = []
        self.size = 2
        self.started = started


class MissingTopics(Exception):
    """Kafka has no topic of these names: nothing could be sent to them.

    Found from one metadata request at start, before any send: asking aiokafka for the
    partitions of a missing topic retries until its request timeout and logs "Topic ...
    not found in cluster metadata" on every retry.
    """

    def __init__(self, topics: list[str]) -> None:
        super().__init__(f"Kafka has no topic {', '.join(map(repr, topics))}")
        self.topics = topics


class UsageProducer:
    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        uses_topic: str = "sounds.used",
        tracks_topic: str = "tracks.created",
        batch_events: int = 500,
        linger_ms: int = 50,
        max_record_bytes: int = 1 << 20,
        validate: bool = True,
        require_tracks_topic: bool = False,
    ) -> None:
        self._kafka = kafka
        self.require_tracks_topic = require_tracks_topic
        self._tracks_topic_missing = False
        self.uses_topic = uses_topic
        self.tracks_topic = tracks_topic
        self.batch_events = batch_events
        self.linger_s = linger_ms / 1000
        self.max_record_bytes = max_record_bytes - 64 * 1024  # room for Kafka's overhead
        self.validate = validate
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()
        self._partitions: list[int] = []
        self._batches: dict[int, _Batch] = {}
        self._inflight: set[asyncio.Future[Any]] = set()
        self._linger_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.records_sent = 0
        self.events_sent = 0

    async def __aenter__(self) -> UsageProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect; raises ``MissingTopics`` if the uses topic (or, with
        ``require_tracks_topic``, the tracks topic) does not exist. Without it, a missing
        tracks topic is raised by the first ``send_track``."""
        self._producer = AIOKafkaProducer(
            **self._kafka.aiokafka_kwargs(), acks="all", enable_idempotence=True,
            linger_ms=5, max_request_size=2 << 20, compression_type=None,
        )
        try:
            await self._producer.start()
            cluster = await self._producer.client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self.uses_topic) or set()
            self._tracks_topic_missing = not cluster.partitions_for_topic(self.tracks_topic)
            missing = [topic for topic, absent in (
                (self.uses_topic, not partitions),
                (self.tracks_topic, self._tracks_topic_missing and self.require_tracks_topic),
            ) if absent]
            if missing:
                raise MissingTopics(missing)
        except BaseException:
            # Closed here, or aiokafka warns "Unclosed AIOKafkaProducer" at exit.
            producer, self._producer = self._producer, None
            await asyncio.shield(producer.stop())
            raise
        self._partitions = sorted(partitions)
        self._closing.clear()
        self._linger_task = asyncio.ensure_future(self._linger())

    async def stop(self) -> None:
        if self._linger_task is not None:
            # Asked to end, not cancelled: a cancel while it awaits aiokafka's send (which
            # waits for the partition's previous batch to drain) dropped the batch it had
            # taken, and its events never reached Kafka.
            self._closing.set()
            task, self._linger_task = self._linger_task, None
            await task
        await self.flush()
        if self._producer is not None:
            await self._producer.stop()

    def partition_for(self, track_id: str) -> int:
        key = track_id.encode()
        partition: int = self._partitioner(key, self._partitions, self._partitions)
        return partition

    async def send_use(self, event: dict[str, Any]) -> None:
        """Queue one SoundUsed; raises ``Rejected`` naming the field if it is invalid."""
        if self.validate:
            parse_sound_used(event)
        encoded = orjson.dumps(event)
        key = event["track_id"].encode()
        partition = self.partition_for(event["track_id"])
        batch = self._batches.get(partition)
        if batch is not None and batch.size + len(encoded) + 1 > self.max_record_bytes:
            await self._send_batch(partition)
            batch = None
        if batch is None:
            batch = self._batches[partition] = _Batch(key, asyncio.get_running_loop().time())
        batch.parts.append(encoded)
        batch.size += len(encoded) + 1
        if len(batch.parts) >= self.batch_events:
            await self._send_batch(partition)

    async def send_track(self, event: dict[str, Any]) -> None:
        """Send one TrackCreated as its own record; raises ``Rejected`` if invalid.

        The optional ``title`` (at most 512 characters), ``isrc``, ``artist`` (display
        artist name, 1-512) and ``label`` (1-256) are names for reports: they reach the
        ledger's catalog and the DDEX DSR files, and change nothing that is counted.
        """
        if self.validate:
            parse_track_created(event)
        if self._tracks_topic_missing:  # found at start; sending would retry, then time out
            raise MissingTopics([self.tracks_topic])
        assert self._producer is not None
        future = await self._producer.send(
            self.tracks_topic, orjson.dumps(event), key=event["track_id"].encode())
        self._track(future)
        self.records_sent += 1

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None,
                       partition: int | None = None) -> None:
        """Send bytes as they are (tests and the load generator's invalid records)."""
        assert self._producer is not None
        self._track(await self._producer.send(topic, value, key=key, partition=partition))
        self.records_sent += 1

    async def flush(self) -> None:
        """Send every open batch and wait until Kafka acknowledged everything."""
        for partition in list(self._batches):
            await self._send_batch(partition)
        if self._inflight:
            await asyncio.gather(*list(self._inflight))

    async def _send_batch(self, partition: int) -> None:
        batch = self._batches.pop(partition, None)
        if batch is None or not batch.parts:
            return
        assert self._producer is not None
        value = b"[" + b",".join(batch.parts) + b"]"
        future = await self._producer.send(
            self.uses_topic, value, key=batch.first_key, partition=partition)
        self._track(future)
        self.records_sent += 1
        self.events_sent += len(batch.parts)

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)

    async def _linger(self) -> None:
        """Send batches older than ``linger_ms`` until ``stop`` (which sends the rest)."""
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.linger_s / 2)
                return
            now = loop.time()
            for partition, batch in list(self._batches.items()):
                if now - batch.started >= self.linger_s:
                    await self._send_batch(partition)
