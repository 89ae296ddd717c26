"""Peer pipelines, each run as its own process on the same topic as streamer.

Every peer takes ``--bootstrap --topic --group --partitions --records N`` (and Redis
options where it writes there), consumes from the earliest offset until it has read N
records, and prints JSON lines to stdout: progress ``{"t", "records", "events"}`` twice a
second and a final ``{"done": true, "first", "last", "records", "events", ...}`` where
``first``/``last`` are the wall times of the first record read and of the moment the
last one was fully processed (for peers writing Redis: written to Redis).
"""
