"""``python -m benchmarks.hotpath``: the worker's per-event cost, without Kafka or Redis.

Generates records with the load generator's model (same defaults as ``make bench``),
then times, on one core, what the worker does per record after Faust hands it over:

* ``decode``: ``orjson.loads`` of the record value alone (the floor of any JSON path);
* ``handle``: ``RecordProcessor.handle_uses`` / ``handle_track`` (decode, validation,
  lateness, dedupe, in-memory cells);
* ``snapshot``: the flusher's synchronous snapshot (attribution into Redis fields),
  once per ``--flush-every`` events per partition, as a flush interval would.

Timed in CPU time of the process (``time.process_time``, its own call's cost
subtracted), so other work on a shared machine does not inflate the figures; reported
as microseconds per usage event, median of ``--repeat`` runs. ``--territory both`` runs
the same records with territory counters on (the default windows) and off
(``STREAMER_TERRITORY_WINDOWS=``), interleaved, and prints the throughput ratio (issue
20's budget: on >= 90 % of off). ``--baseline REF`` runs the same measurement on the
code of a git revision too (its ``streamer/`` package, this script), alternating
processes round by round, and prints both side by side. A second table
gives the cost per TrackCreated record, which bounds a full-day replay's throughput
(one TrackCreated per ten uses there): ``handle_track`` from the run above, and, over
the catalog's TrackCreated records alone, the flusher's work for them (the snapshot's
catalog entries, then the attribution plan the first flush with a use of each track
builds). The figures
are upper bounds of the hot path's share in a real worker (which also pays Faust's
per-record delivery and the Redis round trips), and the quick way to compare two
versions of the code on the same machine (``--baseline``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from streamer.config import Settings, load_settings
from streamer.loadgen.config import LoadConfig
from streamer.loadgen.model import TrafficModel
from streamer.loadgen.records import TRACKS, Record, RecordBuilder
from streamer.metrics import Metrics
from streamer.pipeline.app import tune_gc
from streamer.pipeline.attribution import plan_for
from streamer.pipeline.flusher import Flusher, MetadataLookup
from streamer.pipeline.processor import RecordProcessor
from streamer.state.catalog import CatalogCache
from streamer.state.keys import KeyLayout
from streamer.state.partition import PartitionState

TERRITORY_VARIABLE = "STREAMER_TERRITORY_WINDOWS"
clock = time.process_time


def _clock_cost() -> float:
    """Seconds one ``clock()`` call adds to an interval it ends (subtracted per call)."""
    calls = 20_000
    started = clock()
    for _ in range(calls):
        clock()
    return (clock() - started) / (calls + 1)


CLOCK_COST = _clock_cost()


class _NoRedis:
    """The flusher's store, for the synchronous snapshot only."""

    layout = KeyLayout("hotpath")


def catalog_cache(settings: Settings) -> CatalogCache:
    """The worker's plan cache (as the code under test builds it: ``--baseline`` runs
    this script on older code too)."""
    try:
        from streamer.pipeline.attribution import plan_bytes
    except ImportError:  # before the cache was sized by memory
        return CatalogCache(getattr(settings, "catalog_cache_size"))  # noqa: B009
    return CatalogCache(settings.catalog_cache_bytes, plan_bytes)


def lookup(flusher: Flusher, state: PartitionState) -> MetadataLookup:
    """What ``Flusher._fetch_metadata`` would find in an empty Redis."""
    found = MetadataLookup(flusher._expire_before(state))
    found.previous.update((track_id, None) for track_id in state.needs_old_meta)
    return found


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
    cache = catalog_cache(settings)
    metrics = Metrics()
    processor = RecordProcessor(settings, cache, metrics)
    flusher = Flusher(settings, _NoRedis(), cache, metrics)  # type: ignore[arg-type]
    states: dict[int, PartitionState] = {}
    offsets: dict[tuple[int, int], int] = {}
    uses_s = tracks_s = snapshot_s = 0.0
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
            tracks_s += clock() - started - CLOCK_COST
        else:
            processor.handle_uses(state, offset, record.value, now_ms)
            uses_s += clock() - started - CLOCK_COST
        state.rejections.clear()
        if state.unflushed_events >= flush_every:
            started = clock()
            flusher._snapshot(state, lookup(flusher, state))
            snapshot_s += clock() - started - CLOCK_COST
    started = clock()
    for state in states.values():  # the last interval's, as a worker's last flush
        flusher._snapshot(state, lookup(flusher, state))
    snapshot_s += clock() - started
    return {"uses": uses_s, "tracks": tracks_s, "snapshot": snapshot_s}


