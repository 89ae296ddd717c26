"""What both Quix Streams peers share: the app around their pipeline, the record
deserializer and a summing sink.

``run_peer`` builds the app the same way for both (consumer group, earliest offset,
Quix's default commit interval, the harness's progress and end-of-run reporting) and
hands the peer its dataframe; a peer only says how it counts.

The deserializer decodes a record once (orjson), keeps its valid SoundUsed (the rule
every peer shares) and ignores a record that is not JSON (``IgnoreMessage``, Quix's
way to skip a message); any other error stops the app, as Quix does by default.

The sink sums what the checkpoint's batches hold and writes it with one Redis pipeline
per checkpoint (``flush``), at Quix's default commit interval (5 s).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models.serializers import Deserializer
from quixstreams.models.serializers.exceptions import IgnoreMessage
from quixstreams.sinks.base import BatchingSink, SinkBatch

from benchmarks.peers.common import (
    EndTracker,
    RedisCounts,
    Reporter,
    hard_exit,
    now_ms,
    valid_events,
)

Cells = Callable[[Any, Any], Counter[tuple[int, str]]]
"""An output item's (key, value) -> its (window start, field) counts."""


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
        self.reporter.start()
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


def run_peer(args: argparse.Namespace, *, key_deserializer: str, split: bool,
             pipeline: Callable[[StreamingDataFrame], tuple[StreamingDataFrame, Cells]],
             event_time: bool = False) -> None:
    """Run one Quix peer on the harness's topic until every partition is processed to
    its end offset and a checkpoint has written what came before; then report, exit.

    ``pipeline`` turns the topic's dataframe into the items the sink counts;
    ``event_time`` windows by each event's ``occurred_at`` instead of the record time.
    """
    reporter = Reporter()
    ends = EndTracker(args.end_offsets)
    counts = RedisCounts(args.redis_url, args.prefix)

    def processed(topic: str, partition: int, offset: int) -> None:
        ends.processed(partition, offset)

    def flushed() -> None:
        if ends.done:   # everything processed before this checkpoint is written
            reporter.done(counts.last_write, sink_writes=counts.writes)
            hard_exit(0)

    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group,
        auto_offset_reset="earliest", loglevel="WARNING",
        state_dir=args.state_dir or tempfile.mkdtemp(prefix="quix-state-"),
        on_message_processed=processed)
    topic = app.topic(args.topic, key_deserializer=key_deserializer,  # type: ignore[arg-type, unused-ignore]
                      value_deserializer=UsesDeserializer(reporter, split=split),
                      timestamp_extractor=occurred_at if event_time else None)
    sdf, cells = pipeline(app.dataframe(topic))
    sdf.sink(SummingRedisSink(counts, cells, flushed))
    app.run()
