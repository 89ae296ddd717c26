"""Quix Streams: per-track tumbling 1-minute counts, written to Redis.

``app.dataframe(topic)`` keyed by track id (the record key), ``tumbling_window(1 min)
.count().current()``, and a batching sink that writes the latest count of every
(track, window) to a Redis hash per window with one pipeline per checkpoint
(``commit_interval`` 1 s, like streamer's flush interval). Batch records are expanded
into their events and re-keyed by track id with ``group_by`` (a repartition topic).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from typing import Any

import orjson
import redis

from benchmarks.peers.common import Reporter, events_in, hard_exit, parse_args


def main() -> None:
    args = parse_args()
    from quixstreams import Application
    from quixstreams.sinks.base import BatchingSink, SinkBatch

    reporter = Reporter()
    client = redis.Redis.from_url(args.redis_url)
    state: dict[str, Any] = {"written": 0, "last_write": 0.0, "done_at": None, "rows": 0}

    class RedisCounts(BatchingSink):
        def write(self, batch: SinkBatch) -> None:
            latest: dict[tuple[Any, int], int] = {}
            for item in batch:
                value = item.value
                latest[(item.key, value["start"])] = value["value"]
            pipe = client.pipeline(transaction=False)
            for (key, start), count in latest.items():
                track = key.decode() if isinstance(key, bytes) else str(key)
                pipe.hset(f"{args.prefix}:quix:1m:{start}", track, count)
            pipe.execute()
            state["written"] += len(latest)
            state["last_write"] = time.time()

    def skip(exc: Exception, row: Any, logger: logging.Logger) -> bool:
        return True

    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group,
        auto_offset_reset="earliest", commit_interval=1.0, loglevel="WARNING",
        state_dir=args.state_dir or tempfile.mkdtemp(prefix="quix-state-"),
        on_consumer_error=skip, on_processing_error=skip)
    # Raw bytes, decoded in ``seen`` like the Faust peers do: a record that is not JSON
    # (the generator sends some) must count as read, or the run never finishes.
    topic = app.topic(args.topic, value_deserializer="bytes", key_deserializer="str")
    sdf = app.dataframe(topic)

    def seen(value: Any) -> list[dict[str, Any]]:
        try:
            events = events_in(orjson.loads(value))
        except orjson.JSONDecodeError:
            events = []
        # group_by needs a track id; an event without one would fail there and never
        # reach the row count the finish line waits for.
        events = [event for event in events if type(event.get("track_id")) is str]
        reporter.seen(1, len(events))
        return events

    def row(value: Any) -> None:
        state["rows"] += 1

    if args.batch:
        # Events of a batch record have different tracks: expand, then re-key by track.
        sdf = sdf.apply(seen, expand=True)
        sdf = sdf.group_by("track_id")
    else:
        sdf = sdf.apply(seen, expand=True)  # the record key already is the track id
    sdf = sdf.update(row)
    sdf = sdf.tumbling_window(duration_ms=60_000).count().current()
    sdf.sink(RedisCounts())

    def watch() -> None:
        while True:
            time.sleep(0.05)
            if reporter.records >= args.records and state["rows"] >= reporter.events:
                if state["done_at"] is None:
                    state["done_at"] = time.time()
                # Finished once a checkpoint wrote after the last record was read.
                if state["last_write"] > state["done_at"]:
                    reporter.last = state["last_write"]
                    reporter.done(counters_written=state["written"])
                    hard_exit(0)

    threading.Thread(target=watch, daemon=True).start()
    app.run()


if __name__ == "__main__":
    main()
