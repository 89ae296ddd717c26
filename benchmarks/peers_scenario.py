"""``python -m benchmarks peers``: streamer beside its peers, timed and reconciled alike.

Method (docs/benchmarks/peers.md says it in full):

* The same generated events go to two topics, as single-event records and as batch
  records; each ends, per partition, with a valid end-of-run use dated past the
  allowed lateness (it closes the windowed peers' last windows).
* Every consumer runs alone on a topic, from its earliest offset, and is timed the same
  way: end to end, from its first record consumed to its last counts visible in Redis;
  and its steady rate while it consumed 10 % to 90 % of the events (from its progress).
* Rounds interleave the consumers (A, B, C, A, B, C, ...); before each run the VM's
  ``python_speed`` is taken; after it, its Redis keys and topics are deleted.
* Every consumer that computes something is reconciled against the generator's truth:
  streamer on every counter family, the peers on their one-minute counts, allowing only
  for their documented differences (``benchmarks.peer_truth``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import BenchRun, log
from benchmarks.peer_truth import PeerRules, PeerTruth, read_peer_counts, reconcile_peer
from benchmarks.report import Report, python_speed
from streamer.loadgen.catalog import partition_of, track_id_of
from streamer.loadgen.config import LoadConfig
from streamer.verify.truth import PartitionedTruth

RATE = 50_000.0   # event-time density of the backlogs (events per simulated second)
# Backlog sizes (defaults of --events, --events-single, --events-single-small). Each
# timed run must be long beside what ends it (streamer's last flush and offset wait,
# about 1 s; a Quix checkpoint, up to 5 s) and give the 0.5 s progress samples a long
# 10-90 % stretch; the decode-only ceiling reads at 300k-700k events/s, so a smaller
# backlog times it over about a second. Issue 22 asks for at least 1M records on the
# single-record topic: the consumers that reach it in reasonable time (streamer, the
# ceiling, the pre-aggregating Quix peer) read 1M; the Faust-bound consumers
# (400-2,000 records/s here) read the small topic. Everyone on a topic reads all of it.
BATCH_EVENTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Consumer:
    module: str | None                   # a peer's module; None: the streamer worker
    rules: PeerRules | None = None       # None: nothing to reconcile (the ceiling)
    env: dict[str, str] = field(default_factory=dict)
    # What it computes: windows, counter families, dedupe, lateness, attribution,
    # exactly-once, output.
    work: tuple[str, str, str, str, str, str, str] = ("", "", "", "", "", "", "")


WORK_OF_STREAMER = ("1m, 1h, 1d (+ territory 1d)",
                    "track x use, trending, holder x right (uses, weighted), "
                    "genre x origin", "yes (5 min)", "yes (1 h, by watermark)", "yes",
                    "yes", "Redis, flush 0.5-1 s")
CONSUMERS: dict[str, Consumer] = {
    "streamer": Consumer(None, work=WORK_OF_STREAMER),
    "streamer_nodirect": Consumer(None, env={"STREAMER_DIRECT_DELIVERY": "0"},
                                  work=WORK_OF_STREAMER),
    # Not in the default round: what the territory counters (on by default) cost.
    "streamer_noterritory": Consumer(None, env={"STREAMER_TERRITORY_WINDOWS": ""}, work=(
        "1m, 1h, 1d, no territory", *WORK_OF_STREAMER[1:])),
    "ceiling": Consumer("benchmarks.peers.aiokafka_ceiling", work=(
        "-", "count per track in memory (decode only)", "no", "no", "no", "no", "none")),
    "quix_windowed": Consumer("benchmarks.peers.quix_windowed",
                              PeerRules(per_use=False, lateness="window"), work=(
        "1m (final)", "track", "no", "grace 1 h (Quix's rule)", "no", "no (at-least-once)",
        "Redis per checkpoint (5 s)")),
    "quix_preagg": Consumer("benchmarks.peers.quix_preagg", PeerRules(), work=(
        "1m", "track x use", "no", "no", "no", "no (at-least-once)",
        "Redis per checkpoint (5 s)")),
    "faust_bare": Consumer("benchmarks.peers.faust_bare", PeerRules(), work=(
        "1m", "track x use", "no", "no", "no", "no", "Redis every 1 s")),
    "faust_take": Consumer("benchmarks.peers.faust_take", PeerRules(), work=(
        "1m", "track x use (Table, changelog)", "no", "no", "no", "no",
        "Table; Redis at the end")),
    "faust_table": Consumer("benchmarks.peers.faust_table", PeerRules(per_use=False), work=(
        "1m (windowed Table, changelog)", "track", "no", "no", "no", "no",
        "Table; Redis at the end")),
}
DEFAULT_ORDER = ",".join(CONSUMERS)


@dataclass(slots=True)
class Topic:
    """One input topic of the comparison and what it holds."""

    mode: str                      # "single", "single_small" or "batch"
    run: BenchRun
    truth: PartitionedTruth
    peer_truth: PeerTruth
    events: int
    records: int
    track_records: int
    end_offsets: list[int]


async def scenario_peers(opts: argparse.Namespace, report: Report) -> dict[str, Any]:
    from benchmarks.scenarios import new_run

    wanted = [c.strip() for c in opts.peers.split(",") if c.strip()]
    unknown = set(wanted) - CONSUMERS.keys()
    if unknown:
        raise SystemExit(f"peers: unknown consumers {sorted(unknown)}; "
                         f"known: {', '.join(CONSUMERS)}")
    skip_batch = {c.strip() for c in opts.skip_batch_peers.split(",") if c.strip()}
    large = {c.strip() for c in opts.large_single_peers.split(",") if c.strip()}
    sizes = {"single": opts.events_single, "single_small": opts.events_single_small,
             "batch": opts.events or BATCH_EVENTS}
    if not sizes["single_small"]:
        del sizes["single_small"]
        large = set(CONSUMERS)

    def runs_on(name: str, mode: str) -> bool:
        """Consumers bound by Faust's per-record cost read the small single topic (the
        large one would take them many minutes a run); streamer reads both."""
        if mode == "batch":
            return name not in skip_batch
        if mode == "single":
            return name in large
        return name not in large or name == "streamer"
    runs = {mode: new_run(opts, f"peers-{mode}", report.out_dir) for mode in sizes}
    results: list[dict[str, Any]] = []
    topics: dict[str, Topic] = {}
    try:
        span_ms = int(max(sizes.values()) / RATE * 1000)
        lateness = runs["single"].settings.allowed_lateness_ms
        # The backlog ends early enough that its end-of-run markers are in the past.
        start_ms = int(time.time() * 1000) - span_ms - lateness - 600_000
        for mode, count in sizes.items():
            topics[mode] = await _prepare(opts, runs[mode], mode, count, start_ms)
        for round_number in range(1, opts.rounds + 1):
            for mode, topic in topics.items():
                for name in wanted:
                    if not runs_on(name, mode):
                        continue
                    speed = python_speed()
                    log(f"peers: round {round_number}, {name} on {mode} records "
                        f"(python_speed {speed})")
                    outcome = await _measure(opts, name, topic, round_number)
                    outcome.update({"consumer": name, "mode": mode, "round": round_number,
                                    "python_speed": speed})
                    log(f"peers: {name} {mode}: end to end {outcome.get('events_per_s')} "
                        f"events/s, steady {outcome.get('steady_events_per_s')}, "
                        f"reconciled {(outcome.get('reconcile') or {}).get('ok')}")
                    results.append(outcome)
    finally:
        for run in runs.values():
            await run.stop_worker()
            await run.cleanup()
    summary = summarise(results, wanted)
    out = {"runs": results, "summary": summary,
           "sizes": {mode: {"events": t.events, "records": t.records,
                            "track_records": t.track_records} for mode, t in topics.items()},
           "rounds": opts.rounds}
    report.set("peers", out)
    write_report(report, out, opts)
    return out


async def _prepare(opts: argparse.Namespace, run: BenchRun, mode: str, count: int,
                   start_ms: int) -> Topic:
    from benchmarks.scenarios import base_config, produce_backlog

    await run.create_topics()
    batch = opts.batch_events if mode == "batch" else 1
    settings = run.settings
    cfg = base_config(opts, settings, use_rate=RATE, duration_s=count / RATE,
                      batch_events=batch, start_ms=start_ms)
    load = await produce_backlog(run, cfg, opts.processes, opts.progress)
    assert load.truth is not None
    markers, marker_at = await _append_end_markers(run, cfg, load.truth, batch > 1)
    end_offsets = await _end_offsets(run)
    log(f"peers: {mode} topic ready: {load.events:,} events in {load.records:,} records "
        f"+ {markers} end-of-run markers")
    return Topic(mode, run, load.truth, PeerTruth.of(load.truth, marker_at),
                 load.events + markers,
                 load.records + markers, load.tracks_records, end_offsets)


async def _append_end_markers(run: BenchRun, cfg: LoadConfig, truth: PartitionedTruth,
                              batch: bool) -> tuple[int, int]:
    """One valid use per partition, dated the allowed lateness plus two minutes after the
    stream: the last record of each partition, counted by all (it is in the truth)."""
    import orjson
    from aiokafka import AIOKafkaProducer

    assert cfg.start_ms is not None
    at = cfg.start_ms + int(cfg.total_sim_s * 1000) + cfg.allowed_lateness_ms + 120_000
    tracks: dict[int, str] = {}
    index = 0
    while len(tracks) < run.partitions and index < cfg.catalog:
        track = track_id_of(index)
        tracks.setdefault(partition_of(track, run.partitions), track)
        index += 1
    producer = AIOKafkaProducer(**run.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for partition, track in sorted(tracks.items()):
            event = {"event_id": f"end-{cfg.seed}-{partition}", "track_id": track,
                     "occurred_at": at, "user_id": "u0", "use": "play", "country": "US"}
            value = orjson.dumps([event] if batch else event)
            await producer.send_and_wait(run.uses_topic, value, key=track.encode(),
                                         partition=partition)
            truth.use(event, partition)
    finally:
        await producer.stop()
    return len(tracks), at


async def _end_offsets(run: BenchRun) -> list[int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=run.stack.bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(run.uses_topic, p) for p in range(run.partitions)]
        ends = await consumer.end_offsets(parts)
        return [ends[tp] for tp in parts]
    finally:
        await consumer.stop()


async def _measure(opts: argparse.Namespace, name: str, topic: Topic,
                   round_number: int) -> dict[str, Any]:
    consumer = CONSUMERS[name]
    run = topic.run
    attempt = f"{run.id}-{name.replace('_', '')}{round_number}"
    try:
        if consumer.module is None:
            return await _measure_streamer(opts, consumer, topic, attempt)
        return await _measure_peer(opts, consumer, topic, attempt)
    finally:
        await run.stop_worker()
        await delete_attempt(run, attempt)


async def _measure_streamer(opts: argparse.Namespace, consumer: Consumer, topic: Topic,
                            attempt: str) -> dict[str, Any]:
    from benchmarks.scenarios import drain

    run = topic.run
    run.prefix = run.app_id = attempt
    run.extra_env = {**opts.worker_env, **consumer.env}
    try:
        measured, _ = await drain(run, topic.events, timeout_s=opts.timeout)
        measured["reconcile"] = await run.reconcile(topic.truth)
    finally:
        await run.stop_worker()
        run.prefix = run.app_id = run.id
        run.extra_env = dict(opts.worker_env)
    seconds = measured["drain_s"]
    return {"events": topic.events, "records": topic.records + topic.track_records,
            "seconds": seconds, "startup_s": measured["startup_s"],
            "events_per_s": measured["events_per_s"],
            "steady_events_per_s": measured["steady_events_per_s"],
            "records_per_s": round((topic.records + topic.track_records) / seconds, 1),
            "cpu_pct_mean": measured["resources"].get("worker_cpu_pct_mean"),
            "rss_mb_max": measured["resources"].get("worker_rss_mb_max"),
            "reconcile": measured["reconcile"]}


async def _measure_peer(opts: argparse.Namespace, consumer: Consumer, topic: Topic,
                        attempt: str) -> dict[str, Any]:
    from benchmarks.scenarios import HERE, _ProcessWatch, _steady_rate

    run = topic.run
    assert consumer.module is not None
    args = [sys.executable, "-m", consumer.module, "--bootstrap", run.stack.bootstrap,
            "--topic", run.uses_topic, "--group", attempt,
            "--partitions", str(run.partitions),
            "--end-offsets", ",".join(str(o) for o in topic.end_offsets),
            "--redis-url", run.stack.redis_url, "--prefix", attempt,
            "--lateness-ms", str(run.settings.allowed_lateness_ms)]
    if topic.mode == "batch":
        args.append("--batch")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent),
                                                      env.get("PYTHONPATH", "")]))
    log_path = run.out_dir / f"{attempt}.log"
    progress: list[dict[str, Any]] = []
    final: dict[str, Any] | None = None
    with open(log_path, "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=stderr, env=env)
        watch = _ProcessWatch(proc.pid)
        watch_task = asyncio.ensure_future(watch.run())
        try:
            async with asyncio.timeout(opts.peer_timeout):
                assert proc.stdout is not None
                async for raw in proc.stdout:
                    with contextlib.suppress(ValueError):
                        line = json.loads(raw)
                        if line.get("done"):
                            final = line
                            break
                        progress.append(line)
        except TimeoutError:
            pass
        finally:
            watch_task.cancel()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            returncode = await proc.wait()
    if final is None:
        tail = log_path.read_text(errors="replace").splitlines()[-5:]
        return {"error": f"did not finish in {opts.peer_timeout} s (exit {returncode})",
                "records": progress[-1]["records"] if progress else 0, "log": log_path.name,
                "log_tail": tail}
    seconds = final["last"] - final["first"]
    result: dict[str, Any] = {
        "events": final["events"], "records": final["records"], "seconds": round(seconds, 3),
        "events_per_s": round(final["events"] / seconds, 1),
        "steady_events_per_s": _steady_rate(progress, "events"),
        "records_per_s": round(final["records"] / seconds, 1),
        "cpu_pct_mean": watch.cpu_mean(), "rss_mb_max": watch.rss_max(),
        "log": log_path.name}
    if consumer.rules is not None:
        actual = await read_peer_counts(run.stack.redis_url, attempt)
        result["reconcile"] = reconcile_peer(topic.peer_truth, consumer.rules, actual)
    return result


async def delete_attempt(run: BenchRun, attempt: str) -> None:
    """One run's Redis keys and topics (consumer offsets, changelogs), so the next run
    starts on the same Redis and broker as the first."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streamer.verify.redis_counters import delete_prefixed_keys, open_redis

    client = open_redis(run.stack.redis_url)
    try:
        await delete_prefixed_keys(client, attempt)
    finally:
        await client.aclose()
    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=run.stack.bootstrap)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if attempt in t]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "n": len(values)}


