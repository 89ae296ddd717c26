"""Closing a partition's days in order: the API the worker (and ``streamer ledger close``)
calls, given a ``DaySource`` that knows what the pipeline holds.

The pipeline owns when a day is closable (both topics' watermarks past the day's end
plus the allowed lateness, nothing of the day pending) and how to read it (Redis'
territory counters and attributions); the ledger owns the order and the exactly-once
append. ``close_days`` runs synchronous, blocking I/O: call it from a thread
(``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from streamer.ledger.model import DayPartition
from streamer.ledger.writer import CloseResult, LedgerWriter


class DaySource(Protocol):
    """What closing needs from the pipeline, per input partition."""

    def closable_through(self, partition: int) -> date | None:
        """The last day the partition can close now (its watermarks on both topics are
        past that day's end plus the allowed lateness and no use of it waits for its
        TrackCreated); None: none yet."""

    def first_day(self, partition: int) -> date | None:
        """The first day to close when the partition has closed none (the first day it
        counted, or the day the ledger was switched on); None: nothing to close yet."""

    def read_day(self, day: date, partition: int) -> DayPartition:
        """The day's attributions and catalog entries (empty for an idle day). Must
        return the same rows every time it is asked about a closable day."""


@dataclass(frozen=True, slots=True)
class CloseRun:
    partition: int
    results: tuple[CloseResult, ...]

    @property
    def closed_now(self) -> tuple[date, ...]:
        return tuple(result.day for result in self.results if result.committed)


def close_days(writer: LedgerWriter, source: DaySource, partition: int,
               through: date | None = None) -> CloseRun:
    """Close every closable day of ``partition`` after its last closed one, in order, up
    to ``through`` (default: as far as the source allows). Idempotent: a crash at any
    point is finished by the next call; days already closed are not written again."""
    limit = source.closable_through(partition)
    if limit is None:
        return CloseRun(partition, ())
    if through is not None:
        limit = min(limit, through)
    last = writer.last_closed_day(partition)
    if last is None:
        first = source.first_day(partition)
        if first is None:
            return CloseRun(partition, ())
        day = first
    else:
        day = last + timedelta(days=1)
    results = []
    while day <= limit:
        results.append(writer.close(source.read_day(day, partition)))
        day += timedelta(days=1)
    return CloseRun(partition, tuple(results))
