"""Quix Streams, stateless pre-aggregation: counts per record, summed per checkpoint.

Each record is aggregated in one step to its (track, use, one-minute window of
``occurred_at``) counts; the batching sink sums a checkpoint's counts and writes them
with one Redis pipeline. No state store, no changelog, no repartition; Quix's default
commit interval. No dedupe, no lateness rule, no attribution.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from typing import Any

from quixstreams import Application

from benchmarks.peers.common import (
    EndTracker,
    RedisCounts,
    Reporter,
    count_cells,
    hard_exit,
    parse_args,
)
from benchmarks.peers.quix_common import SummingRedisSink, UsesDeserializer


def main() -> None:
    args = parse_args()
    reporter = Reporter()
    ends = EndTracker(args.end_offsets)
    counts = RedisCounts(args.redis_url, args.prefix)

    def processed(topic: str, partition: int, offset: int) -> None:
        ends.processed(partition, offset)

    def flushed() -> None:
        if ends.done:
            reporter.done(counts.last_write, sink_writes=counts.writes)
            hard_exit(0)

    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group,
        auto_offset_reset="earliest", loglevel="WARNING",
        state_dir=args.state_dir or tempfile.mkdtemp(prefix="quix-state-"),
        on_message_processed=processed)
    topic = app.topic(args.topic, key_deserializer="bytes",
                      value_deserializer=UsesDeserializer(reporter, split=False))
    sdf = app.dataframe(topic).apply(count_cells)

    def cells(key: Any, value: Counter[tuple[int, str]]) -> Counter[tuple[int, str]]:
        return value

    sdf.sink(SummingRedisSink(counts, cells, flushed))
    app.run()


if __name__ == "__main__":
    main()
