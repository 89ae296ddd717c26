"""What every peer shares: arguments, the validity rule, progress lines, the Redis layout.

Output layout in Redis (``python -m benchmarks peers`` reads it back and reconciles it):
one hash per one-minute window, ``<prefix>:pc:<window start ms>``, whose fields are
``<track id>|<use>`` (or ``<track id>`` for peers that count per track only) and whose
values are counts added with ``HINCRBY``.

A peer knows it is done when it has processed every partition up to the end offsets the
harness passes (``--end-offsets``): the last record of each partition is a valid use
the harness appends after the backlog (the end-of-run marker), so even a peer that
skips invalid records sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import redis

WINDOW_MS = 60_000
FUTURE_TOLERANCE_MS = 5 * 60_000
_TRACK_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_USES = ("play", "create")
FIELD_SEPARATOR = "|"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--end-offsets", required=True,
                        help="comma-separated end offset of each partition, in order")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", default="bench-peer")
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--lateness-ms", type=int, default=3_600_000,
                        help="grace of the windowed peers (the worker's allowed lateness)")
    parser.add_argument("--batch", action="store_true", help="records are JSON arrays")
    return parser.parse_args(argv)


def valid_use(event: Any, now_ms: int) -> bool:
    """The worker's contract for one SoundUsed, written out for the peers.

    Every peer checks the same rule so that they count the same events as valid: what
    differs between them and the worker is then only dedupe and lateness.
    """
    if type(event) is not dict:
        return False
    event_id, track_id, at = event.get("event_id"), event.get("track_id"), event.get("occurred_at")
    user_id, use, country = event.get("user_id"), event.get("use"), event.get("country")
    return (type(event_id) is str and 0 < len(event_id) <= 128
            and type(track_id) is str and _TRACK_ID.fullmatch(track_id) is not None
            and type(at) is int and 0 <= at <= now_ms + FUTURE_TOLERANCE_MS
            and type(user_id) is str and 0 < len(user_id) <= 128
            and use in _USES
            and type(country) is str and len(country) == 2 and country.isascii()
            and country.isalpha() and country.isupper())


def valid_events(value: Any, now_ms: int) -> list[dict[str, Any]]:
    """The valid SoundUsed of a decoded record (one object or a batch array)."""
    if type(value) is list:
        return [event for event in value if valid_use(event, now_ms)]
    return [value] if valid_use(value, now_ms) else []


def window_start(occurred_at: int) -> int:
    return occurred_at - occurred_at % WINDOW_MS


def cell_field(track_id: str, use: str | None) -> str:
    return track_id if use is None else f"{track_id}{FIELD_SEPARATOR}{use}"


class RedisCounts:
    """Adds (window start, field) counts to Redis with one pipeline per call."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self.writes = 0
        self.last_write: float | None = None

    def add(self, counts: Iterable[tuple[tuple[int, str], int]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for (start, field), count in counts:
            pipe.hincrby(f"{self.prefix}:pc:{start}", field, count)
        pipe.execute()
        self.writes += 1
        self.last_write = time.time()


class EndTracker:
    """Done once every partition was processed up to its end offset."""

    def __init__(self, end_offsets: str) -> None:
        self.ends = [int(x) for x in end_offsets.split(",")]
        self.remaining = {p for p, end in enumerate(self.ends) if end > 0}

    def processed(self, partition: int, offset: int) -> bool:
        """Note one processed record; True once the last partition reached its end."""
        if offset + 1 >= self.ends[partition]:
            self.remaining.discard(partition)
        return not self.remaining

    @property
    def done(self) -> bool:
        return not self.remaining


class Reporter:
    """Counts records/events and prints progress lines (at most twice a second)."""

    def __init__(self) -> None:
        self.records = 0
        self.events = 0
        self.first: float | None = None
        self._next = 0.0

    def start(self) -> None:
        """Records arrived and none is processed yet: the run's first record consumed.
        A peer that processes records in batches calls it before the first batch, so the
        timing includes that batch's work as it does every other consumer's."""
        if self.first is None:
            self.first = time.time()

    def seen(self, records: int, events: int) -> None:
        now = time.time()
        if self.first is None:
            self.first = now
        self.records += records
        self.events += events
        if now >= self._next:
            self._next = now + 0.5
            emit({"t": now, "records": self.records, "events": self.events})

    def done(self, last_output: float | None, **extra: Any) -> None:
        """``last_output``: when the last counts became visible in Redis."""
        now = time.time()
        emit({"t": now, "records": self.records, "events": self.events})
        usage = resource.getrusage(resource.RUSAGE_SELF)
        emit({"done": True, "first": self.first, "last": last_output or now,
              "records": self.records, "events": self.events,
              "cpu_s": usage.ru_utime + usage.ru_stime,
              "max_rss_mb": usage.ru_maxrss / 1024, **extra})


def count_cells(events: Iterable[dict[str, Any]], per_use: bool = True) -> Counter[tuple[int, str]]:
    cells: Counter[tuple[int, str]] = Counter()
    for event in events:
        at = event["occurred_at"]
        cells[(at - at % WINDOW_MS, cell_field(event["track_id"],
                                                event["use"] if per_use else None))] += 1
    return cells


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def hard_exit(code: int = 0) -> None:
    """Leave at once (Faust and Quix shut down slowly; the result is already printed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def now_ms() -> int:
    return int(time.time() * 1000)
