"""``streamer load``: send realistic, reproducible traffic to the input topics.

    streamer load --rate 20000 --duration 60            # 20k uses/s for a minute, batches
    streamer load --single --rate 2000 --duration 30    # one SoundUsed per record
    streamer load --speed 0 --duration 86400 --rate 230 # a day of event time, flat out
    streamer load --truth truth.jsonl ...               # also write the expected counters
    streamer load --countries 5 ...                     # uses from the 5 largest markets only

Topics, partitions and the broker come from the worker's STREAMER_* settings; missing
topics are created like the worker does. The progress bar shows events sent of the
total, the rate and the time left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from typing import Any

from streamer.config import Settings
from streamer.loadgen.config import DAY_S, TRACKS_PER_DAY, LoadConfig
from streamer.loadgen.territories import ALL_TERRITORIES

# How far behind the wall clock a generated stream ends when its start is chosen for it.
START_MARGIN_MS = 60_000

# LoadConfig fields set from options, to name the option in an error.
_OPTIONS = {"use_rate": "--rate", "duration_s": "--duration", "track_rate": "--track-rate",
            "catalog": "--catalog", "batch_events": "--batch-events",
            "duplicate_rate": "--duplicates", "late_rate": "--late", "early_rate": "--early",
            "invalid_rate": "--invalid", "ai_share": "--ai-share",
            "create_share": "--create-share", "zipf": "--zipf", "countries": "--countries",
            "allowed_lateness_ms": "the worker's STREAMER_ALLOWED_LATENESS; --early 0 "
                                   "drops the early-delay part"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--rate", type=float, default=1_000.0, help="SoundUsed per simulated second (1000)")
    add("--duration", type=float, default=60.0, help="simulated seconds of traffic (60)")
    add("--track-rate", type=float, default=TRACKS_PER_DAY / DAY_S,
        help="TrackCreated per simulated second (2M a day = 23.1)")
    add("--catalog", type=int, default=20_000, help="tracks that exist before the run (20000)")
    add("--seed", type=int, default=1)
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--batch-events", type=int, default=500,
                       help="SoundUsed per batch record (500)")
    shape.add_argument("--single", action="store_true", help="one SoundUsed per record")
    add("--duplicates", type=float, default=0.005, help="fraction of uses sent twice (0.005)")
    add("--late", type=float, default=0.001, help="fraction of uses that are late (0.001)")
    add("--early", type=float, default=0.02,
        help="fraction of new tracks with uses before their TrackCreated (0.02)")
    add("--invalid", type=float, default=0.001, help="fraction of invalid inputs (0.001)")
    add("--ai-share", type=float, default=0.4, help="share of AI tracks (0.4)")
    add("--create-share", type=float, default=0.05,
        help="share of uses that are 'create' rather than 'play' (0.05)")
    add("--zipf", type=float, default=1.1, help="popularity exponent (1.1)")
    add("--countries", type=int, default=ALL_TERRITORIES,
        help="territories uses come from: the first N of a ranking with a few large "
        "markets (US about 19 %%, the top 5 about 48 %%, the top 25 88 %%) and a long tail "
        f"falling as 1/(rank + 10) (streamer/loadgen/territories.py; {ALL_TERRITORIES} = all)")
    add("--processes", type=int, default=1, help="sending processes (1)")
    add("--speed", type=float, default=1.0,
        help="simulated seconds per wall second; 0 sends as fast as possible (1)")
    add("--start-ms", type=int, help="event time of the first tick (default: now; with "
        "--speed 0 or above 1, early enough that no event is ahead of the wall clock); "
        "fix it for byte-identical reruns")
    add("--truth", help="write the expected counters to this file (JSON lines)")
    add("--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar with total, rate and ETA on stderr (default: when stderr is a "
        "terminal)")


def default_start_ms(total_sim_s: float, speed: float, now_ms: int) -> int | None:
    """Event time of the first tick when ``--start-ms`` is not given.

    Events must never be ahead of the wall clock (the worker rejects those more than its
    future tolerance ahead). At speed 1 or less the stream starts when sending starts
    (None) and never catches up with the clock. Flat out (speed 0) it ends a minute
    before now. Faster than real time, event time gains ``1 - 1/speed`` on the clock,
    so it starts that much of the duration earlier (and a minute more): its last tick
    is then still a minute behind the clock when it is sent.
    """
    total_ms = total_sim_s * 1000
    if speed <= 0:
        return now_ms - int(total_ms) - START_MARGIN_MS
    if speed > 1:
        return now_ms - math.ceil(total_ms * (1 - 1 / speed)) - START_MARGIN_MS
    return None


def config_from_args(args: argparse.Namespace, settings: Settings) -> LoadConfig:
    return LoadConfig(
        seed=args.seed, start_ms=args.start_ms, duration_s=args.duration, use_rate=args.rate,
        track_rate=args.track_rate, catalog=args.catalog, zipf=args.zipf,
        ai_share=args.ai_share, create_share=args.create_share, countries=args.countries,
        duplicate_rate=args.duplicates, late_rate=args.late, early_rate=args.early,
        invalid_rate=args.invalid, batch_events=1 if args.single else args.batch_events,
        allowed_lateness_ms=settings.allowed_lateness_ms, windows=settings.windows,
        territory_windows=settings.territory)


class ProgressBar:
    """Events sent of the run's total, with rate and ETA (tqdm, on stderr)."""

    def __init__(self, total: int, enabled: bool | None = True) -> None:
        from streamer.progress import progress_bar

        self.bar = progress_bar(total=total, unit="ev", desc="sending", enabled=enabled)
        self.done = 0
        self._last = time.monotonic()

    def update(self, totals: dict[str, float]) -> None:
        events = int(totals["events"])
        if self.bar.total is not None and events > self.bar.total:
            self.bar.total = events  # duplicates make a run a little longer than planned
        self.bar.update(events - self.done)
        self.done = events
        now = time.monotonic()
        if now - self._last >= 1.0:
            self.bar.set_postfix(records=f"{int(totals['records']):,}",
                                 tracks=f"{int(totals['tracks']):,}",
                                 MB=f"{totals['bytes'] / 1e6:,.1f}", refresh=False)
            self._last = now

    def close(self) -> None:
        self.bar.close()


