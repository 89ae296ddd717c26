"""The Faust app every Faust peer runs in: the worker's non-semantic tuning, nothing else.

Same as ``streamer.pipeline.app.create_app`` where it only changes speed: uvloop, raw
serializers, fetch size and records per poll, fetch minimum bytes and wait, the quiet
monitor, the garbage collector's thresholds; the values come from the worker's defaults
(``streamer.config.Settings``), so a change there reaches the peers too.
"""

from __future__ import annotations

import argparse
from typing import Any

import faust
import uvloop

from streamer.config import load_settings
from streamer.pipeline.app import PerRecordQuietMonitor, tune_gc
from streamer.pipeline.faust_compat import tune_fetches


def tuned_app(args: argparse.Namespace, **extra: Any) -> faust.App:
    uvloop.install()
    settings = load_settings({})
    app = faust.App(
        args.group, broker=f"kafka://{args.bootstrap}", store="memory://",
        web_enabled=False, topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest", stream_buffer_maxsize=4096,
        consumer_max_fetch_size=settings.kafka_max_partition_fetch_bytes,
        broker_max_poll_records=settings.kafka_max_poll_records,
        Monitor=PerRecordQuietMonitor, topic_allow_declare=True, **extra)
    tuned = False

    # Faust's signal types do not cover async receivers (the worker's app has the same).
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def tune(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        nonlocal tuned
        if not tuned:
            tuned = True
            tune_fetches(app.consumer, settings.kafka_fetch_min_bytes,
                         settings.kafka_fetch_max_wait_ms)

    tune_gc(settings.gc_gen0_threshold)
    return app


def run(app: faust.App) -> None:
    faust.Worker(app, loglevel="warning", quiet=True,
                 redirect_stdouts=False).execute_from_commandline()
