"""Quix Streams, idiomatic windowed: one-minute tumbling counts per track, final values.

``timestamp_extractor`` on each event's ``occurred_at``; ``tumbling_window(1 min,
grace = the worker's allowed lateness)``; ``.final()`` so each window is written once,
when it closes; Quix's default commit interval; a batching sink into Redis.

No repartition: records are partitioned by track already. Single-event records are
keyed by their track, so ``.count()`` per key is the count per track. A batch record
is keyed by its first event's track, and Quix re-keys a multi-partition stream only
through a repartition topic (``group_by``); so there the window, per record key in the
same partition, collects its events' track ids (``Collect``, appended to the window,
not rewritten per event) and the sink counts them per track when the window closes.

Windows close per partition (``closing_strategy="partition"``): with Quix's default
(per key) the last window of every track would stay open until that track is used
again, which in a finite backlog is never. The harness's end-of-run marker, dated
past the grace, closes them all. Lateness is judged by window end (Quix's rule), not by
the event's own time as the worker does; no dedupe, no attribution.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Collect

from benchmarks.peers.common import (
    EndTracker,
    RedisCounts,
    Reporter,
    hard_exit,
    parse_args,
)
from benchmarks.peers.quix_common import SummingRedisSink, UsesDeserializer, occurred_at


def main() -> None:
    args = parse_args()
    reporter = Reporter()
    ends = EndTracker(args.end_offsets)
    counts = RedisCounts(args.redis_url, args.prefix)

    def processed(topic: str, partition: int, offset: int) -> None:
        ends.processed(partition, offset)

    def flushed() -> None:
        if ends.done:   # everything processed before this checkpoint: all windows written
            reporter.done(counts.last_write, sink_writes=counts.writes)
            hard_exit(0)

    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group,
        auto_offset_reset="earliest", loglevel="WARNING",
        state_dir=args.state_dir or tempfile.mkdtemp(prefix="quix-state-"),
        on_message_processed=processed)
    topic = app.topic(args.topic, key_deserializer="str",
                      value_deserializer=UsesDeserializer(reporter, split=True),
                      timestamp_extractor=occurred_at)
    sdf = app.dataframe(topic)
    window = sdf.tumbling_window(duration_ms=60_000, grace_ms=args.lateness_ms)
    if args.batch:
        sdf = window.agg(tracks=Collect("track_id")).final(closing_strategy="partition")

        def cells(key: Any, value: Any) -> Counter[tuple[int, str]]:
            start = value["start"]
            return Counter((start, track) for track in value["tracks"])
    else:
        sdf = window.count().final(closing_strategy="partition")

        def cells(key: Any, value: Any) -> Counter[tuple[int, str]]:
            return Counter({(value["start"], key): value["value"]})

    sdf.sink(SummingRedisSink(counts, cells, flushed))
    app.run()


if __name__ == "__main__":
    main()
