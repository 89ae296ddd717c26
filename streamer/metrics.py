"""Prometheus metrics of a worker, exposed on ``/metrics``.

Names follow Prometheus conventions (``streamer_`` prefix, ``_total`` counters,
base units). Labels are bounded sets only: topic, reason code, partition number,
window; never a track, holder, user or event id. Besides the worker's own: the
process (``process_*``: RSS, CPU, open files), the platform (``python_info``) and
garbage collector (``python_gc_*``) collectors, and ``streamer_build_info`` (which
version and commit each worker runs, e.g. during a rolling upgrade).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamer.build_info import build_info

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# A pass bounds end-to-end latency (interval + pass): fine steps up to half a second.
_PASS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0,
                 3.0, 5.0, 10.0)
_FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(slots=True)
class HotCounts:
    """Per-record counts of the hot path, kept as plain ints.

    A prometheus-client ``inc`` takes a lock; several per record cost a measurable
    share of a single-event record's time (docs/BENCHMARKS.md). ``Metrics.publish``
    adds these to the counters once per flush pass and before every scrape.
    """

    records_uses: int = 0
    records_tracks: int = 0
    events_uses: int = 0
    events_tracks: int = 0
    events_counted: int = 0
    duplicates: int = 0


class Metrics:
    """One registry per worker, so several apps in one test process do not collide."""

    def __init__(self) -> None:
        self.hot = HotCounts()
        self.registry = registry = CollectorRegistry(auto_describe=True)
        # The default registry's collectors, shared: they read /proc and the interpreter.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        Info("streamer_build", "Version and commit of this worker, and of Python, Faust "
             "and aiokafka (value 1)", registry=registry).info(build_info())
        self.records_consumed = Counter(
            "streamer_records_consumed_total", "Kafka records consumed", ["topic"],
            registry=registry)
        events = Counter(
            "streamer_events_consumed_total", "Events consumed (a batch record carries many)",
            ["topic"], registry=registry)
        self._events = events
        self.events_consumed_uses = events.labels(topic="uses")
        self.events_consumed_tracks = events.labels(topic="tracks")
        self.events_counted = Counter(
            "streamer_events_counted_total", "Usage events counted (valid, new, in time)",
            registry=registry)
        self.rejected = Counter(
            "streamer_events_rejected_total", "Inputs sent to the dead-letter topic, by reason",
            ["reason"], registry=registry)
        self.duplicates = Counter(
            "streamer_duplicates_total", "Events not counted again: event_id seen within horizon",
            registry=registry)
        self.replayed_records = Counter(
            "streamer_replayed_records_skipped_total",
            "Records below the offset stored in Redis, skipped after a restart or rebalance",
            registry=registry)
        self.consumer_lag = Gauge(
            "streamer_consumer_lag_records", "End offset minus the next offset to count",
            ["topic", "partition"], registry=registry)
        self.flush_seconds = Histogram(
            "streamer_flush_duration_seconds", "Time of one atomic partition flush to Redis",
            buckets=_FLUSH_BUCKETS, registry=registry)
        self.flush_pass_seconds = Histogram(
            "streamer_flush_pass_duration_seconds",
            "One flush pass over the partitions due (one per tick of the flush round; all "
            "at a rebalance or stop): an event waits up to the flush interval for its "
            "partition's pass, then this long", buckets=_PASS_BUCKETS,
            registry=registry)
        self.flush_fields = Histogram(
            "streamer_flush_fields", "Counter fields written by one flush",
            buckets=(10, 100, 1_000, 10_000, 100_000, 1_000_000), registry=registry)
        self.flush_interval = Gauge(
            "streamer_flush_interval_seconds",
            "Length of the current flush round: STREAMER_FLUSH_INTERVAL_S while the worker "
            "keeps up, STREAMER_BACKLOG_FLUSH_INTERVAL_S while it drains a backlog",
            registry=registry)
        self.flushes = Counter(
            "streamer_flushes_total", "Atomic partition flushes applied", registry=registry)
        self.last_flush = Gauge(
            "streamer_last_flush_timestamp_seconds",
            "Wall time of the last applied flush or completed flush pass (idle included)",
            registry=registry)
        self.end_to_end = Histogram(
            "streamer_end_to_end_latency_seconds",
            "From an event's occurred_at to its counters being flushed to Redis",
            buckets=_LATENCY_BUCKETS, registry=registry)
        self.redis_errors = Counter(
            "streamer_redis_errors_total", "Redis calls that failed (each is retried)",
            ["operation"], registry=registry)
        self.flush_refused = Counter(
            "streamer_flush_refused_total",
            "Flushes refused because another worker owns the partition now", registry=registry)
        self.catalog_lookups = Counter(
            "streamer_catalog_lookups_total", "Track metadata lookups", ["result"],
            registry=registry)
        self.catalog_restored = Counter(
            "streamer_catalog_restored_total",
            "Catalog entries written back from a partition's copy of its flushed catalog "
            "writes (Redis lost them, e.g. in a Redis Cluster failover)", registry=registry)
        self.pending_unattributed = Gauge(
            "streamer_pending_attribution_uses",
            "Uses counted per track whose track metadata has not arrived yet",
            registry=registry)
        self.partitions_assigned = Gauge(
            "streamer_partitions_assigned", "Input partitions this worker counts",
            registry=registry)
        self.rebalances = Counter(
            "streamer_rebalances_total", "Partition assignments received", registry=registry)
        self.dlq_errors = Counter(
            "streamer_dlq_produce_errors_total", "Failed sends to the dead-letter topic",
            registry=registry)
        self.unflushed_events = Gauge(
            "streamer_unflushed_events", "Events counted in memory, not yet flushed",
            registry=registry)
        self.delivery_stalled = Gauge(
            "streamer_delivery_stalled_seconds",
            "Seconds without a record while the input partitions lag (0: records flow)",
            registry=registry)
        self.backpressure_waits = Counter(
            "streamer_backpressure_waits_total",
            "Times the agent paused because too much was unflushed (e.g. Redis down)",
            registry=registry)

    def publish(self) -> None:
        """Add the hot-path counts to the Prometheus counters."""
        hot, self.hot = self.hot, HotCounts()
        for counter, amount in (
            (self.records_consumed.labels(topic="uses"), hot.records_uses),
            (self.records_consumed.labels(topic="tracks"), hot.records_tracks),
            (self.events_consumed_uses, hot.events_uses),
            (self.events_consumed_tracks, hot.events_tracks),
            (self.events_counted, hot.events_counted),
            (self.duplicates, hot.duplicates),
        ):
            if amount:
                counter.inc(amount)

    def render(self) -> bytes:
        self.publish()
        return generate_latest(self.registry)
