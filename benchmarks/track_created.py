"""``python -m benchmarks.track_created``: what one TrackCreated costs the worker, and what
a million tracks' plans take, this tree against another commit, in one run.

``cost``: the CPU time (``time.process_time``: the machine is shared) of the per-track
work ``benchmarks.hotpath`` times, over the same TrackCreated records for both trees:
``RecordProcessor.handle_track`` (decode, validation, dedupe, plan, cache), the
flusher's snapshot (the catalog entries it writes), and ``plan_for`` of each written
entry. ``--baseline REF`` checks REF out into a temporary git worktree and runs the
same measurement there in alternating processes, ``--repeat`` times each; medians.

``memory``: RSS of a process holding the plans of ``--tracks`` catalog tracks in a
catalog cache built as the worker builds it (its default size), and how many of them
the cache keeps.

The records come from this tree's load generator (names at its shares), written once
to a file both trees read.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def generate(path: Path, tracks: int, partitions: int, seed: int) -> None:
    import orjson

    from streamer.loadgen.catalog import TrackMaker, partition_of
    from streamer.loadgen.config import LoadConfig

    maker = TrackMaker(LoadConfig(seed=seed, catalog=tracks))
    now = int(time.time() * 1000)
    with path.open("wb") as out:
        for index in range(tracks):
            event = maker.track_event(index, now - 60_000)
            out.write(orjson.dumps([partition_of(event["track_id"], partitions),
                                    orjson.dumps(event).decode()]) + b"\n")


def _cache(settings: Any) -> Any:
    """The worker's catalog cache, as the tree under test builds it."""
    from streamer.state.catalog import CatalogCache
    try:
        from streamer.pipeline.attribution import plan_bytes
    except ImportError:  # before the cache was sized by memory
        return CatalogCache(settings.catalog_cache_size)
    return CatalogCache(settings.catalog_cache_bytes, plan_bytes)


def _records(path: Path) -> list[tuple[int, bytes]]:
    import orjson
    return [(int(p), v.encode()) for p, v in map(orjson.loads, path.read_bytes().splitlines())]


def measure_cost(path: Path) -> dict[str, float]:
    from streamer.config import load_settings
    from streamer.metrics import Metrics
    from streamer.pipeline.app import tune_gc
    from streamer.pipeline.attribution import plan_for
    from streamer.pipeline.flusher import Flusher, MetadataLookup
    from streamer.pipeline.processor import RecordProcessor
    from streamer.state.keys import KeyLayout
    from streamer.state.partition import PartitionState

    class _NoRedis:
        layout = KeyLayout("bench")

    records = _records(path)
    settings = load_settings()
    cache = _cache(settings)
    metrics = Metrics()
    processor = RecordProcessor(settings, cache, metrics)
    flusher = Flusher(settings, _NoRedis(), cache, metrics)  # type: ignore[arg-type]
    states: dict[int, PartitionState] = {}
    now_ms = int(time.time() * 1000)
    clock = time.process_time
    gc.collect()
    tune_gc(settings.gc_gen0_threshold)  # as the worker does after start-up
    started = clock()
    for offset, (partition, value) in enumerate(records):
        state = states.get(partition)
        if state is None:
            state = states[partition] = PartitionState(partition, "bench", 0,
                                                       settings.dedupe_horizon_ms)
        processor.handle_track(state, offset, value, now_ms)
    handle = clock() - started
    assert not any(state.rejections for state in states.values())
    metas = [meta for state in states.values() for meta in state.catalog_writes.values()]
    started = clock()
    for state in states.values():
        flusher._snapshot(state, MetadataLookup(flusher._expire_before(state)))
    catalog = clock() - started
    started = clock()
    for meta in metas:
        plan_for(meta)
    plan = clock() - started
    # The dedupe's share of handle_track: the same digests into a fresh table.
    import orjson

    from streamer.pipeline.processor import _hash64
    from streamer.state.dedupe import Deduper
    ids = [(_hash64(orjson.loads(value)["event_id"].encode()), now_ms)
           for _, value in records]
    deduper = Deduper(settings.dedupe_horizon_ms)
    started = clock()
    for digest, occurred_at in ids:
        deduper.add_digest(digest, occurred_at)
    dedupe = clock() - started
    per = 1e6 / len(records)
    return {"handle_track": handle * per, "catalog entries": catalog * per,
            "plans": plan * per, "all three": (handle + catalog + plan) * per,
            "  of which dedupe (add_digest)": dedupe * per,
            "all three but dedupe": (handle + catalog + plan - dedupe) * per}


def measure_memory(path: Path) -> dict[str, float]:
    import orjson

    from streamer.config import load_settings
    from streamer.events.validation import decode_track_created
    from streamer.pipeline.attribution import plan_for

    def rss() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) * 1024
        return 0

    cache = _cache(load_settings())
    gc.collect()
    before = rss()
    count = 0
    with path.open("rb") as source:
        for line in source:  # one at a time: the records are not what is measured
            decoded = decode_track_created(orjson.loads(line)[1].encode())
            assert decoded is not None
            cache.put(decoded[1], plan_for(decoded[3]))
            count += 1
    gc.collect()
    return {"tracks": count, "cached": len(cache), "rss_mb": rss() / 1e6,
            "rss_added_bytes_per_cached_track": (rss() - before) / max(1, len(cache))}


def _run(tree: Path, mode: str, path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), mode,
                          "--records", str(path)], env=env, cwd=tree, check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.track_created", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("cost", "memory"))
    p.add_argument("--tracks", type=int, default=20_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline", help="a git commit to measure in the same run (e.g. main)")
    p.add_argument("--records", type=Path, help=argparse.SUPPRESS)  # a child process
    opts = p.parse_args(argv)
    if opts.records is not None:
        measure = measure_cost if opts.mode == "cost" else measure_memory
        print(json.dumps(measure(opts.records)))
        return
    with tempfile.TemporaryDirectory(prefix="track-created-") as tmp:
        records = Path(tmp) / "tracks.jsonl"
        generate(records, opts.tracks, opts.partitions, opts.seed)
        trees = {"this tree": ROOT}
        if opts.baseline:
            baseline = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(baseline),
                            opts.baseline], cwd=ROOT, check=True, capture_output=True)
            trees = {opts.baseline: baseline, **trees}
        try:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
            for round_ in range(opts.repeat):
                order = list(trees.items())
                for name, tree in order if round_ % 2 == 0 else order[::-1]:
                    runs[name].append(_run(tree, opts.mode, records))
        finally:
            if opts.baseline:
                subprocess.run(["git", "worktree", "remove", "--force", str(baseline)],
                               cwd=ROOT, check=False, capture_output=True)
    unit = "us/TrackCreated, CPU time" if opts.mode == "cost" else ""
    print(f"{opts.tracks:,} TrackCreated, median of {opts.repeat} runs per tree {unit}")
    keys = list(runs[next(iter(runs))][0])
    print(f"  {'':34s}" + "".join(f"{name:>14s}" for name in runs))
    for key in keys:
        values = [statistics.median(run[key] for run in runs[name]) for name in runs]
        print(f"  {key:34s}" + "".join(f"{value:14,.2f}" for value in values))


if __name__ == "__main__":
    main()
