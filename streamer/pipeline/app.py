"""The Faust application: one agent over both input topics, a flush timer, the web API.

Records of ``tracks.created`` and ``sounds.used`` come from one fetch loop (through the
agent, or straight to the worker with ``STREAMER_DIRECT_DELIVERY``), so a track's
metadata and its uses are applied in the order this worker consumed them. Faust's
own offset acking is off for the input topics (``acks=False``): offsets are owned by
the Redis flush (see pipeline/worker.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import ssl
import time
from typing import Any

import faust
import mode
from faust.sensors import Monitor

from streamer.api.probes import register_probes
from streamer.api.queries import UsageQueries
from streamer.api.ranges import RangeQueries
from streamer.api.views import register_routes
from streamer.config import Settings
from streamer.ledger.reader import LedgerReader
from streamer.ledger.writer import LedgerLocation
from streamer.metrics import Metrics
from streamer.pipeline.cadence import FlushCadence
from streamer.pipeline.faust_compat import (
    deliver_directly,
    fence_rewinds,
    resume_from_stored_offsets,
    tune_fetches,
)
from streamer.pipeline.faust_compat import highwater as consumer_highwater
from streamer.pipeline.heap import HeapTrimmer
from streamer.pipeline.worker import PipelineWorker
from streamer.state.keys import TRACKS_CODE, USES_CODE, KeyLayout
from streamer.state.store import RedisStore, connect

log = logging.getLogger(__name__)


class _HideSaslAuthBytes(logging.Filter):
    """aiokafka logs every request at DEBUG; a SASL PLAIN one carries the password."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
                type(arg).__name__.startswith("SaslAuthenticate") for arg in record.args):
            record.args = tuple(
                "<SASL bytes hidden>" if type(arg).__name__.startswith("SaslAuthenticate")
                else arg for arg in record.args)
        return True


# At import, so it is in place before ensure_topics' admin client logs in (cli.py).
logging.getLogger("aiokafka.conn").addFilter(_HideSaslAuthBytes())


