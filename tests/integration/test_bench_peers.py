"""Each peer of ``python -m benchmarks peers`` runs for seconds and reconciles.

The peers (Quix Streams and Faust apps in benchmarks/peers/) read a small backlog with
every kind of fault, on single-event and on batch records, against the real broker
and Redis; what they write to Redis must match the generator's ground truth within
their documented differences (no dedupe, their own lateness rules). The streamer
worker itself is reconciled by test_bench_smoke.py. Needs the bench extra.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

pytest.importorskip("quixstreams", reason="the peers need the bench extra (make venv-bench)")

from benchmarks.__main__ import parse
from benchmarks.common import BenchRun, Stack
from benchmarks.peers_scenario import CONSUMERS, Topic, _measure, _prepare

pytestmark = pytest.mark.integration

SIZES = {"single": 3_000, "batch": 20_000}
PEERS = [name for name, consumer in CONSUMERS.items() if consumer.module is not None]


@pytest.fixture(scope="module")
def opts() -> argparse.Namespace:
    options = parse(["peers", "--processes", "1", "--no-progress", "--peer-timeout", "240",
                     "--batch-events", "200", "--late", "0.01", "--duplicates", "0.02",
                     "--invalid", "0.01", "--catalog", "2000"])
    options.worker_env = {}
    return options


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def topics(kafka_bootstrap: str, redis_url: str, opts: argparse.Namespace,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Topic]]:
    out_dir: Path = tmp_path_factory.mktemp("peers")
    stack = Stack(kafka_bootstrap, redis_url)
    runs = {mode: BenchRun(stack, f"peers-test-{mode}", out_dir, partitions=4)
            for mode in SIZES}
    try:
        settings = runs["single"].settings
        start_ms = int(time.time() * 1000) - settings.allowed_lateness_ms - 900_000
        yield {mode: await _prepare(opts, runs[mode], mode, count, start_ms)
               for mode, count in SIZES.items()}
    finally:
        for run in runs.values():
            await run.cleanup()


@pytest.mark.parametrize("mode", list(SIZES))
@pytest.mark.parametrize("peer", PEERS)
async def test_peer_reads_everything_and_reconciles(
        peer: str, mode: str, topics: dict[str, Topic], opts: argparse.Namespace) -> None:
    topic = topics[mode]
    result = await _measure(opts, peer, topic, 1)
    assert "error" not in result, result
    # Every record read, whatever it held (invalid ones included).
    assert result["records"] == topic.records, result
    if CONSUMERS[peer].rules is None:
        return
    outcome = result["reconcile"]
    assert outcome["ok"], outcome
    # Not vacuous: the peer counted the stream, with its duplicates (no dedupe).
    assert outcome["events_counted"] >= outcome["events_expected_min"] > 0.9 * topic.events
    assert topic.peer_truth.duplicates and topic.peer_truth.late
