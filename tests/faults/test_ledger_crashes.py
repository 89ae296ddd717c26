"""Scenario 12: workers SIGKILLed while they write the ledger, against an undisturbed run.

The workload's event time crosses midnight UTC three days ago, so once a worker has
caught up it seals both days (and the idle day after) and closes them into the ledger:
six Delta commits per (day, partition). The same records are counted twice, from the
same topics:

1. **undisturbed**: one worker, its own key prefix, consumer group and ledger folder,
   left alone until every partition closed the days;
2. **disturbed**: two workers sharing another prefix, group and ledger; whenever the
   ledger grows (a new Parquet file: the kill lands before or just after its commit; a
   new commit: between a close's table commits; or a random moment after the ledger
   first grew), both are SIGKILLed at once and restarted (each restart a rebalance).

Then: the disturbed ledger's tables hold the same rows as the undisturbed one's (every
table, sorted; row counts and totals with them) and exactly one commit per (table, day,
partition); the ledger's invariants hold and its rows equal the ground truth per
partition (``streamer.verify.territory``); the counters and the DLQ are exact as in
every scenario; and ``streamer ledger close`` run again commits nothing and changes no
file. The kills that cut a close between its commits, or left Parquet files no commit
references, are counted: at least two must have. (Both runs write the one DLQ topic,
so every rejection shows as redelivered once.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fault_harness import Scenario, Sender, delete_keys, log
from fault_workload import WorkloadBuilder, simple_bad

from streamer.verify.ledger_files import (
    closed,
    interrupted,
    ledger_snapshot,
    uncommitted_files,
)
from streamer.verify.territory import reconcile_territory
from streamer.verify.worker_process import WorkerProcess

PARTITIONS = 4
EVENTS = 40_000
DAY_MS = 86_400_000
KILLS = 6
SEED = 1212


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms // 1000, UTC).date()


def ledger_files(root: Path) -> set[str]:
    """Every Parquet file and commit under a ledger folder."""
    found = set()
    for folder, _, files in os.walk(root):
        found.update(os.path.join(folder, name) for name in files
                     if name.endswith(".parquet") or (name.endswith(".json")
                                                      and folder.endswith("_delta_log")))
    return found


def file_stats(root: Path) -> dict[str, tuple[int, int]]:
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in root.rglob("*") if path.is_file()}


async def wait_for_growth(root: Path, kind: str, timeout: float) -> str | None:
    """Poll (every ~2 ms) until a new file of ``kind`` ('.parquet' or '.json') appears."""
    before = ledger_files(root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [path for path in ledger_files(root) - before if path.endswith(kind)]
        if new:
            return new[0]
        await asyncio.sleep(0.002)
    return None


def kill_all(workers: list[WorkerProcess]) -> None:
    """SIGKILL every worker first, reap them after (no worker outlives another's kill)."""
    for worker in workers:
        if worker.process is not None and worker.alive:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGKILL)
    for worker in workers:
        worker.kill()


