"""Territory counters and closing days, against ground truth counted here.

Uses across several countries and two past UTC days (tracks with one to three holders,
a partial share, and a track that never gets metadata) are in Kafka before the worker
starts; it counts them, finds both days closable (both topics read to their ends, so
the wall clock stands in for the watermarks) and closes them into a temporary ledger.
Checked: every tt / th / tg counter; per day and partition, the ledger's track rows
summed over countries = the plain ``1d`` track counters, holder rows = the holder
counters, weighted_micro over holders = uses x 1,000,000; closing again changes no file.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from deltalake import DeltaTable
from support.pipeline import DAY, HOUR, Pipeline, now_ms, poll_until, right, track_event, use_event

from streamer.ledger import LedgerLocation, LedgerWriter
from streamer.pipeline.day_closing import close_partition, day_of, day_start_ms
from streamer.state.keys import KeyLayout
from streamer.state.store import RedisStore

MICRO = 1_000_000
COUNTRIES = ("DE", "US", "FR", "BR", "JP")
# track -> (genre, ai_origin, [(holder, right, share)]); None: never gets metadata
TRACKS: dict[str, tuple[str, str, list[tuple[str, str, str]]] | None] = {
    "ter-a": ("lofi", "human", [("label-1", "master", "1"), ("pub-1", "publishing", "0.5"),
                                ("pub-2", "publishing", "0.25")]),
    "ter-b": ("techno", "ai_generated", [("label-2", "master", "0.6"), ("label-1", "master", "0.4"),
                               ("pub-1", "publishing", "1")]),
    "ter-c": ("lofi", "ai_assisted", [("label-2", "master", "0.333333")]),
    "ter-d": ("jazz", "human", [("label-3", "master", "1"), ("pub-3", "publishing", "1")]),
    "ter-x": None,
}


def truth_of(uses: list[dict[str, Any]]) -> dict[str, Counter[tuple[Any, ...]]]:
    """Expected counters, per UTC day start, from the events and shares alone."""
    tt: Counter[tuple[Any, ...]] = Counter()
    th: Counter[tuple[Any, ...]] = Counter()
    tg: Counter[tuple[Any, ...]] = Counter()
    for event in uses:
        day = event["occurred_at"] // DAY * DAY
        track, use, country = event["track_id"], event["use"], event["country"]
        tt[(day, use, country, track)] += 1
        meta = TRACKS[track]
        if meta is None:
            for right_name in ("master", "publishing"):
                th[(day, right_name, use, country, "u", "_unattributed")] += 1
                th[(day, right_name, use, country, "w", "_unattributed")] += MICRO
            continue
        genre, ai_origin, rights = meta
        tg[(day, ai_origin, use, country, genre)] += 1
        for right_name in ("master", "publishing"):
            claimed = 0
            for holder, r, share in rights:
                if r != right_name:
                    continue
                micro = int(Decimal(share) * MICRO)
                claimed += micro
                th[(day, right_name, use, country, "u", holder)] += 1
                th[(day, right_name, use, country, "w", holder)] += micro
            if claimed < MICRO:
                th[(day, right_name, use, country, "u", "_unclaimed")] += 1
                th[(day, right_name, use, country, "w", "_unclaimed")] += MICRO - claimed
    return {"tt": tt, "th": th, "tg": tg}


async def read_family(client: aioredis.Redis, prefix: str, partitions: int, kind: str,
                      days: list[int]) -> Counter[tuple[Any, ...]]:
    found: Counter[tuple[Any, ...]] = Counter()
    for partition in range(partitions):
        for day in days:
            values = await client.hgetall(f"{{{prefix}:{partition}}}:{kind}:1d:{day}")
            for field, value in values.items():
                found[(day, *field.decode().split("|"))] += int(value)
    return found


def ledger_files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in root.rglob("*") if path.is_file()}


async def test_territory_counters_and_closed_days_match_ground_truth(make_pipeline: Any) -> None:
    pipe: Pipeline = await make_pipeline(partitions=2)
    rng = random.Random(20)
    today = now_ms() // DAY * DAY
    day_one, day_two = today - 3 * DAY, today - 2 * DAY
    tracks = [track_event(track, day_one, genre=meta[0], ai_origin=meta[1],
                          rights=[right(h, r, share) for h, r, share in meta[2]])
              for track, meta in TRACKS.items() if meta is not None]
    uses = []
    for day in (day_one, day_two):
        for hour in range(0, 24, 3):  # in time order: none is late
            for _ in range(rng.randint(20, 40)):
                uses.append(use_event(rng.choice(list(TRACKS)), rng.choice(("play", "create")),
                                      day + hour * HOUR + rng.randrange(HOUR),
                                      country=rng.choice(COUNTRIES)))
    uses.sort(key=lambda event: event["occurred_at"])
    async with pipe.producer(batch_events=50, linger_ms=20) as producer:
        for event in tracks:
            await producer.send_track(event)
        await producer.flush()
        for event in uses:
            await producer.send_use(event)
    truth = truth_of(uses)

    ledger_root = Path(pipe.env()["STREAMER_LEDGER_URL"])
    writer = LedgerWriter(LedgerLocation(str(ledger_root)), {})
    days = [day_of(day_one), day_of(day_two)]
    await pipe.start_worker()
    await pipe.drained()

    async def both_days_closed() -> bool:
        closed = [await asyncio.to_thread(writer.last_closed_day, p)
                  for p in range(pipe.partitions)]
        return all(day is not None and day >= days[1] for day in closed)

    await poll_until(both_days_closed, 180, "both days closed in the ledger")

    client = await pipe.redis()
    day_starts = [day_one, day_two]
    for kind in ("tt", "th", "tg"):
        found = await read_family(client, pipe.key_prefix, pipe.partitions, kind, day_starts)
        assert found == +truth[kind], kind

    # The ledger, per day and partition, against the plain 1d counters of that shard.
    tables = {name: DeltaTable(str(ledger_root / name)).to_pyarrow_table().to_pylist()
              for name in ("tracks", "holders", "attributions", "catalog", "closes")}
    for day in days:
        start = day_start_ms(day)
        for partition in range(pipe.partitions):
            tag = f"{{{pipe.key_prefix}:{partition}}}"
            plain_t = {k.decode(): int(v) for k, v in
                       (await client.hgetall(f"{tag}:t:1d:{start}")).items()}
            plain_h = {k.decode(): int(v) for k, v in
                       (await client.hgetall(f"{tag}:h:1d:{start}")).items()}
            rows = [r for r in tables["tracks"] if r["day"] == day and r["partition"] == partition]
            summed: Counter[str] = Counter()
            for r in rows:
                summed[f"{r['use']}|{r['track_id']}"] += r["uses"]
            assert dict(summed) == plain_t
            holder_rows = [r for r in tables["holders"]
                           if r["day"] == day and r["partition"] == partition]
            held: Counter[str] = Counter()
            for r in holder_rows:
                held[f"{r['right']}|{r['use']}|u|{r['holder_id']}"] += r["uses"]
                held[f"{r['right']}|{r['use']}|w|{r['holder_id']}"] += r["weighted_micro"]
            assert dict(held) == plain_h
            # weighted_micro over holders per (track, country, use, right) = uses x MICRO
            shares: defaultdict[tuple[str, str, str], list[int]] = defaultdict(list)
            for r in tables["catalog"]:
                if r["day"] == day and r["partition"] == partition:
                    shares[(r["track_id"], r["catalog_version"], r["right"])].append(
                        r["share_micro"])
            for r in tables["attributions"]:
                if r["day"] == day and r["partition"] == partition:
                    for right_name in ("master", "publishing"):
                        weights = shares[(r["track_id"], r["catalog_version"], right_name)]
                        assert sum(r["uses"] * w for w in weights) == r["uses"] * MICRO
        # and the day's ledger total is every use of the day
        assert sum(r["uses"] for r in tables["tracks"] if r["day"] == day) == sum(
            1 for event in uses if event["occurred_at"] // DAY * DAY == day_start_ms(day))
    assert len([r for r in tables["closes"] if r["day"] in days]) == 2 * pipe.partitions

    # Closing again (a retry, another worker) commits nothing and changes no file.
    before = ledger_files(ledger_root)
    store = RedisStore(client, KeyLayout(pipe.key_prefix))
    for partition in range(pipe.partitions):
        assert await close_partition(store, writer, partition, days[1], 3 * DAY,
                                     (("1d", DAY),)) == ()
    assert ledger_files(ledger_root) == before
    # A closed day's territory counters now expire after the grace.
    ttl = await client.pttl(f"{{{pipe.key_prefix}:0}}:tt:1d:{day_one}")
    assert 0 < ttl <= 3 * DAY
    assert datetime.now(UTC).date() - days[1] >= timedelta(days=2)
