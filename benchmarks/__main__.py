"""``python -m benchmarks <scenario> [options]`` (``make bench`` runs the suite).

Scenarios: smoke, generator, max, sustained, day, peers, suite (default).
Results: benchmarks/results/<UTC timestamp>-<scenario>/ (result.json, summary.md, PNGs).
Needs the local stack (make up) and the bench extra (make venv-bench).
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError

from benchmarks.common import Stack, log
from benchmarks.leftovers import compact_aof, delete_run_state, find_leftovers
from benchmarks.report import Report, machine_info, new_results_dir


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    from benchmarks.scenarios import SCENARIOS

    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", default="suite", choices=sorted(SCENARIOS))
    p.add_argument("--quick", action="store_true",
                   help="suite: short runs (about 10 minutes in all) instead of the full ones")
    g = p.add_argument_group("load")
    g.add_argument("--rate", type=float, help="usage events/s (sustained: target rate, "
                   "default 20000; max: event-time density of the backlog, default 250000)")
    g.add_argument("--duration", type=float, help="seconds (sustained: default 300)")
    g.add_argument("--events", type=int, help="usage events in a backlog (max: 3M, "
                   "peers batch topic: 1M, generator: 1M)")
    g.add_argument("--events-single", type=int, default=1_000_000,
                   help="peers: usage events on the single-record topic (1000000)")
    g.add_argument("--events-single-small", type=int, default=20_000,
                   help="peers: usage events on the small single-record topic, for the "
                        "consumers not in --large-single-peers (20000; 0: none, all "
                        "read the large one)")
    g.add_argument("--batch-events", type=int, default=500, help="events per batch record")
    g.add_argument("--single", action="store_true", help="single-event records")
    g.add_argument("--catalog", type=int, default=20_000, help="tracks before the run")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--zipf", type=float, default=1.1)
    g.add_argument("--ai-share", type=float, default=0.4)
    g.add_argument("--create-share", type=float, default=0.05)
    g.add_argument("--duplicates", type=float, default=0.005)
    g.add_argument("--late", type=float, default=0.001)
    g.add_argument("--early", type=float, default=0.02)
    g.add_argument("--invalid", type=float, default=0.001)
    g.add_argument("--processes", type=int, default=2, help="load generator processes (2)")
    g.add_argument("--live-generation", dest="pregenerate", action="store_false",
                   help="sustained: generate while sending (default: every record is built "
                        "before the run, so the generator takes little CPU during it)")
    g = p.add_argument_group("worker")
    g.add_argument("--partitions", type=int, default=8)
    g.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra STREAMER_* setting for the worker (repeatable)")
    g.add_argument("--profile", choices=["cprofile", "pyinstrument", "tracemalloc"],
                   help="run the worker under a profiler, or tracemalloc for its memory "
                        "(max, sustained, day)")
    g = p.add_argument_group("scenario options")
    g.add_argument("--ramp", action="store_true", help="max: also a live rate ramp")
    g.add_argument("--ramp-rates", help="max: comma-separated rates (default: 40..110 %% of "
                   "the measured capacity)")
    g.add_argument("--step-seconds", type=float, default=20.0, help="max --ramp: per step")
    g.add_argument("--day-fraction", type=float, default=1.0,
                   help="day: fraction of a day of event time (1.0)")
    g.add_argument("--uses-per-day", type=float, default=20_000_000,
                   help="day: SoundUsed per day (20M)")
    g.add_argument("--replay", choices=["backlog", "live"], default="backlog",
                   help="day: produce first then drain (backlog) or both at once (live)")
    g.add_argument("--peers", default=("streamer,streamer_nodirect,ceiling,quix_windowed,"
                                       "quix_preagg,faust_bare,faust_take,faust_table"),
                   help="peers: consumers to run, in this order each round (comma-separated)")
    g.add_argument("--skip-batch-peers", default="faust_table",
                   help="peers not run on the batch topic (faust_table: ~4k updates/s)")
    g.add_argument("--large-single-peers", default="streamer,ceiling,quix_preagg",
                   help="peers: consumers that read the large single-record topic")
    g.add_argument("--rounds", type=int, default=3,
                   help="peers: rounds, each running every consumer once (3)")
    g.add_argument("--peer-timeout", type=float, default=900.0)
    g.add_argument("--probe-interval", type=float, default=0.2, help="sustained: s between probes")
    g.add_argument("--timeout", type=float, default=1800.0, help="drain timeout, s")
    g = p.add_argument_group("output")
    g.add_argument("--results-dir", type=Path, help="parent folder of the results")
    g.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    g.add_argument("--leftovers", choices=["refuse", "clean", "keep"], default="refuse",
                   help="topics and Redis keys of earlier runs (killed, or --keep) skew a "
                        "measurement: refuse to start (default), delete them first, or run "
                        "anyway and record them in the report")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    env = {}
    for item in args.worker_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("STREAMER_"):
            p.error(f"--worker-env wants STREAMER_NAME=value, got {item!r}")
        env[key] = value
    args.worker_env = env
    return args


async def amain(argv: list[str] | None = None) -> int:
    from benchmarks.scenarios import SCENARIOS
    from streamer.loadgen.sender import KafkaUnreachable, check_kafka

    args = parse(argv)
    stack = Stack.from_env()
    try:
        await check_kafka({"bootstrap_servers": stack.bootstrap})
    except KafkaUnreachable as exc:
        print(f"benchmarks: {exc}. Start the local stack with `make up`.", file=sys.stderr)
        return 1
    try:
        leftovers = await find_leftovers(stack)
    except RedisConnectionError as exc:
        print(f"benchmarks: Redis unreachable at {stack.redis_url} ({exc}). Start the local "
              f"stack with `make up`.", file=sys.stderr)
        return 1
    if leftovers and args.leftovers == "refuse":
        print(f"benchmarks: Kafka and Redis hold other benchmark runs' topics and keys "
              f"(killed, kept with --keep, or still running): {leftovers.describe()}. "
              f"They slow Redis and skew the measurement; delete them with --leftovers "
              f"clean, or run anyway with --leftovers keep.",
              file=sys.stderr)
        return 2
    if leftovers and args.leftovers == "clean":
        for run_id in leftovers.runs:
            log(f"deleting what {run_id} left behind")
            await delete_run_state(stack, run_id)
        await compact_aof(stack)
    out = new_results_dir(args.scenario, args.results_dir)
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))
    report = Report(out, args.scenario, command)
    report.set("machine", machine_info(stack.redis_url))
    report.set("leftovers_at_start", {"found": leftovers.as_dict(), "action": args.leftovers})
    report.set("options", {k: (str(v) if isinstance(v, Path) else v)
                           for k, v in vars(args).items()})
    log(f"results go to {out}")
    ok = True
    try:
        result = await SCENARIOS[args.scenario](args, report)
        ok = _all_reconciled(result)
    except BaseException as exc:
        report.set("error", repr(exc))
        ok = False
        raise
    finally:
        report.set("reconciled", ok)
        report.write()
        log(f"wrote {out}/summary.md")
    print((out / "summary.md").read_text())
    return 0 if ok else 3


def _all_reconciled(obj: object) -> bool:
    """False if any reconciliation in the result found lost/double/mismatched counters."""
    if isinstance(obj, dict):
        if "mismatched_counters" in obj and "lost" in obj and (
                obj["lost"] or obj["double"] or obj["mismatched_counters"]):
            return False
        return all(_all_reconciled(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_all_reconciled(v) for v in obj)
    return True


async def _cancellable() -> int:
    """Run amain so SIGTERM/SIGINT cancel it and every cleanup (worker, topics) still runs."""
    import signal

    task = asyncio.ensure_future(amain())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        log("interrupted; cleaned up")
        return 130


def main() -> int:
    return asyncio.run(_cancellable())


if __name__ == "__main__":
    sys.exit(main())
