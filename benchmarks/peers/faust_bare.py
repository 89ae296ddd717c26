"""Faust's per-record cost: a bare agent counting (track, use, minute) in a dict.

``async for event in stream.events()``, decode, validate, count in memory; the counts
go to Redis with one pipeline a second (the worker's backlog flush interval) and at
the end. No dedupe, no lateness rule, no attribution, no exactly-once.
"""

from __future__ import annotations

import time
from collections import Counter

import faust
import orjson

from benchmarks.peers.common import (
    EndTracker,
    RedisCounts,
    Reporter,
    count_cells,
    hard_exit,
    now_ms,
    parse_args,
    valid_events,
)
from benchmarks.peers.faust_common import run, tuned_app


def main() -> None:
    args = parse_args()
    app = tuned_app(args)
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw", acks=False)
    reporter = Reporter()
    ends = EndTracker(args.end_offsets)
    sink = RedisCounts(args.redis_url, args.prefix)
    pending: Counter[tuple[int, str]] = Counter()

    @app.agent(topic)
    async def count(stream: faust.StreamT[bytes]) -> None:
        next_flush = time.monotonic() + 1.0
        async for event in stream.events():
            reporter.start()
            message = event.message
            try:
                events = valid_events(orjson.loads(message.value), now_ms())
            except orjson.JSONDecodeError:
                events = []
            pending.update(count_cells(events))
            reporter.seen(1, len(events))
            finished = ends.processed(message.partition, message.offset)
            if finished or time.monotonic() >= next_flush:
                sink.add(pending.items())
                pending.clear()
                next_flush = time.monotonic() + 1.0
            if finished:
                reporter.done(sink.last_write)
                hard_exit(0)

    run(app)


if __name__ == "__main__":
    main()
