"""``python -m benchmarks.hotpath``: the worker's per-event cost, without Kafka or Redis.

Generates records with the load generator's model (same defaults as ``make bench``),
then times, on one core, what the worker does per record after Faust hands it over:

* ``decode``: ``orjson.loads`` of the record value alone (the floor of any JSON path);
* ``handle``: ``RecordProcessor.handle_uses`` / ``handle_track`` (decode, validation,
  lateness, dedupe, in-memory cells);
* ``snapshot``: the flusher's synchronous snapshot (attribution into Redis fields),
  once per ``--flush-every`` events per partition, as a flush interval would.

Reported as microseconds per usage event, median of ``--repeat`` runs. A second table
gives the cost per TrackCreated record, which bounds a full-day replay's throughput
(one TrackCreated per ten uses there): ``handle_track`` from the run above, and, over
the catalog's TrackCreated records alone, the flusher's work for them (the snapshot's
catalog entries, then the attribution plan the first flush with a use of each track
builds). The figures
are upper bounds of the hot path's share in a real worker (which also pays Faust's
per-record delivery and the Redis round trips), and the quick way to compare two
versions of the code on the same machine: ``git stash``, run, ``git stash pop``, run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from streamer.config import Settings, load_settings
from streamer.loadgen.config import LoadConfig
from streamer.loadgen.model import TrafficModel
from streamer.loadgen.records import TRACKS, Record, RecordBuilder
from streamer.metrics import Metrics
from streamer.pipeline.app import tune_gc
from streamer.pipeline.attribution import plan_bytes, plan_for
from streamer.pipeline.flusher import Flusher, MetadataLookup
from streamer.pipeline.processor import RecordProcessor
from streamer.state.catalog import CatalogCache
from streamer.state.keys import KeyLayout
from streamer.state.partition import PartitionState


class _NoRedis:
    """The flusher's store, for the synchronous snapshot only."""

    layout = KeyLayout("hotpath")


def build_records(events: int, batch_events: int, partitions: int, seed: int,
                  catalog: int) -> tuple[list[Record], int]:
    cfg = LoadConfig(use_rate=50_000.0, duration_s=events / 50_000.0, seed=seed,
                     batch_events=batch_events, catalog=catalog)
    start = int(time.time() * 1000) - int(cfg.duration_s * 1000) - 600_000
    cfg.start_ms = start
    model = TrafficModel(cfg, partitions, catalog_ms=start)
    builder = RecordBuilder(batch_events)
    records = builder.add(model.catalog_tick())
    for tick in model.ticks(start):
        records.extend(builder.add(tick))
    records.extend(builder.flush())
    return records, sum(record.events for record in records)


def run_once(records: list[Record], settings: Settings, flush_every: int
             ) -> dict[str, float]:
    cache = CatalogCache(settings.catalog_cache_bytes, plan_bytes)
    metrics = Metrics()
    processor = RecordProcessor(settings, cache, metrics)
    flusher = Flusher(settings, _NoRedis(), cache, metrics)  # type: ignore[arg-type]
    states: dict[int, PartitionState] = {}
    offsets: dict[tuple[int, int], int] = {}
    uses_s = tracks_s = snapshot_s = 0.0
    clock = time.perf_counter
    for record in records:
        state = states.get(record.partition)
        if state is None:
            state = states[record.partition] = PartitionState(
                record.partition, "hotpath", 0, settings.dedupe_horizon_ms)
        key = (record.topic, record.partition)
        offset = offsets[key] = offsets.get(key, -1) + 1
        now_ms = int(time.time() * 1000)
        started = clock()
        if record.topic == TRACKS:
            processor.handle_track(state, offset, record.value, now_ms)
            tracks_s += clock() - started
        else:
            processor.handle_uses(state, offset, record.value, now_ms)
            uses_s += clock() - started
        state.rejections.clear()
        if state.unflushed_events >= flush_every:
            started = clock()
            flusher._snapshot(state, MetadataLookup(flusher._expire_before(state)))
            snapshot_s += clock() - started
    return {"uses": uses_s, "tracks": tracks_s, "snapshot": snapshot_s}


