"""``python -m benchmarks.dedupe``: the dedupe table's cost per batch record as it fills.

Feeds one partition's ``Deduper`` 500-event batches (2 % of them ids seen before) up
to ``--hashes`` live hashes, the state of one of 8 partitions after 5 minutes at
250,000 events/s by default, and prints the median time per batch in each million of
hashes, and the table's size. ``--against PATH`` loads another version of
``state/dedupe.py`` (e.g. ``git show REF:streamer/state/dedupe.py > /tmp/old.py``) and
feeds both the same batches, alternating batch by batch (and which goes first), so a
VM whose speed drifts slows both alike: compare the ratio, not the microseconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import time
from types import ModuleType

from streamer.state import dedupe

BATCH = 500
SEEN_BEFORE = 10  # ids per batch drawn from earlier batches: 2 % duplicates


def _load(path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise SystemExit(f"--against: no file {path}")
    spec = importlib.util.spec_from_file_location("dedupe_against", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--against: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(hashes: int, versions: dict[str, ModuleType], seed: int) -> None:
    rng = random.Random(seed)
    tables = {name: module.Deduper(3_600_000) for name, module in versions.items()}
    times = [1_000] * BATCH
    members = [rng.getrandbits(64)]
    per_million: dict[int, dict[str, list[int]]] = {}
    stored = 0
    while stored < hashes:
        batch = ([rng.getrandbits(64) for _ in range(BATCH - SEEN_BEFORE)]
                 + rng.choices(members, k=SEEN_BEFORE))
        members += batch[:BATCH - SEEN_BEFORE:49]
        span = per_million.setdefault(stored // 1_000_000, {name: [] for name in tables})
        order = list(tables.items())
        if stored // (BATCH - SEEN_BEFORE) % 2:
            order.reverse()  # the second to see a batch finds it in the CPU's caches
        for name, table in order:
            start = time.perf_counter_ns()
            table.add_batch(batch, times)
            span[name].append(time.perf_counter_ns() - start)
        stored += BATCH - SEEN_BEFORE
    names = list(tables)
    print("hashes | " + " | ".join(f"{name} us/batch" for name in names)
          + (" | ratio" if len(names) == 2 else ""))
    for million, span in sorted(per_million.items()):
        medians = [statistics.median(span[name]) / 1e3 for name in names]
        ratio = f" | {medians[1] / medians[0]:.2f}" if len(names) == 2 else ""
        print(f"{million}-{million + 1}M | " + " | ".join(f"{m:.0f}" for m in medians) + ratio)
    for name, table in tables.items():
        total = sum(sum(span[name]) for span in per_million.values()) / 1e9
        print(f"{name}: {len(table):,} hashes in {table.memory_bytes / 2**20:.0f} MiB, "
              f"{total:.2f} s in add_batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hashes", type=int, default=9_400_000)
    parser.add_argument("--against", metavar="PATH", help="another version of dedupe.py")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    versions = {"current": dedupe}
    if args.against:
        versions = {"against": _load(args.against), "current": dedupe}
    run(args.hashes, versions, args.seed)


if __name__ == "__main__":
    main()