def run_tracks_once(records: list[Record], settings: Settings) -> dict[str, float]:
    """TrackCreated records alone: handle them, then one snapshot per partition and the
    plans of the tracks they wrote (per-track flusher work a uses-heavy run hides)."""
    cache = catalog_cache(settings)
    metrics = Metrics()
    processor = RecordProcessor(settings, cache, metrics)
    flusher = Flusher(settings, _NoRedis(), cache, metrics)  # type: ignore[arg-type]
    states: dict[int, PartitionState] = {}
    now_ms = int(time.time() * 1000)
    handle_s = 0.0
    for offset, record in enumerate(records):
        state = states.get(record.partition)
        if state is None:
            state = states[record.partition] = PartitionState(
                record.partition, "hotpath", 0, settings.dedupe_horizon_ms)
        started = clock()
        processor.handle_track(state, offset, record.value, now_ms)
        handle_s += clock() - started - CLOCK_COST
        state.rejections.clear()
    metas = [meta for state in states.values() for meta in state.catalog_writes.values()]
    started = clock()
    for state in states.values():
        flusher._snapshot(state, lookup(flusher, state))
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
    started = clock()
    call()
    return clock() - started


def territory_settings(mode: str) -> dict[str, Settings]:
    """The settings to compare: the environment's, or territory on and off."""
    if mode == "env":
        settings = load_settings()
        return {"on" if settings.territory else "off": settings}
    env = dict(os.environ)
    env.pop(TERRITORY_VARIABLE, None)
    on = load_settings(env)
    if not on.territory:
        raise SystemExit("--territory both: STREAMER_WINDOWS counts no 1d window, so the "
                         "default territory windows are off; nothing to compare")
    return {"on": on, "off": load_settings({**env, TERRITORY_VARIABLE: ""})}


def measure(opts: argparse.Namespace) -> dict[str, Any]:
    """Per configuration: seconds of each phase per run (runs interleaved)."""
    records, events = build_records(opts.events, opts.batch_events, opts.partitions,
                                    opts.seed, opts.catalog)
    configs = territory_settings(opts.territory)
    tune_gc(opts.gc_threshold)  # after the records are built, as the worker after start-up
    values = [record.value for record in records if record.topic != TRACKS]
    tracks = [record for record in records if record.topic == TRACKS]
    decode: list[float] = []
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    track_runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for round_ in range(opts.repeat):
        decode.append(timed(lambda: decode_all(values)))
        order = list(configs.items())
        for name, settings in order[round_ % 2:] + order[:round_ % 2]:  # alternate first
            runs[name].append(run_once(records, settings, opts.flush_every))
            track_runs[name].append(run_tracks_once(tracks, settings))
    return {"events": events, "records": len(records), "tracks": len(tracks),
            "decode": decode, "runs": runs, "track_runs": track_runs}


