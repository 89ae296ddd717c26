"""A Faust Table fed by batches: ``stream.take_events(...)``, one increment per distinct key.

Each batch of records is aggregated in a dict first, keyed by (track, use, minute of
``occurred_at``), then ``table[key] += n`` once per distinct key, so the table writes one
changelog record per key and batch instead of one per event. The table uses Faust's
partitioner for its changelog (``use_partitioner=True``): outside the per-event loop
there is no current event to take a partition from. At the end the table is copied to
Redis (part of the timed run). No dedupe, no lateness rule, no attribution.
"""

from __future__ import annotations

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

TAKE = 2_000
WITHIN_S = 0.2


def main() -> None:
    args = parse_args()
    app = tuned_app(args)
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw", acks=False)
    table = app.Table("cells", default=int, partitions=args.partitions, use_partitioner=True)
    reporter = Reporter()
    ends = EndTracker(args.end_offsets)
    sink = RedisCounts(args.redis_url, args.prefix)

    @app.agent(topic)
    async def count(stream: faust.StreamT[bytes]) -> None:
        # take_events is newer than Faust's StreamT type.
        async for batch in stream.take_events(  # type: ignore[attr-defined]
                TAKE, within=WITHIN_S):
            # Its first records were consumed at most WITHIN_S before the batch came.
            reporter.start()
            cells: Counter[tuple[int, str]] = Counter()
            finished = False
            events = 0
            now = now_ms()
            for event in batch:
                message = event.message
                try:
                    valid = valid_events(orjson.loads(message.value), now)
                except orjson.JSONDecodeError:
                    valid = []
                cells.update(count_cells(valid))
                events += len(valid)
                finished = ends.processed(message.partition, message.offset)
            for (start, field), n in cells.items():
                table[f"{start}|{field}"] += n
            reporter.seen(len(batch), events)
            if finished:
                sink.add(((int(key.split("|", 1)[0]), key.split("|", 1)[1]), value)
                         for key, value in table.data.items())
                reporter.done(sink.last_write)
                hard_exit(0)

    run(app)


if __name__ == "__main__":
    main()
