"""Faust's per-record ceiling: a bare agent, ``async for value in stream``, decode, count.

Same settings as streamer's app where they matter (uvloop, raw serializers, earliest
offsets, the same partitions); no table, no changelog, no output.
"""

from __future__ import annotations

from collections import Counter

import faust
import orjson
import uvloop

from benchmarks.peers.common import Reporter, events_in, hard_exit, parse_args


def main() -> None:
    args = parse_args()
    uvloop.install()
    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://",
                    web_enabled=False, topic_partitions=args.partitions,
                    consumer_auto_offset_reset="earliest", stream_buffer_maxsize=4096)
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    counts: Counter[str] = Counter()
    reporter = Reporter()

    @app.agent(topic)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            try:
                events = events_in(orjson.loads(value))
            except orjson.JSONDecodeError:
                events = []
            for event in events:
                counts[event.get("track_id")] += 1
            reporter.seen(1, len(events))
            if reporter.records >= args.records:
                reporter.done(distinct_tracks=len(counts))
                hard_exit(0)

    faust.Worker(app, loglevel="warning", quiet=True,
                 redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