def run_tracks_once(records: list[Record], settings: Settings) -> dict[str, float]:
    """TrackCreated records alone: handle them, then one snapshot per partition and the
    plans of the tracks they wrote (per-track flusher work a uses-heavy run hides)."""
    cache = CatalogCache(settings.catalog_cache_bytes, plan_bytes)
    metrics = Metrics()
    processor = RecordProcessor(settings, cache, metrics)
    flusher = Flusher(settings, _NoRedis(), cache, metrics)  # type: ignore[arg-type]
    states: dict[int, PartitionState] = {}
    now_ms = int(time.time() * 1000)
    clock = time.perf_counter
    handle_s = 0.0
    for offset, record in enumerate(records):
        state = states.get(record.partition)
        if state is None:
            state = states[record.partition] = PartitionState(
                record.partition, "hotpath", 0, settings.dedupe_horizon_ms)
        started = clock()
        processor.handle_track(state, offset, record.value, now_ms)
        handle_s += clock() - started
        state.rejections.clear()
    metas = [meta for state in states.values() for meta in state.catalog_writes.values()]
    started = clock()
    for state in states.values():
        flusher._snapshot(state, MetadataLookup(flusher._expire_before(state)))
    catalog_s = clock() - started
    started = clock()
    for meta in metas:
        plan_for(meta)
    plan_s = clock() - started
    return {"handle": handle_s, "catalog": catalog_s, "plan": plan_s}


def decode_all(values: list[bytes]) -> None:
    for value in values:
        with contextlib.suppress(orjson.JSONDecodeError):  # the generator's invalid records
            orjson.loads(value)


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=400_000)
    p.add_argument("--batch-events", type=int, default=500, help="1: single-event records")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--catalog", type=int, default=20_000)
    p.add_argument("--flush-every", type=int, default=20_000,
                   help="events per partition between two snapshots")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gc-threshold", type=int, default=Settings().gc_gen0_threshold,
                   help="young-generation GC threshold, as the worker sets it "
                        "(STREAMER_GC_GEN0_THRESHOLD; 0: CPython's 700)")
    opts = p.parse_args(argv)

    records, events = build_records(opts.events, opts.batch_events, opts.partitions,
                                    opts.seed, opts.catalog)
    settings = load_settings()  # the environment, e.g. STREAMER_TERRITORY_WINDOWS=
    tune_gc(opts.gc_threshold)  # after the records are built, as the worker after start-up
    values = [record.value for record in records if record.topic != TRACKS]
    tracks = [record for record in records if record.topic == TRACKS]
    decode: list[float] = []
    runs: list[dict[str, float]] = []
    track_runs: list[dict[str, float]] = []
    for _ in range(opts.repeat):
        decode.append(timed(lambda: decode_all(values)))
        runs.append(run_once(records, settings, opts.flush_every))
        track_runs.append(run_tracks_once(tracks, settings))
    per_event = 1e6 / events
    rows = {"decode (orjson.loads only)": decode,
            "handle_uses": [run["uses"] for run in runs],
            "handle_track": [run["tracks"] for run in runs],
            "snapshot (per flush)": [run["snapshot"] for run in runs]}
    print(f"{events:,} usage events in {len(records):,} records "
          f"({opts.batch_events} per batch), median of {opts.repeat} runs:")
    for name, samples in rows.items():
        print(f"  {name:28s} {statistics.median(samples) * per_event:6.2f} us/event")
    total = statistics.median(sum(run.values()) for run in runs)
    print(f"  {'all but decode-only':28s} {total * per_event:6.2f} us/event "
          f"= {events / total:,.0f} events/s on one core")
    per_track = 1e6 / max(1, len(tracks))
    track_rows = {"handle_track": [run["tracks"] for run in runs],
                  "handle_track (tracks only)": [run["handle"] for run in track_runs],
                  "snapshot catalog writes": [run["catalog"] for run in track_runs],
                  "attribution plans": [run["plan"] for run in track_runs]}
    print(f"{len(tracks):,} TrackCreated records, median of {opts.repeat} runs:")
    for name, samples in track_rows.items():
        print(f"  {name:28s} {statistics.median(samples) * per_track:6.2f} us/TrackCreated")
    own = statistics.median(run["handle"] + run["catalog"] + run["plan"] for run in track_runs)
    print(f"  {'tracks only, all three':28s} {own * per_track:6.2f} us/TrackCreated")


if __name__ == "__main__":
    main()