def summarise(results: list[dict[str, Any]], order: list[str]) -> dict[str, Any]:
    """Per consumer and topic: median and min-max of each rate; ratios of medians."""
    rows: dict[str, dict[str, Any]] = {}
    for mode in ("single", "single_small", "batch"):
        for name in order:
            mine = [r for r in results if r["consumer"] == name and r["mode"] == mode]
            if not mine:
                continue
            done = [r for r in mine if "events_per_s" in r]
            rows[f"{name}/{mode}"] = {
                "consumer": name, "mode": mode, "runs": len(mine), "failed": len(mine) - len(done),
                "end_to_end": _stats([r["events_per_s"] for r in done]),
                "steady": _stats([r["steady_events_per_s"] for r in done
                                  if r.get("steady_events_per_s")]),
                "records_per_s": _stats([r["records_per_s"] for r in done]),
                "reconciled": sum(1 for r in done if (r.get("reconcile") or {}).get("ok")),
                "reconcilable": sum(1 for r in done if r.get("reconcile") is not None),
                "python_speed": _stats([r["python_speed"] for r in mine]),
                "late_counted": [(r.get("reconcile") or {}).get("late_counted") for r in done],
            }
    for row in rows.values():
        base = rows.get(f"streamer/{row['mode']}")
        # Decoding costs per record kind, not per topic size: the small single-record
        # topic is set against the ceiling on the large one.
        ceiling = rows.get(f"ceiling/{'batch' if row['mode'] == 'batch' else 'single'}")
        for key in ("end_to_end", "steady"):
            mine, theirs = row[key]["median"], base[key]["median"] if base else None
            row[f"streamer_over_this_{key}"] = (round(theirs / mine, 2)
                                                if mine and theirs else None)
            top = ceiling[key]["median"] if ceiling else None
            row[f"this_over_ceiling_{key}"] = round(mine / top, 3) if mine and top else None
    return rows