def summarise(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Medians per configuration: us per usage event, us per TrackCreated, events/s."""
    per_event = 1e6 / result["events"]
    per_track = 1e6 / max(1, result["tracks"])
    table: dict[str, dict[str, float]] = {}
    for name, runs in result["runs"].items():
        track_runs = result["track_runs"][name]
        total = statistics.median(sum(run.values()) for run in runs)
        table[name] = {
            "decode": statistics.median(result["decode"]) * per_event,
            "handle_uses": statistics.median(run["uses"] for run in runs) * per_event,
            "handle_track": statistics.median(run["tracks"] for run in runs) * per_event,
            "snapshot": statistics.median(run["snapshot"] for run in runs) * per_event,
            "total": total * per_event,
            "events_per_s": result["events"] / total,
            "track_handle": statistics.median(run["tracks"] for run in runs) * per_track,
            "track_only": statistics.median(run["handle"] for run in track_runs) * per_track,
            "track_catalog": statistics.median(run["catalog"] for run in track_runs)
            * per_track,
            "track_plan": statistics.median(run["plan"] for run in track_runs) * per_track,
            "track_all": statistics.median(run["handle"] + run["catalog"] + run["plan"]
                                           for run in track_runs) * per_track,
        }
    return table


_EVENT_ROWS = (("decode (orjson.loads only)", "decode"), ("handle_uses", "handle_uses"),
               ("handle_track", "handle_track"), ("snapshot (per flush)", "snapshot"),
               ("all but decode-only", "total"))
_TRACK_ROWS = (("handle_track", "track_handle"), ("handle_track (tracks only)", "track_only"),
               ("snapshot catalog writes", "track_catalog"), ("attribution plans", "track_plan"),
               ("tracks only, all three", "track_all"))


def print_tables(columns: dict[str, dict[str, float]], result: dict[str, Any],
                 repeat: int, batch_events: int) -> None:
    names = list(columns)
    head = "".join(f"{name:>16s}" for name in names)
    print(f"{result['events']:,} usage events in {result['records']:,} records "
          f"({batch_events} per batch), CPU time, median of {repeat} runs:")
    print(f"  {'us/event':28s}{head}")
    for label, key in _EVENT_ROWS:
        print(f"  {label:28s}" + "".join(f"{columns[n][key]:16.2f}" for n in names))
    print(f"  {'events/s on one core':28s}"
          + "".join(f"{columns[n]['events_per_s']:16,.0f}" for n in names))
    print(f"{result['tracks']:,} TrackCreated records, median of {repeat} runs:")
    print(f"  {'us/TrackCreated':28s}{head}")
    for label, key in _TRACK_ROWS:
        print(f"  {label:28s}" + "".join(f"{columns[n][key]:16.2f}" for n in names))
    for prefix in sorted({name.rsplit(" ", 1)[0] for name in names if name.endswith("on")}):
        on, off = (f"{prefix} on".strip(), f"{prefix} off".strip())
        if on in columns and off in columns:
            ratio = columns[on]["events_per_s"] / columns[off]["events_per_s"]
            print(f"{prefix + ': ' if prefix else ''}territory on / off throughput: "
                  f"{ratio:.1%} (budget >= 90 %)")


def run_baseline(opts: argparse.Namespace, argv: list[str]) -> None:
    """This measurement on ``opts.baseline``'s code and on the working tree, one process
    per round each, alternating, so both see the same machine load."""
    here = Path(__file__).resolve().parent.parent
    args = [arg for arg in argv if not arg.startswith("--baseline")]
    if "--baseline" in argv:  # "--baseline REF" as two words
        at = argv.index("--baseline")
        args = argv[:at] + argv[at + 2:]
    with tempfile.TemporaryDirectory(prefix="hotpath-baseline-") as tmp:
        base = Path(tmp)
        archive = subprocess.run(["git", "-C", str(here), "archive", opts.baseline, "streamer"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        (base / "benchmarks").mkdir()
        for name in ("__init__.py", "hotpath.py"):
            shutil.copy(here / "benchmarks" / name, base / "benchmarks" / name)
        merged: dict[str, dict[str, Any]] = {}
        for _ in range(opts.repeat):
            for label, cwd in ((opts.baseline, base), ("work tree", here)):
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.hotpath", *args, "--repeat", "1",
                     "--json"], cwd=cwd, check=True, capture_output=True, text=True,
                    env={**os.environ, "PYTHONPATH": str(cwd)}).stdout
                result = json.loads(out)
                known = merged.setdefault(label, result)
                if known is not result:
                    known["decode"] += result["decode"]
                    for name, runs in result["runs"].items():
                        known["runs"][name] += runs
                        known["track_runs"][name] += result["track_runs"][name]
    columns = {f"{label} {name}": column for label, result in merged.items()
               for name, column in summarise(result).items()}
    print(f"baseline {opts.baseline} and the work tree, alternating processes:")
    print_tables(columns, next(iter(merged.values())), opts.repeat, opts.batch_events)


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
    p.add_argument("--territory", choices=("env", "both"), default="env",
                   help="env: as the environment says; both: on and off, interleaved")
    p.add_argument("--baseline", metavar="REF",
                   help="also measure this git revision's code, alternating with the "
                        "work tree's, one process per round")
    p.add_argument("--json", action="store_true", help="print the raw samples as JSON")
    argv = sys.argv[1:] if argv is None else argv
    opts = p.parse_args(argv)
    if opts.baseline:
        run_baseline(opts, argv)
        return
    result = measure(opts)
    if opts.json:
        print(json.dumps(result))
        return
    print_tables(summarise(result), result, opts.repeat, opts.batch_events)


if __name__ == "__main__":
    main()