async def wait_closed(ledger: Path, pairs: set[tuple[date, int]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        have = await asyncio.to_thread(closed, str(ledger))
        if pairs <= have.keys() and not await asyncio.to_thread(interrupted, str(ledger)):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not closed within {timeout:.0f}s: "
                         f"{sorted(pairs - (await asyncio.to_thread(closed, str(ledger))).keys())}")


@pytest.mark.slow
async def test_sigkill_while_writing_the_ledger_equals_an_undisturbed_run(
        kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    scenario = Scenario(12, "SIGKILL workers while they write the ledger", kafka_bootstrap,
                        redis_url, PARTITIONS, tmp_path)
    await scenario.setup()
    names = scenario.names
    reference_prefix = f"{names.prefix}-ref"
    sender = None
    try:
        midnight = int(time.time() * 1000) // DAY_MS * DAY_MS - 2 * DAY_MS
        span = 60 * 60_000
        # t0 = now_ms - span - 60 s: half an hour before that midnight.
        workload = WorkloadBuilder(SEED, PARTITIONS, EVENTS, tag=names.tag,
                                   now_ms=midnight - 30 * 60_000 + span + 60_000,
                                   span_ms=span).build(default_bad=simple_bad)
        days = {_day(midnight - DAY_MS), _day(midnight)}
        sender = Sender(kafka_bootstrap, names, workload)
        sender.start()
        await sender.wait(300)

        # 1. Undisturbed.
        reference_ledger = tmp_path / "ledger-undisturbed"
        reference = scenario.worker(
            "undisturbed", STREAMER_KEY_PREFIX=reference_prefix,
            STREAMER_APP_ID=f"{names.app_id}-ref", STREAMER_LEDGER_URL=str(reference_ledger))
        reference.start()
        await reference.wait_healthy(90)
        pairs = {(day, p) for day in days for p in range(PARTITIONS)}
        started = time.monotonic()
        await wait_closed(reference_ledger, pairs, 240)
        await reference.aterminate()
        log(f"scenario 12: undisturbed run closed {len(pairs)} (day, partition) in "
            f"{time.monotonic() - started:.0f}s")
        all_pairs = set(closed(str(reference_ledger)))

        # 2. Disturbed: two workers, both SIGKILLed whenever the ledger grows.
        ledger = tmp_path / "ledger"
        workers = [scenario.worker(name, STREAMER_LEDGER_URL=str(ledger))
                   for name in ("a", "b")]
        cut_closes = stray_files = 0
        modes = ["parquet", "commit", "random"] * KILLS
        for mode in modes[:KILLS]:
            for worker in workers:
                worker.start()
            kind = ".json" if mode == "commit" else ".parquet" if mode == "parquet" else ""
            grown = await wait_for_growth(ledger, kind, 120)
            if grown is None:
                break
            if mode == "random":
                await asyncio.sleep(rng.uniform(0.0, 0.4))
            kill_all(workers)
            cut = interrupted(str(ledger))
            strays = uncommitted_files(str(ledger))
            cut_closes += bool(cut)
            stray_files += bool(strays)
            scenario.fault(f"SIGKILL both workers on ledger growth ({mode}: "
                           f"{os.path.relpath(grown, ledger)}); closes cut between commits "
                           f"{len(cut)}, uncommitted Parquet files {len(strays)}")
        for worker in workers:
            worker.start()
        await workers[0].wait_healthy(90)
        await wait_closed(ledger, all_pairs, 240)
        outcome = await scenario.verify(workload)
        scenario.assert_exact(outcome)

        through = max(days)
        mine = ledger_snapshot(str(ledger), through=through)
        theirs = ledger_snapshot(str(reference_ledger), through=through)
        differences = mine.differences(theirs)
        rows = mine.totals()
        scenario.notes.update({"ledger_rows": rows, "closes_cut": cut_closes,
                               "kills_with_uncommitted_files": stray_files})
        log(f"scenario 12: ledger rows and totals per table {rows}; differences from the "
            f"undisturbed run: {differences or 'none'}")
        assert not differences, differences
        assert rows == theirs.totals()
        assert set(mine.commits.values()) == {1}
        assert len(mine.commits) == 6 * len(pairs)

        report = await reconcile_territory(redis_url, names.prefix, PARTITIONS,
                                           workload.partitioned, str(ledger))
        log(f"scenario 12: territory reconciliation {report}")
        assert report["ok"], report["problems"]
        assert report["ledger_uses"] == workload.stats.uses_distinct

        # Closing again, on demand, commits nothing and changes no file.
        kill_all(workers)
        before = file_stats(ledger)
        for day_args in ([], ["--day", min(days).isoformat()]):
            again = subprocess.run(
                [sys.executable, "-m", "streamer.cli", "ledger", "close", *day_args],
                env={**workers[0].env}, capture_output=True, text=True, timeout=300,
                check=False)
            assert again.returncode == 0, again.stderr
            assert again.stdout.splitlines() == [f"p{p}: closed nothing new"
                                                 for p in range(PARTITIONS)], again.stdout
            assert file_stats(ledger) == before
        assert cut_closes + stray_files >= 2, scenario.faults
    finally:
        if sender is not None:
            await sender.close()
        await scenario.cleanup()
        await delete_keys(redis_url, reference_prefix)