def write_report(report: Report, out: dict[str, Any], opts: argparse.Namespace) -> None:
    summary = out["summary"]
    sizes = out["sizes"]
    report.line("## Peers on the same events")
    report.line(f"Events from the same generator settings (seed {opts.seed}), per topic: "
                + ", ".join(f"{mode} {size['events']:,} events in {size['records']:,} "
                            "records" for mode, size in sizes.items())
                + f" (batch records of {opts.batch_events}). {out['rounds']} rounds, "
                "consumers interleaved; "
                "end to end = first record consumed to last counts visible in Redis; "
                "steady = while 10 % to 90 % of the events were consumed. Medians, "
                "min-max in brackets; ratios are ratios of medians of this run; the "
                "ceiling ratio is against the ceiling on the same record kind.")
    report.line("")
    report.table(
        ["consumer", "records", "end to end events/s", "steady events/s", "records/s",
         "streamer / this (end to end)", "streamer / this (steady)",
         "this / decode-only ceiling (end to end)", "reconciled", "python_speed"],
        [[row["consumer"], row["mode"], _span(row["end_to_end"]), _span(row["steady"]),
          _span(row["records_per_s"]), row["streamer_over_this_end_to_end"],
          row["streamer_over_this_steady"], row["this_over_ceiling_end_to_end"],
          (f"{row['reconciled']}/{row['reconcilable']}" if row["reconcilable"] else "-")
          + (f", {row['failed']} failed" if row["failed"] else ""),
          _span(row["python_speed"], ".1f")] for row in summary.values()])
    report.line("What each consumer computes:")
    report.line("")
    report.table(["consumer", "windows", "counter families", "dedupe", "lateness",
                  "attribution", "exactly-once", "output"],
                 [[name, *CONSUMERS[name].work] for name in dict.fromkeys(
                     row["consumer"] for row in summary.values())])


def _span(stats: dict[str, Any], fmt: str = ",.0f") -> str:
    if not stats.get("n"):
        return "-"
    return (f"{stats['median']:{fmt}} ({stats['min']:{fmt}}-{stats['max']:{fmt}})")
