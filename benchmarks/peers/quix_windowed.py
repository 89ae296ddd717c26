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

from collections import Counter
from functools import partial
from typing import Any

from quixstreams.dataframe import StreamingDataFrame
from quixstreams.dataframe.windows.aggregations import Collect

from benchmarks.peers.common import parse_args
from benchmarks.peers.quix_common import Cells, run_peer


def pipeline(sdf: StreamingDataFrame, *, lateness_ms: int,
             batch: bool) -> tuple[StreamingDataFrame, Cells]:
    window = sdf.tumbling_window(duration_ms=60_000, grace_ms=lateness_ms)
    if batch:
        def tracks(key: Any, value: Any) -> Counter[tuple[int, str]]:
            start = value["start"]
            return Counter((start, track) for track in value["tracks"])

        return (window.agg(tracks=Collect("track_id")).final(closing_strategy="partition"),
                tracks)

    def per_key(key: Any, value: Any) -> Counter[tuple[int, str]]:
        return Counter({(value["start"], key): value["value"]})

    return window.count().final(closing_strategy="partition"), per_key


def main() -> None:
    args = parse_args()
    run_peer(args, key_deserializer="str", split=True, event_time=True,
             pipeline=partial(pipeline, lateness_ms=args.lateness_ms, batch=args.batch))


if __name__ == "__main__":
    main()
