"""Argument parsing and progress reporting shared by the peer pipelines."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--records", type=int, required=True, help="stop after this many")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", default="bench-peer")
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--batch", action="store_true", help="records are JSON arrays")
    return parser.parse_args(argv)


class Reporter:
    """Counts records/events and prints progress lines (at most twice a second)."""

    def __init__(self) -> None:
        self.records = 0
        self.events = 0
        self.first: float | None = None
        self.last: float | None = None
        self._next = 0.0

    def seen(self, records: int, events: int) -> None:
        now = time.time()
        if self.first is None:
            self.first = now
        self.records += records
        self.events += events
        if now >= self._next:
            self._next = now + 0.5
            emit({"t": now, "records": self.records, "events": self.events})

    def done(self, **extra: Any) -> None:
        self.last = time.time() if self.last is None else self.last
        usage = resource.getrusage(resource.RUSAGE_SELF)
        emit({"done": True, "first": self.first, "last": self.last, "records": self.records,
              "events": self.events, "cpu_s": usage.ru_utime + usage.ru_stime,
              "max_rss_mb": usage.ru_maxrss / 1024, **extra})


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def hard_exit(code: int = 0) -> None:
    """Leave at once (Faust and Quix shut down slowly; the result is already printed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def events_in(value: Any) -> list[dict[str, Any]]:
    """The SoundUsed objects of a decoded record (one object or a batch array)."""
    if type(value) is dict:
        return [value]
    if type(value) is list:
        return [v for v in value if type(v) is dict]
    return []