def check_writable(path: str, option: str) -> None:
    """Fail before any work if ``path`` cannot be written (its folder must exist)."""
    from streamer.exit_codes import CommandFailed, ExitCode

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        problem = "is a directory"
    elif not os.path.isdir(folder):
        problem = f"is in a folder that does not exist ({folder})"
    elif not os.access(folder, os.W_OK) or (os.path.exists(path)
                                            and not os.access(path, os.W_OK)):
        problem = "is not writable"
    else:
        return
    raise CommandFailed(ExitCode.FILE, f"{option} {path!r} {problem}; "
                        "give a file path in an existing, writable folder")


def write_truth(path: str, expected: dict[tuple[Any, ...], int]) -> None:
    """One JSON array a line: a counter's key (shapes in ``streamer.verify``: the plain
    counters, the territory counters, the ledger's rows per day), then its value."""
    with open(path, "w", encoding="utf-8") as handle:
        for key, value in sorted(expected.items(), key=repr):
            handle.write(json.dumps([*key, value]) + "\n")


def read_truth(path: str) -> dict[tuple[Any, ...], int]:
    expected: dict[tuple[Any, ...], int] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            *key, value = json.loads(line)
            expected[tuple(key)] = value
    return expected


async def run_load(settings: Settings, args: argparse.Namespace) -> int:
    from streamer.cli import prepare_topics
    from streamer.exit_codes import CommandFailed, ExitCode
    from streamer.loadgen.sender import LoadRun, SendPlan
    from streamer.pipeline.topics import ensure_topics

    cfg = config_from_args(args, settings)
    try:
        cfg.validate()
    except ValueError as exc:
        text = str(exc)
        field = text.split(" ", 1)[0]
        hint = f" ({_OPTIONS[field]})" if field in _OPTIONS else ""
        raise CommandFailed(ExitCode.USAGE, f"{text}{hint}") from None
    if not (math.isfinite(args.speed) and args.speed >= 0):
        raise CommandFailed(ExitCode.USAGE,
                            f"--speed must be a finite number, 0 or more, got {args.speed}")
    if args.processes < 1:
        raise CommandFailed(ExitCode.USAGE, "--processes must be at least 1")
    if args.truth:
        check_writable(args.truth, "--truth")
    partitions = await prepare_topics(settings, ensure_topics)
    kafka = settings.kafka.aiokafka_kwargs()
    now = int(time.time() * 1000)
    if cfg.start_ms is None:
        cfg.start_ms = default_start_ms(cfg.total_sim_s, args.speed, now)
    plan = SendPlan(cfg=cfg, kafka=kafka, tracks_topic=settings.tracks_topic,
                    uses_topic=settings.uses_topic, partitions=partitions,
                    processes=args.processes, speed=args.speed,
                    catalog_ms=cfg.start_ms or now, keep_truth=bool(args.truth))
    bar = ProgressBar(cfg.expected_uses, enabled=args.progress)
    run = LoadRun(plan).start()
    try:
        result = await run.wait(bar.update)
    except BaseException as exc:
        run.terminate()
        if not isinstance(exc, RuntimeError):
            raise
        text = str(exc)
        if "KafkaConnectionError" in text or "Unable to bootstrap" in text:
            raise CommandFailed(ExitCode.UNREACHABLE, f"Kafka went away at "
                                f"{settings.kafka.bootstrap} while sending; nothing after "
                                f"{int(run.totals()['events']):,} events was sent") from None
        last = text.strip().splitlines()[-1] if text.strip() else "no reason given"
        raise CommandFailed(ExitCode.SEND_FAILED, f"a sending process failed: {last}") from None
    finally:
        bar.close()
    if args.truth and result.truth is not None:
        write_truth(args.truth, {**result.truth.expected(), **result.truth.expected_territory(),
                                 **result.truth.expected_ledger()})
    summary = result.summary()
    summary["topics"] = {"tracks": settings.tracks_topic, "uses": settings.uses_topic,
                         "partitions": partitions}
    print(json.dumps(summary))
    if result.errors:
        raise CommandFailed(ExitCode.SEND_FAILED, f"Kafka refused {len(result.errors)}+ "
                            f"sends, first: {result.errors[0]}")
    return 0


def main(settings: Settings, args: argparse.Namespace) -> int:
    """``run_load`` with its failure as one line and an exit code (streamer/exit_codes.py)."""
    from streamer.cli import report
    from streamer.exit_codes import CommandFailed, ExitCode

    try:
        return asyncio.run(run_load(settings, args))
    except CommandFailed as exc:
        report(exc)
        return exc.code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
