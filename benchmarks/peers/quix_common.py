"""Pieces both Quix Streams peers use: the record deserializer and a summing sink.

The deserializer decodes a record once (orjson), keeps its valid SoundUsed (the rule
every peer shares) and ignores a record that is not JSON (``IgnoreMessage``, Quix's
way to skip a message); any other error stops the app, as Quix does by default.

The sink sums what the checkpoint's batches hold and writes it with one Redis pipeline
per checkpoint (``flush``), at Quix's default commit interval (5 s).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from quixstreams.models.serializers import Deserializer
from quixstreams.models.serializers.exceptions import IgnoreMessage
from quixstreams.sinks.base import BatchingSink, SinkBatch

from benchmarks.peers.common import RedisCounts, Reporter, now_ms, valid_events


class UsesDeserializer(Deserializer):
    """A record's valid SoundUsed; one row per event when ``split`` (Quix's split_values)."""

    def __init__(self, reporter: Reporter, split: bool) -> None:
        super().__init__()
        self.reporter = reporter
        self.split = split

    @property
    def split_values(self) -> bool:
        return self.split

    def __call__(self, value: bytes, ctx: Any) -> list[dict[str, Any]]:
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.reporter.seen(1, 0)
            raise IgnoreMessage() from None
        events = valid_events(decoded, now_ms())
        self.reporter.seen(1, len(events))
        return events


def occurred_at(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    """Event time for Quix's windows: the event's own ``occurred_at``."""
    return int(value["occurred_at"])


class SummingRedisSink(BatchingSink):
    """``cells(item)`` gives an item's (window start, field) counts; they are summed over
    the whole checkpoint and written in one pipeline; ``on_flushed`` runs after it."""

    def __init__(self, counts: RedisCounts,
                 cells: Callable[[Any, Any], Counter[tuple[int, str]]],
                 on_flushed: Callable[[], None]) -> None:
        super().__init__()
        self.counts = counts
        self.cells = cells
        self.on_flushed = on_flushed

    def write(self, batch: SinkBatch) -> None:
        self._write([batch])

    def flush(self) -> None:
        try:
            self._write(list(self._batches.values()))
        finally:
            self._batches.clear()
        self.on_flushed()

    def _write(self, batches: list[SinkBatch]) -> None:
        total: Counter[tuple[int, str]] = Counter()
        for batch in batches:
            for item in batch:
                total.update(self.cells(item.key, item.value))
        if total:
            self.counts.add(total.items())
