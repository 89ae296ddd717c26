"""The stock Faust way: a windowed Table, ``table[track_id] += 1`` per event.

A tumbling 1-minute table (expiring after 2 h) keyed by track id, kept by Faust with its
changelog topic (one changelog record per update), as the Faust docs show it; the
counts live in Faust's table (its changelog in Kafka), which is Faust's own output path.
"""

from __future__ import annotations

from datetime import timedelta

import faust
import orjson
import uvloop

from benchmarks.peers.common import Reporter, events_in, hard_exit, parse_args


def main() -> None:
    args = parse_args()
    uvloop.install()
    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://",
                    web_enabled=False, topic_partitions=args.partitions,
                    consumer_auto_offset_reset="earliest", stream_buffer_maxsize=4096,
                    topic_allow_declare=True)
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    table = app.Table("counts", default=int, partitions=args.partitions).tumbling(
        timedelta(minutes=1), expires=timedelta(hours=2))
    reporter = Reporter()

    @app.agent(topic)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            try:
                events = events_in(orjson.loads(value))
            except orjson.JSONDecodeError:
                events = []
            for event in events:
                track_id = event.get("track_id")
                if type(track_id) is str:
                    table[track_id] += 1
            reporter.seen(1, len(events))
            if reporter.records >= args.records:
                reporter.done()
                hard_exit(0)

    faust.Worker(app, loglevel="warning", quiet=True,
                 redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
