"""``python -m benchmarks.reports``: time and memory to build a month's statements and DSR
files from a synthetic ledger.

``generate --out DIR`` closes a month (``--days``, default 30; ``--partitions``, default 4)
of ``--uses`` uses (default 20M) into a fresh ledger at DIR/ledger, every day drawn anew:
Zipf popularity (s = 1) over ``--tracks`` tracks, a few large markets and a long tail of
countries, 15 % creates, 3 % of tracks without metadata, 2 % with a second catalog version
from mid-month, 1-2 master and 0-3 publishing holders from Zipf-skewed label and publisher
pools, AI origins 70/20/10 % human/assisted/generated; then writes DIR/rates.toml and
DIR/parties.toml (the largest label receives DSR files for every territory).

``measure --out DIR`` builds in one process, timing each phase and sampling peak RSS:
pricing (all lines), every holder's statement, the DSR files of the DSR recipients, and
``explain`` of the top pooled line's track. Run it in a process of its own so peak RSS is
the build's (docs/STATEMENTS.md, "Size and speed", has the figures).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from streamer.ledger import DayPartition, LedgerLocation, LedgerWriter
from streamer.ledger.model import UNATTRIBUTED, CatalogEntry, catalog_rows

MICRO = 1_000_000
ORIGINS = ("human", "ai_assisted", "ai_generated")
# Real ISO 3166-1 codes, largest markets first (DSR validators check the Territory cell).
_COUNTRIES = (
    "US", "GB", "DE", "JP", "FR", "BR", "KR", "CA", "AU", "IT", "ES", "MX", "NL", "SE", "IN",
    "PL", "RU", "CH", "BE", "AT", "NO", "DK", "FI", "IE", "PT", "NZ", "AR", "CL", "CO", "TR",
    "ZA", "ID", "PH", "TH", "MY", "SG", "VN", "TW", "HK", "IL", "AE", "SA", "EG", "NG", "KE",
    "MA", "PE", "CZ", "HU", "RO", "GR", "UA", "BG", "HR", "SK", "SI", "LT", "LV", "EE", "IS",
    "LU",
)


def _zipf(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return rng.choice(n, size=size, p=weights / weights.sum())


def _shares(rng: np.random.Generator, pool: list[str], pool_p: np.ndarray,
            count: int) -> tuple[tuple[str, int], ...]:
    if count == 0:
        return ()
    holders = list(dict.fromkeys(pool[i] for i in rng.choice(len(pool), size=count, p=pool_p)))
    left = MICRO - int(rng.integers(0, 3)) * 50_000  # sometimes an unclaimed rest
    out = []
    for index, holder in enumerate(holders):
        micro = left if index == len(holders) - 1 else int(left * rng.uniform(0.2, 0.8))
        if micro <= 0:
            break
        out.append((holder, micro))
        left -= micro
    return tuple(out)


def generate(args: argparse.Namespace) -> None:
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    labels = [f"label-{i:04d}" for i in range(args.labels)]
    publishers = [f"pub-{i:04d}" for i in range(args.publishers)]
    label_p = 1.0 / np.arange(1, len(labels) + 1)
    label_p /= label_p.sum()
    pub_p = 1.0 / np.arange(1, len(publishers) + 1)
    pub_p /= pub_p.sum()
    started = time.monotonic()
    entries: list[list[CatalogEntry]] = []
    for index in range(args.tracks):
        track_id = f"t{index:07d}"
        if rng.random() < 0.03:
            entries.append([])
            continue
        options = []
        for _ in range(2 if rng.random() < 0.02 else 1):
            options.append(CatalogEntry(
                track_id, "pop", ORIGINS[int(rng.choice(3, p=[0.7, 0.2, 0.1]))],
                _shares(rng, labels, label_p, int(rng.integers(1, 3))),
                _shares(rng, publishers, pub_p, int(rng.integers(0, 4))),
                artist=f"Artist {index % 50_000}", label=None))
        entries.append(options)
    print(f"catalog of {args.tracks} tracks in {time.monotonic() - started:.1f} s", flush=True)
    countries = list(_COUNTRIES[:args.countries])
    country_p = 1.0 / np.arange(1, len(countries) + 1) ** 1.3
    country_p /= country_p.sum()
    location = LedgerLocation(str(out / "ledger"))
    writer = LedgerWriter(location, {"benchmark": "reports"}, code_version="bench")
    per_close = -(-args.uses // (args.days * args.partitions))  # at least --uses in all
    first = date.fromisoformat(args.first)
    for offset in range(args.days):
        day = first + timedelta(days=offset)
        for partition in range(args.partitions):
            tick = time.monotonic()
            tracks = _zipf(rng, args.tracks, int(per_close * args.partitions * 1.4))
            tracks = tracks[tracks % args.partitions == partition][:per_close]
            country = rng.choice(len(countries), size=len(tracks), p=country_p)
            use = (rng.random(len(tracks)) < 0.15).astype(np.int64)
            key = (tracks.astype(np.int64) * 1024 + country) * 2 + use
            keys, counts = np.unique(key, return_counts=True)
            track_ix = keys // 2048
            late = offset >= args.days // 2
            versions: list[str] = []
            used: dict[int, CatalogEntry] = {}
            for ix in track_ix.tolist():
                known = entries[ix]
                if not known:
                    versions.append(UNATTRIBUTED)
                    continue
                entry = known[-1] if late else known[0]
                used[ix] = entry
                versions.append(entry.version)
            attributions = pa.table({
                "track_id": pa.array([f"t{ix:07d}" for ix in track_ix.tolist()]),
                "country": pa.array([countries[c] for c in ((keys // 2) % 1024).tolist()]),
                "use": pa.array(["create" if u else "play" for u in (keys % 2).tolist()]),
                "catalog_version": pa.array(versions),
                "uses": pa.array(counts, pa.int64()),
            })
            closed = DayPartition.from_arrow(day, partition, attributions,
                                             catalog_rows(used.values()))
            writer.close(closed)
            print(f"{day} p{partition}: {int(counts.sum())} uses, {len(keys)} rows, "
                  f"{time.monotonic() - tick:.1f} s", flush=True)
    print(f"ledger in {time.monotonic() - started:.0f} s", flush=True)
    _write_config(out, labels, publishers, countries)


def _write_config(out: Path, labels: list[str], publishers: list[str],
                  countries: list[str]) -> None:
    (out / "rates.toml").write_text(f"""currency = "EUR"
