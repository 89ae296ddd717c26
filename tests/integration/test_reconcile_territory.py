"""One load generator run with territory, through Kafka and a real worker that closes
its days into the ledger, reconciled against the generator's ground truth: the plain
counters, the territory counters in Redis, the ledger's files (read with deltalake and
DuckDB, not through streamer.ledger) and the range answers of the API.

The run's event time crosses midnight UTC three days ago, so both days are past and
the worker seals and closes them once it has caught up (docs/LEDGER.md). Its size is
``STREAMER_TEST_RECONCILE_USES`` (default 48,000 uses over 20 simulated minutes); the
figures, Redis bytes of the territory counters and Parquet bytes of the ledger per
million uses among them, are printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from support.generated import send_generated
from support.pipeline import DAY, Pipeline, now_ms, poll_until

from streamer.state.connection import connect as connect_redis
from streamer.verify import compare
from streamer.verify.ledger_files import closed
from streamer.verify.redis_counters import pending_tracks, read_counters
from streamer.verify.territory import reconcile_territory
from streamer.verify.truth import fold_replaced_holders

PARTITIONS = 4
USES = int(os.environ.get("STREAMER_TEST_RECONCILE_USES") or 48_000)


def _day(start_ms: int) -> date:
    return datetime.fromtimestamp(start_ms // 1000, UTC).date()


async def territory_redis_bytes(redis_url: str, prefix: str) -> int:
    """MEMORY USAGE of every territory key (tt / th / tg) under the prefix."""
    client = connect_redis(redis_url)
    total = 0
    try:
        async for key in client.scan_iter(match="{" + prefix + ":*}:t[thg]:*", count=1000):
            total += int(await client.memory_usage(key, samples=0) or 0)
    finally:
        await client.aclose()
    return total


async def test_loadgen_run_with_territory_reconciles_counters_ledger_and_ranges(
        make_pipeline: Any, tmp_path: Path) -> None:
    pipe: Pipeline = await make_pipeline(partitions=PARTITIONS)
    ledger = Path(pipe.env()["STREAMER_LEDGER_URL"])
    midnight = now_ms() // DAY * DAY - 2 * DAY
    load, truth = await send_generated(
        pipe, PARTITIONS, seed=20, start_ms=midnight - 10 * 60_000, duration_s=1200.0,
        use_rate=USES / 1200, catalog=max(2_000, USES // 100), track_rate=0.5,
        replace_share=0.01, batch_events=200)
    worker = await pipe.start_worker()
    await pipe.drained(timeout=120 + USES / 2_000)

    async def every_partition_closed_both_days() -> bool:
        pairs = await asyncio.to_thread(closed, str(ledger))
        return all((day, p) in pairs for p in range(PARTITIONS)
                   for day in (_day(midnight - DAY), _day(midnight)))

    await poll_until(every_partition_closed_both_days, 180 + USES / 10_000,
                     "both days closed by the worker")
    deadline = time.monotonic() + 30
    while await pending_tracks(pipe.redis_url, pipe.key_prefix, PARTITIONS) and (
            time.monotonic() < deadline):
        await asyncio.sleep(0.5)

    plain = compare(fold_replaced_holders(truth.expected()),
                    fold_replaced_holders(await read_counters(pipe.redis_url, pipe.key_prefix)))
    assert plain.ok, plain.summary(limit=10)
    report = await reconcile_territory(pipe.redis_url, pipe.key_prefix, PARTITIONS, truth,
                                       str(ledger), base_url=worker.base_url)
    redis_bytes = await territory_redis_bytes(pipe.redis_url, pipe.key_prefix)
    parquet = sum(path.stat().st_size for path in ledger.rglob("*.parquet"))
    counted = truth.uses_counted
    report.update({
        "events_sent": load.events, "uses_counted": counted,
        "plain_lost": plain.lost, "plain_double": plain.double,
        "redis_territory_bytes_per_million_uses": round(redis_bytes / counted * 1e6),
        "ledger_parquet_bytes_per_million_uses": round(parquet / counted * 1e6),
        "top_countries": truth.countries.most_common(5)})
    print("territory reconciliation: " + json.dumps(report, default=str))
    assert report["ok"], report["problems"]
    assert report["territory_lost"] == report["territory_double"] == 0
    assert report["ledger_lost"] == report["ledger_double"] == 0
    assert report["ledger_uses"] == counted  # every counted use is in a closed day
    assert report["ledger_vs_redis_days"] >= 2 * PARTITIONS
    assert report["range_answers"] >= 15 * 4 and report["range_closed_days"] >= 2
    assert report["countries"] > 60
