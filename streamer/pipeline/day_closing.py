"""Closing a partition's days into the ledger, by the worker that owns the partition.

Around a flush (pipeline/worker.py):

1. before it, ``seal``: if the partition may close more days now
   (``PartitionState.closable_before``: both topics' clocks past the day's end plus the
   allowed lateness, nothing of the day pending), the state marks them closed, so any
   later use of them is late (DLQ), and the flush persists that mark (meta ``cl``) with
   everything counted before it;
2. after it succeeded, ``after_flush`` starts, at most one at a time per partition, a
   close: read the sealed days' attributions and catalog entries from Redis (``a`` /
   ``av``, which no flush changes any more), then ``ledger.close_days`` in a thread
   (Delta writes block), then give that day's territory counters and attributions the
   grace TTL (``STREAMER_TERRITORY_RETENTION``).

A crash anywhere is finished by the next owner's close: the ledger's commits are
idempotent per (day, partition), and the Redis data of a sealed day never changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from streamer.config import Settings
from streamer.ledger import CatalogEntry, DayPartition, LedgerLocation, LedgerWriter, close_days
from streamer.state.keys import CLOSED_BEFORE_FIELD, DAY_MS, KeyLayout
from streamer.state.partition import PartitionState
from streamer.state.store import RedisStore

log = logging.getLogger(__name__)

UNATTRIBUTED = "_unattributed"


def day_of(epoch_ms: int) -> date:
    return datetime.fromtimestamp(epoch_ms // 1000, UTC).date()


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def count_settings(settings: Settings) -> dict[str, object]:
    """The settings that shape counts, recorded in every ledger commit."""
    return {"windows": [name for name, _ in settings.windows],
            "territory_windows": list(settings.territory_windows),
            "allowed_lateness_ms": settings.allowed_lateness_ms,
            "future_tolerance_ms": settings.future_tolerance_ms,
            "idle_close_delay_ms": settings.idle_close_delay_ms,
            "dedupe_horizon_ms": settings.dedupe_horizon_ms}


def idle_clock_ms(settings: Settings) -> int:
    """The clock of a topic partition this worker has read to its end: the wall clock,
    held back by the idle close delay (a day's last uses may still be on their way)."""
    return int(time.time() * 1000) - settings.idle_close_delay_ms


def day_partition(day: date, partition: int, attributions: Mapping[bytes, bytes],
                  entries: Mapping[bytes, bytes]) -> DayPartition:
    """A day's ``a`` and ``av`` hashes as the ledger's input."""
    uses: dict[tuple[str, str, str, str], int] = {}
    for field, value in attributions.items():
        track_id, country, use, version = field.decode().split("|")
        uses[(track_id, country, use, version)] = int(value)
    catalog = []
    for field, value in entries.items():
        track_id, version = field.decode().split("|")
        if version == UNATTRIBUTED:
            continue  # the ledger adds those entries itself
        catalog.append(CatalogEntry.from_json(track_id, value))
    return DayPartition.from_mappings(day, partition, uses, catalog)


async def read_day(store: RedisStore, day: date, partition: int) -> DayPartition:
    layout = store.layout
    start = day_start_ms(day)
    async with store.client.pipeline(transaction=False) as pipe:
        pipe.hgetall(layout.attributions(partition, start))
        pipe.hgetall(layout.attribution_entries(partition, start))
        attributions, entries = await pipe.execute()
    return day_partition(day, partition, attributions, entries)


async def first_attributed_day(store: RedisStore, partition: int) -> date | None:
    """The first day with attributions in Redis (a partition that never closed a day)."""
    pattern = store.layout.attributions(partition, 0)[:-1] + "*"
    starts = [int(key.rsplit(b":", 1)[1]) async for key in
              store.client.scan_iter(match=pattern, count=1000)]
    return day_of(min(starts)) if starts else None


@dataclass(frozen=True, slots=True)
class ReadDays:
    """A ``ledger.DaySource`` over days already read from Redis (the close runs in a
    thread, Redis is asynchronous): the same rows every time it is asked."""

    partition: int
    through: date | None
    first: date | None
    days: Mapping[date, DayPartition]

    def closable_through(self, partition: int) -> date | None:
        return self.through

    def first_day(self, partition: int) -> date | None:
        return self.first

    def read_day(self, day: date, partition: int) -> DayPartition:
        found = self.days.get(day)
        return found if found is not None else DayPartition.from_mappings(day, partition, {},
                                                                          ())


async def sealed_through(store: RedisStore, partition: int) -> date | None:
    """The last day the partition has sealed (meta ``cl``, persisted by a flush): its
    Redis data no longer changes, so it may be closed. None: nothing sealed yet."""
    raw = await store.client.hget(store.layout.meta(partition), CLOSED_BEFORE_FIELD)
    return day_of(int(raw) - DAY_MS) if raw else None


async def read_unclosed_days(store: RedisStore, partition: int, last: date | None,
                             through: date) -> ReadDays:
    """The sealed days after ``last`` (the ledger's last closed day) through ``through``,
    read from Redis, as a ``DaySource``."""
    first = None
    if last is None:
        # Never closed: from the first day it counted, or (nothing counted) this day.
        first = await first_attributed_day(store, partition) or through
        start = first
    else:
        start = last + timedelta(days=1)
    days = {}
    day = start
    while day <= through:
        days[day] = await read_day(store, day, partition)
        day += timedelta(days=1)
    return ReadDays(partition, through, first, days)


async def close_partition(store: RedisStore, writer: LedgerWriter, partition: int,
                          through: date, grace_ms: int,
                          territory: tuple[tuple[str, int], ...]) -> tuple[date, ...]:
    """Close the partition's sealed days through ``through``; return the days closed now.
    Then the grace TTL on every closed day's Redis data that this call saw."""
    last = await asyncio.to_thread(writer.last_closed_day, partition)
    if last is not None and last >= through:
        return ()
    source = await read_unclosed_days(store, partition, last, through)
    run = await asyncio.to_thread(close_days, writer, source, partition)
    await expire_days(store.client, store.layout, partition, [r.day for r in run.results],
                      grace_ms, territory)
    return run.closed_now


@dataclass(frozen=True, slots=True)
class SealedDays:
    """A ``ledger.DaySource`` over several partitions' sealed days, read beforehand
    (``streamer ledger close``)."""

    partitions: Mapping[int, ReadDays]

    def closable_through(self, partition: int) -> date | None:
        days = self.partitions.get(partition)
        return days.through if days is not None else None

    def first_day(self, partition: int) -> date | None:
        days = self.partitions.get(partition)
        return days.first if days is not None else None

    def read_day(self, day: date, partition: int) -> DayPartition:
        return self.partitions[partition].read_day(day, partition)


async def read_sealed_days(store: RedisStore, writer: LedgerWriter, partitions: int,
                           limit: date | None = None) -> SealedDays:
    """Every partition's sealed, not yet closed days (up to ``limit``), read from Redis:
    what ``streamer ledger close`` closes. A partition that sealed nothing is left out."""
    found = {}
    for partition in range(partitions):
        through = await sealed_through(store, partition)
        if through is None:
            continue
        if limit is not None:
            through = min(through, limit)  # days after it are not read, so not closable
        last = await asyncio.to_thread(writer.last_closed_day, partition)
        if last is not None and last >= through:
            found[partition] = ReadDays(partition, through, None, {})
            continue
        found[partition] = await read_unclosed_days(store, partition, last, through)
    return SealedDays(found)


async def expire_days(client: object, layout: KeyLayout, partition: int, days: list[date],
                      grace_ms: int, territory: tuple[tuple[str, int], ...]) -> None:
    """The grace TTL on closed days' territory counters (windows that end within the
    day) and attributions: readers get ``grace_ms`` more, then Redis drops them."""
    keys = []
    for day in days:
        start = day_start_ms(day)
        end = start + DAY_MS
        keys += [layout.attributions(partition, start),
                 layout.attribution_entries(partition, start)]
        for name, size in territory:
            window = start - start % size
            while window < end:
                if window + size <= end:
                    keys += [layout.territory_track_counts(partition, name, window),
                             layout.territory_holder_counts(partition, name, window),
                             layout.territory_genre_counts(partition, name, window)]
                window += size
    if not keys:
        return
    async with client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
        for key in keys:
            pipe.pexpire(key, grace_ms)
        await pipe.execute()


class DayCloser:
    """One per worker: seals closable days before a flush, closes them after it."""

    def __init__(self, settings: Settings, store: RedisStore) -> None:
        self.settings = settings
        self.store = store
        self.enabled = bool(settings.territory)
        self.writer = LedgerWriter(
            LedgerLocation(settings.ledger_url, settings.ledger_storage_options),
            count_settings(settings))
        self._running: dict[int, asyncio.Task[None]] = {}
        # Per partition: the end of the days the ledger holds (as far as this worker knows).
        self._closed: dict[int, int] = {}

    def seal(self, state: PartitionState) -> None:
        """Before a flush: mark the days the partition may close now as closed."""
        if not self.enabled:
            return
        state.seal_days_before(state.closable_before(self.settings.allowed_lateness_ms,
                                                     idle_clock_ms(self.settings)))

    def after_flush(self, state: PartitionState) -> None:
        """After a flush that persisted the seal: close the sealed days in the background."""
        if not self.enabled or state.closed_before <= self._closed.get(state.partition, 0):
            return
        running = self._running.get(state.partition)
        if running is not None and not running.done():
            return
        self._running[state.partition] = asyncio.get_running_loop().create_task(
            self._close(state.partition, state.closed_before))

    async def _close(self, partition: int, closed_before: int) -> None:
        through = day_of(closed_before - DAY_MS)
        try:
            closed = await close_partition(self.store, self.writer, partition, through,
                                           self.settings.territory_retention_ms,
                                           self.settings.territory)
        except Exception:
            log.exception("partition %d: closing days through %s failed; retried after "
                          "the next flush", partition, through.isoformat())
            return
        self._closed[partition] = closed_before
        if closed:
            log.info("partition %d: closed %s into the ledger", partition,
                     ", ".join(day.isoformat() for day in closed))

    async def stop(self) -> None:
        """Let closes in flight finish (each is idempotent, so a cut one is also safe)."""
        running = [task for task in self._running.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=30)
