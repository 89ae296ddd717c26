"""The benchmark harness reconciles territory counters too, and reports each family's
lost and double uses where its ``reconciled`` verdict looks.

A real worker counts a small generated load; ``BenchRun.reconcile`` finds it exact, plain
and territory. Then one territory counter of ``tt`` gets a use too many and one of ``tg``
a use too few, in Redis, behind the worker's back: the plain counters still match, the
territory families name the double and the lost use, and the verdict is "not reconciled".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.generated import send_generated
from support.pipeline import Pipeline, now_ms

from benchmarks.__main__ import _all_reconciled
from benchmarks.common import BenchRun, Stack, territory_cell
from streamer.config import load_settings
from streamer.state.connection import connect as connect_redis

PARTITIONS = 2


async def first_key_and_field(redis: Any, pattern: str) -> tuple[str, str]:
    async for key in redis.scan_iter(match=pattern, count=1000):
        fields = await redis.hkeys(key)
        if fields:
            return key, fields[0]
    raise AssertionError(f"no counter matches {pattern}")


async def test_bench_reconcile_reports_territory_lost_and_double_per_family(
        make_pipeline: Any, tmp_path: Path) -> None:
    pipe: Pipeline = await make_pipeline(partitions=PARTITIONS)
    assert load_settings(pipe.env()).territory  # on by default
    _, truth = await send_generated(pipe, PARTITIONS, seed=7, start_ms=now_ms() - 30 * 60_000,
                                    duration_s=600.0, use_rate=3.0, catalog=200,
                                    batch_events=50)
    await pipe.start_worker()
    await pipe.drained(timeout=120)

    run = BenchRun(Stack(pipe.kafka_bootstrap, pipe.redis_url), "territory", tmp_path,
                   partitions=PARTITIONS)
    run.prefix = pipe.key_prefix
    exact = await run.reconcile(truth)
    assert exact["ok"] and _all_reconciled(exact), exact
    territory = exact["territory"]
    assert territory["counters"] > 0 and territory["countries"] > 1  # not vacuous
    assert set(territory["families"]) == {"ttrack", "tholder", "tgenre"}
    assert territory_cell(exact) == "tt 0/0, th 0/0, tg 0/0"

    redis = connect_redis(pipe.redis_url)
    try:
        track_key, track_field = await first_key_and_field(
            redis, "{" + pipe.key_prefix + ":*}:tt:*")
        await redis.hincrby(track_key, track_field, 1)
        genre_key, genre_field = await first_key_and_field(
            redis, "{" + pipe.key_prefix + ":*}:tg:*")
        await redis.hincrby(genre_key, genre_field, -1)
    finally:
        await redis.aclose()

    tampered = await run.reconcile(truth)
    assert (tampered["lost"], tampered["double"], tampered["mismatched_counters"]) == (0, 0, 0)
    families = tampered["territory"]["families"]
    assert families["ttrack"] == {"lost": 0, "double": 1, "mismatched_counters": 1}
    assert families["tgenre"] == {"lost": 1, "double": 0, "mismatched_counters": 1}
    assert families["tholder"] == {"lost": 0, "double": 0, "mismatched_counters": 0}
    assert tampered["ok"] is False and tampered["territory"]["ok"] is False
    assert not _all_reconciled(tampered)
    assert territory_cell(tampered) == "tt 0/1, th 0/0, tg 1/0"
