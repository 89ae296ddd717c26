"""``python -m benchmarks.ledger``: ledger size and speed on a synthetic day.

Builds one day of ``--uses`` uses (Zipf popularity over ``--tracks`` tracks, s = 1;
countries skewed like streaming markets: a few large ones and a long tail of 200;
10 % creates; 3 % of tracks never get metadata; 1 % get a second catalog version that
day; 1-2 master and 0-3 publishing holders out of label and publisher pools that are
Zipf-skewed too), closes it into a fresh ledger (all partitions, one after the other),
and prints: the rows per table, the compressed Parquet bytes per million uses, and the
time to close the day. ``--month N`` then closes N - 1 more days (the same rows, other
dates) and times a one-month range query per holder, track and genre (median of 5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from streamer.ledger import (
    DayPartition,
    LedgerLocation,
    LedgerReader,
    LedgerWriter,
    RangeAnswer,
)
from streamer.ledger.model import UNATTRIBUTED, CatalogEntry, catalog_rows

MICRO = 1_000_000


_CDFS: dict[tuple[int, float], np.ndarray] = {}


def _zipf_choice(rng: np.random.Generator, n: int, size: int, s: float = 1.0) -> np.ndarray:
    cdf = _CDFS.get((n, s))
    if cdf is None:
        cdf = _CDFS[(n, s)] = np.cumsum(1.0 / np.arange(1, n + 1) ** s)
    chosen: np.ndarray = np.searchsorted(cdf, rng.random(size) * cdf[-1]).astype(np.int64)
    return chosen


def _countries() -> list[str]:
    big = ["US", "BR", "IN", "ID", "MX", "DE", "GB", "JP", "FR", "PH"]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    tail = [a + b for a in letters for b in letters if a + b not in big][:190]
    return big + tail


def _entries(rng: np.random.Generator, track: int) -> list[CatalogEntry]:
    track_id = f"trk-{track:08d}"
    count = 2 if rng.random() < 0.01 else 1
    out = []
    for version in range(count):
        masters = int(rng.integers(1, 3))
        labels = _zipf_choice(rng, 50_000, masters)
        shares = [MICRO // masters] * masters
        publishing = int(rng.integers(0, 4))
        pubs = _zipf_choice(rng, 100_000, publishing)
        pub_shares = [int(x) for x in rng.integers(50_000, 300_000, publishing)]
        out.append(CatalogEntry(
            track_id, ["pop", "rock", "hip-hop", "edm", "lofi", "ambient"][track % 6],
            ["human", "ai_assisted", "ai_generated"][(track + version) % 3],
            tuple(dict((f"label-{label}", share) for label, share in zip(labels, shares,
                                                                         strict=True)).items()),
            tuple(dict((f"pub-{pub}", share) for pub, share in zip(pubs, pub_shares,
                                                                   strict=True)).items()),
            artist=f"artist-{track % 300_000}", label=f"label-{int(labels[0])}"))
    return out


def build_day(uses: int, tracks: int, partitions: int, day: date,
              seed: int) -> list[DayPartition]:
    rng = np.random.default_rng(seed)
    track = _zipf_choice(rng, tracks, uses)
    countries = _countries()
    country = _zipf_choice(rng, len(countries), uses, s=1.3)
    use = (rng.random(uses) < 0.10).astype(np.int64)  # 1: create
    key = (track * 256 + country) * 2 + use
    keys, counts = np.unique(key, return_counts=True)
    k_use = keys % 2
    k_country = (keys // 2) % 256
    k_track = keys // 512
    referenced = np.unique(k_track)
    versions: dict[int, list[CatalogEntry]] = {}
    for t in referenced.tolist():
        if t % 33 != 7:  # about 3 % never get metadata
            versions[t] = _entries(rng, t)
    country_names = np.array(countries)
    use_names = np.array(["play", "create"])
    out = []
    for partition in range(partitions):
        chosen = (k_track % partitions) == partition
        t = k_track[chosen]
        n = counts[chosen]
        version_of = []
        splits_t, splits_c, splits_u, splits_n = [], [], [], []
        for tt, cc, uu, nn in zip(t.tolist(), k_country[chosen].tolist(),
                                  k_use[chosen].tolist(), n.tolist(), strict=True):
            entries = versions.get(tt)
            if entries is None:
                parts = [(UNATTRIBUTED, nn)]
            elif len(entries) == 1 or nn == 1:
                parts = [(entries[0].version, nn)]
            else:
                parts = [(entries[0].version, nn // 2), (entries[1].version, nn - nn // 2)]
            for version, part in parts:
                splits_t.append(tt)
                splits_c.append(cc)
                splits_u.append(uu)
                splits_n.append(part)
                version_of.append(version)
        attributions = pa.table({
            "track_id": pa.array([f"trk-{x:08d}" for x in splits_t]),
            "country": pa.array(country_names[np.array(splits_c, dtype=np.int64)]),
            "use": pa.array(use_names[np.array(splits_u, dtype=np.int64)]),
            "catalog_version": pa.array(version_of),
            "uses": pa.array(splits_n, pa.int64()),
        })
        entries = [e for tt in np.unique(t).tolist() for e in versions.get(tt, [])]
        out.append(DayPartition.from_arrow(day, partition, attributions, catalog_rows(entries)))
    return out


def _parquet_bytes(root: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".parquet"):
                table = os.path.relpath(folder, root).split(os.sep)[0]
                sizes[table] = sizes.get(table, 0) + os.path.getsize(os.path.join(folder, name))
    return sizes


def redate(closed: DayPartition, day: date) -> DayPartition:
    def move(table: pa.Table) -> pa.Table:
        return table.set_column(0, "day", pa.array([day] * table.num_rows, pa.date32()))
    return DayPartition(day, closed.partition, move(closed.catalog), move(closed.attributions))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ledger", description=__doc__)
    p.add_argument("--uses", type=int, default=20_000_000)
    p.add_argument("--tracks", type=int, default=2_000_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--month", type=int, default=0,
                   help="days in the range query (0: no query; 1: the day just closed)")
    p.add_argument("--dir", default="/tmp/streamer-ledger-bench")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    shutil.rmtree(args.dir, ignore_errors=True)
    first = date(2026, 11, 1)
    started = time.perf_counter()
    closed = build_day(args.uses, args.tracks, args.partitions, first, args.seed)
    print(f"built and checked the day's input in {time.perf_counter() - started:.1f} s: "
          f"{sum(c.attributions.num_rows for c in closed):,} attribution rows, "
          f"{sum(c.catalog.num_rows for c in closed):,} catalog rows")
    location = LedgerLocation(args.dir)
    writer = LedgerWriter(location, {"benchmark": True})
    writer.last_closed_day(0)  # creates the tables outside the timing
    started = time.perf_counter()
    for day_partition in closed:
        writer.close(day_partition)
    elapsed = time.perf_counter() - started
    sizes = _parquet_bytes(args.dir)
    total = sum(sizes.values())
    rows = {name: location.open(name).to_pyarrow_dataset().count_rows() for name in sizes}
    print(f"closed {args.uses:,} uses ({args.partitions} partitions) in {elapsed:.1f} s")
    for name, size in sorted(sizes.items()):
        print(f"  {name:13} {rows[name]:>11,} rows {size / 1e6:9.1f} MB "
              f"{size / (args.uses / 1e6) / 1e6:7.2f} MB per million uses")
    print(f"  {'all':13} {'':>16} {total / 1e6:9.1f} MB "
          f"{total / (args.uses / 1e6) / 1e6:7.2f} MB per million uses")
    if args.month < 1:
        return
    started = time.perf_counter()
    for offset in range(1, args.month):
        for day_partition in closed:
            writer.close(redate(day_partition, first + timedelta(days=offset)))
    print(f"closed {args.month - 1} more days in {time.perf_counter() - started:.1f} s")
    reader = LedgerReader(location, args.partitions)
    last = first + timedelta(days=args.month - 1)
    queries: list[tuple[str, Callable[[], RangeAnswer]]] = [
        ("holder label-0", lambda: reader.holder_usage("label-0", first, last, True)),
        ("track trk-00000000", lambda: reader.track_usage("trk-00000000", first, last, True)),
        ("genre pop", lambda: reader.genre_usage("pop", first, last, True))]
    for what, call in queries:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            body = call().body
            times.append(time.perf_counter() - started)
        assert body["closed_days"] == args.month
        print(f"{args.month}-day range, by territory, {what}: median "
              f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f})")


if __name__ == "__main__":
    main()
