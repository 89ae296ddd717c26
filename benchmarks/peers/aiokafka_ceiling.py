"""The Python ceiling: aiokafka ``getmany`` + ``orjson.loads`` + a Counter per track.

No validation, no dedupe, no windows, no output: what reading and decoding the records
costs in Python on this machine, the upper bound any Python pipeline can reach. Not a
peer (it computes nothing reconcilable); its ratio tells how far from the bound streamer is.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer

from benchmarks.peers.common import EndTracker, Reporter, parse_args


async def main() -> None:
    args = parse_args()
    consumer = AIOKafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap, group_id=args.group,
        auto_offset_reset="earliest", enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    counts: Counter[object] = Counter()
    reporter = Reporter()
    ends = EndTracker(args.end_offsets)
    loads = orjson.loads
    try:
        while not ends.done:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if batches:
                reporter.start()
            for tp, messages in batches.items():
                events = 0
                for message in messages:
                    try:
                        value = loads(message.value)
                    except orjson.JSONDecodeError:
                        continue
                    if type(value) is list:
                        for event in value:
                            if type(event) is dict:
                                counts[event.get("track_id")] += 1
                                events += 1
                    elif type(value) is dict:
                        counts[value.get("track_id")] += 1
                        events += 1
                reporter.seen(len(messages), events)
                if messages:
                    ends.processed(tp.partition, messages[-1].offset)
        reporter.done(None, distinct_tracks=len(counts))
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())