class PerRecordQuietMonitor(Monitor):
    """Faust's monitor without its bookkeeping per record and per event.

    Those figures feed Faust's web stats, which are off (the worker's own are in
    streamer/metrics.py); the hooks are a measurable cost for a worker reading
    single-event records (docs/BENCHMARKS.md).
    Faust reads ``stream_inbound_time`` only for topics with acks, and ours have none.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


def tune_gc(gen0_threshold: int) -> None:
    """Young collections every ``gen0_threshold`` allocations (``Settings``), older ones
    10x rarer each, and the start-up objects (modules, the app) frozen out of them all.

    The hot path allocates many short-lived tuples and strings that reference counting
    frees at once; the cyclic collector finds nothing there, but at CPython's default
    of 700 it ran often enough to cost a noticeable share of the hot path's time
    (docs/BENCHMARKS.md).
    """
    if gen0_threshold <= 0:
        return
    gc.freeze()
    gc.set_threshold(gen0_threshold, 20, 100)


def _broker_credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = kafka.aiokafka_kwargs().get("ssl_context")
    ssl_context = context if isinstance(context, ssl.SSLContext) else None
    if kafka.sasl_mechanism:
        return faust.SASLCredentials(
            username=kafka.sasl_username, password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism, ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


def create_app(settings: Settings) -> faust.App:
    """Build the worker's Faust app; topics must exist (see ensure_topics)."""
    os.makedirs(settings.data_dir, exist_ok=True)
    brokers = ";".join(f"kafka://{host}" for host in settings.kafka.bootstrap.split(","))
    app = faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=_broker_credentials(settings),
        store="memory://",
        datadir=f"{settings.data_dir}/{settings.app_id}-data",
        topic_allow_declare=True,  # Faust's own leader topic; ours exist already
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.kafka_session_timeout_s / 4),
        consumer_max_fetch_size=settings.kafka_max_partition_fetch_bytes,
        broker_max_poll_records=settings.kafka_max_poll_records,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=4096,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        producer_acks=-1,
        Monitor=PerRecordQuietMonitor,
    )
    metrics = Metrics()
    store = RedisStore(connect(settings.redis_url), KeyLayout(settings.key_prefix))
    worker = PipelineWorker(settings, store, metrics)
    queries = UsageQueries(store.client, store.layout, settings.partitions)
    ledger = LedgerReader(LedgerLocation(settings.ledger_url, settings.ledger_storage_options),
                          settings.partitions)
    ranges = RangeQueries(store.client, store.layout, settings.partitions, ledger)
    register_routes(app, settings, queries, worker.health, metrics, ranges,
                    settings.territory_windows)
    register_probes(app, store.client.ping, lambda: (
        worker.watch.stalled_for(now) if worker.watch.stalled(now := time.monotonic()) else None))
    inputs = app.topic(
        settings.tracks_topic, settings.uses_topic,
        key_serializer="raw", value_serializer="raw", acks=False,
    )
    codes = {settings.uses_topic: USES_CODE, settings.tracks_topic: TRACKS_CODE}

    # The agent subscribes the worker to the input topics and counts their records,
    # unless STREAMER_DIRECT_DELIVERY hands them to the worker from the fetch loop.
    @app.agent(inputs)
    async def count(stream: faust.StreamT[bytes]) -> None:
        handle = worker.handle
        async for event in stream.events():
            message = event.message
            await handle(message.topic, message.partition, message.offset, message.value)

    def observe_delivery() -> tuple[int, int]:
        """Consumer lag gauges and the delivery watchdog, once per flush round; returns
        the records read so far and those waiting in Kafka past them."""
        # Progress: records counted, and with direct delivery the fetch rounds too, so
        # a partition ending in a transaction marker (an offset never delivered) does
        # not look stalled while the loop goes on fetching.
        read = waiting = 0
        for partition, state in list(worker.states.items()):
            for topic, code in codes.items():
                read += state.next_offset[code]
                highwater = consumer_highwater(app.consumer, topic, partition)
                if highwater is not None:
                    lag = max(0, highwater - state.next_offset[code])
                    waiting += lag
                    metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)
        now = time.monotonic()
        worker.watch.observe(read + worker.watch.fetch_rounds(), waiting > 0,
                             worker.rebalancing, now)
        metrics.delivery_stalled.set(worker.watch.stalled_for(now))
        return read, waiting

    @app.service
    class FlushLoop(mode.Service):
        """Flush rounds (``PipelineWorker.flush_round``), then the delivery checks.

        Not ``app.timer``: mode's timer corrects its drift by at most 0.1 s a round, so
        a long pass stretched the cadence, and latency with it (docs/BENCHMARKS.md).
        """

        @mode.Service.task
        async def _flush_loop(self) -> None:
            trimmer = HeapTrimmer(settings.malloc_trim_interval_s)
            cadence = FlushCadence(settings.flush_interval_s, settings.backlog_flush_interval_s)
            interval = settings.flush_interval_s
            while not self.should_stop:
                metrics.flush_interval.set(interval)
                await worker.flush_round(interval, self.sleep)
                read, waiting = observe_delivery()
                interval = cadence.next_interval(read, waiting, time.monotonic())
                if trimmer.due():
                    await asyncio.to_thread(trimmer.trim)

    async def ensure_started() -> None:
        # Services of @app.service start after the first assignment; the revocation
        # signal comes before every assignment, the first one included.
        if not worker.started:
            await worker.start(app.consumer)
            tune_fetches(app.consumer, settings.kafka_fetch_min_bytes,
                         settings.kafka_fetch_max_wait_ms)
            resume_from_stored_offsets(app.consumer, worker.stored_positions)
            if settings.direct_delivery:
                worker.watch.fetch_loop = deliver_directly(app.consumer, set(codes),
                                                           worker.handle)
            else:  # Faust's drain loop must not undo the worker's rewinds either
                fence_rewinds(app.consumer)

    # Faust's signal type admits any positional arguments; ours take the one it sends.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        await ensure_started()
        await worker.on_revoked(revoked, app.consumer_generation_id)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # as on_revoked
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        await ensure_started()
        await worker.on_assigned(assigned)

    @app.service
    class Shutdown(mode.Service):
        """Flush what is in memory when the worker stops gracefully."""

        async def on_stop(self) -> None:
            try:
                await asyncio.wait_for(worker.stop(), timeout=15)
            finally:
                await store.close()

    # For tests and tools holding only the app; faust.App declares no such attributes.
    app.streamer_worker = worker  # type: ignore[attr-defined]
    app.streamer_metrics = metrics  # type: ignore[attr-defined]
    return app