[[rate]]
period = "2026-11"
territory = "*"
use = "play"
right = "master"
per_use = "0.0018"
[[rate]]
period = "2026-11"
territory = "{countries[0]}"
use = "play"
right = "master"
per_use = "0.0024"
[[rate]]
period = "2026-11"
territory = "*"
use = "create"
right = "master"
per_use = "0.00375"
[[rate]]
period = "2026-11"
territory = "*"
use = "create"
right = "publishing"
per_use = "0.00025"
[[pool]]
period = "2026-11"
territory = "*"
use = "play"
right = "publishing"
amount = "125000.00"
[[pool]]
period = "2026-11"
territory = "{countries[1]}"
use = "play"
right = "publishing"
amount = "41000.00"
[[levy]]
period = "2026-11"
territory = "*"
ai_origin = "ai_generated"
per_use = "0.0005"
shares = {{ "cmo-a" = "0.6", "cmo-b" = "0.4" }}
""")
    lines = ['[sender]', 'dpid = "PADPIDA2026120101S"', 'name = "Streamer"',
             'service = "StreamerUGC"', ""]
    # The last few holders of each pool stay unknown (reported by the run).
    for number, holder in enumerate([*labels[:-5], *publishers[:-5], "cmo-a", "cmo-b"]):
        lines += ["[[party]]", f'holder_id = "{holder}"', f'name = "{holder.title()}"',
                  f'dpid = "PADPIDA{number:010d}X"']
        if holder in (labels[0], publishers[0]):
            lines.append("dsr = true")
        lines.append("")
    (out / "parties.toml").write_text("\n".join(lines))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(args: argparse.Namespace) -> None:
    from streamer.reports.dsr import write_dsr
    from streamer.reports.explain import explain
    from streamer.reports.parties import load_parties
    from streamer.reports.pricing import price
    from streamer.reports.rates import load_rate_card
    from streamer.reports.source import Period, open_snapshot
    from streamer.reports.statements import write_statements

    out = Path(args.out)
    results = out / "results"
    shutil.rmtree(results, ignore_errors=True)
    timings: list[tuple[str, float, float]] = []

    def phase(name: str, started: float) -> None:
        timings.append((name, time.monotonic() - started, _rss_mb()))
        print(f"{name}: {timings[-1][1]:.1f} s, peak RSS so far {timings[-1][2]:.0f} MB",
              flush=True)

    tick = time.monotonic()
    snapshot = open_snapshot(LedgerLocation(str(out / "ledger")), args.partitions,
                             Period.parse(args.period))
    card = load_rate_card(out / "rates.toml")
    parties = load_parties(out / "parties.toml")
    phase("snapshot", tick)
    tick = time.monotonic()
    pricing = price(snapshot, card, args.memory_limit)
    lines = pricing.con.execute("SELECT count(*), sum(uses) FILTER (WHERE \"right\" = "
                                "'master') FROM priced").fetchall()[0]
    phase(f"pricing ({lines[0]:,} lines, {len(pricing.holders)} holders)", tick)
    tick = time.monotonic()
    run = write_statements(pricing, parties, results / "statements")
    phase(f"statements ({len(run.files)} files)", tick)
    for recipient, party in sorted(parties.parties.items()):
        if not party.dsr:
            continue
        tick = time.monotonic()
        reports = write_dsr(pricing, parties, recipient, results / "dsr")
        files = sum(len(r.files) for r in reports)
        blocks = sum(r.blocks for r in reports)
        phase(f"dsr {recipient} ({len(reports)} territories, {files} files, {blocks} "
              "blocks)", tick)
    tick = time.monotonic()
    holder, track = pricing.con.execute(
        "SELECT holder_id, track_id FROM priced WHERE kind = 'pool' AND holder_id NOT LIKE '\\_%' "
        "ESCAPE '\\' ORDER BY uses DESC, holder_id, track_id LIMIT 1").fetchall()[0]
    explained = explain(pricing, holder, track)
    phase(f"explain {holder} {track} ({len(explained)} lines)", tick)
    total = sum(t for _, t, _ in timings)
    size = sum(p.stat().st_size for p in results.rglob("*") if p.is_file())
    print(f"total {total:.1f} s, peak RSS {_rss_mb():.0f} MB, output {size / 1e6:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--out", required=True)
    gen.add_argument("--uses", type=int, default=20_000_000)
    gen.add_argument("--tracks", type=int, default=400_000)
    gen.add_argument("--labels", type=int, default=800)
    gen.add_argument("--publishers", type=int, default=1200)
    gen.add_argument("--countries", type=int, default=60, choices=range(1, 61),
                     metavar="1..60")
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument("--partitions", type=int, default=4)
    gen.add_argument("--first", default="2026-11-01")
    gen.add_argument("--seed", type=int, default=21)
    mes = sub.add_parser("measure")
    mes.add_argument("--out", required=True)
    mes.add_argument("--partitions", type=int, default=4)
    mes.add_argument("--period", default="2026-11")
    mes.add_argument("--memory-limit", default="4GB")
    args = parser.parse_args(argv)
    (generate if args.command == "generate" else measure)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
