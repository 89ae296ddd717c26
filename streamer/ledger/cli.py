"""``streamer ledger status|verify|close``.

``register(subparsers)`` adds the ``ledger`` command to streamer/cli.py's parser; the
parsed arguments carry ``ledger_run``, which returns the exit code:

* 0 (``ExitCode.OK``): done (status printed; verify found no problem; close closed or had
  nothing to do)
* 9 (``ExitCode.REFUSED``): verify found problems, or close was refused (a gap, a day that
  cannot close yet)
* 2 (``ExitCode.USAGE``): bad arguments or configuration (argparse's code too)
* 10 (``ExitCode.UNSUPPORTED``): ``close`` without a day source (a build that does not
  wire the pipeline's Redis reader to this command; streamer/cli.py does)

The codes are streamer/exit_codes.py's, listed in ``streamer --help``.

Settings: ``STREAMER_LEDGER_URL``, ``STREAMER_LEDGER_STORAGE_OPTIONS`` and
``STREAMER_PARTITIONS`` (docs/CONFIGURATION.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

import orjson

from streamer.config import ConfigError, Settings, load_settings
from streamer.exit_codes import ExitCode
from streamer.ledger import audit
from streamer.ledger.closing import CloseRun, DaySource, close_days
from streamer.ledger.writer import LedgerLocation, LedgerOrderError, LedgerWriter

SourceFactory = Callable[[argparse.Namespace], DaySource]
RedisDays = Callable[[date], Mapping[int, audit.RedisDay]]
AfterClose = Callable[[int, CloseRun], None]


def location_of(settings: Settings) -> LedgerLocation:
    return LedgerLocation(settings.ledger_url, settings.ledger_storage_options)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a UTC day YYYY-MM-DD, got {text!r}") from None


def register(subparsers: Any, source_factory: SourceFactory | None = None,
             redis_days: RedisDays | None = None,
             count_settings: Callable[[], Mapping[str, object]] | None = None,
             after_close: AfterClose | None = None) -> None:
    """Add ``ledger`` to ``streamer``'s subcommands. ``source_factory`` builds the
    pipeline's ``DaySource`` for ``close``; ``redis_days`` gives a day's Redis counters
    per partition for ``verify``; ``count_settings`` the settings recorded in commits;
    ``after_close`` runs after each partition's close (the worker's grace TTL)."""
    ledger = subparsers.add_parser("ledger", help="the Delta Lake ledger of closed days "
                                   "(docs/LEDGER.md)")
    commands = ledger.add_subparsers(dest="ledger_command", required=True)
    status = commands.add_parser("status", help="per day: complete, partial or open")
    status.add_argument("--from", dest="first", type=_day)
    status.add_argument("--to", dest="last", type=_day,
                        help="last day to show (default: yesterday, UTC)")
    status.add_argument("--json", action="store_true")
    verify = commands.add_parser("verify", help="check a closed day's rows against its "
                                 "commits, the counting rules and Redis")
    verify.add_argument("--day", type=_day, required=True)
    verify.add_argument("--json", action="store_true")
    close = commands.add_parser("close", help="close every closable day now (in order)")
    close.add_argument("--day", type=_day, help="close up to this day only")
    for command in (status, verify, close):
        command.add_argument("--partitions", type=int,
                             help="input partitions (default STREAMER_PARTITIONS)")

    def run(args: argparse.Namespace) -> int:
        return run_ledger(args, source_factory, redis_days, count_settings,
                          after_close=after_close)

    ledger.set_defaults(ledger_run=run)


def run_ledger(args: argparse.Namespace, source_factory: SourceFactory | None = None,
               redis_days: RedisDays | None = None,
               count_settings: Callable[[], Mapping[str, object]] | None = None,
               out: TextIO | None = None, after_close: AfterClose | None = None) -> int:
    out = out or sys.stdout
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"streamer ledger: configuration error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    location = location_of(settings)
    partitions = args.partitions or settings.partitions
    if partitions < 1:
        print("streamer ledger: --partitions must be at least 1", file=sys.stderr)
        return ExitCode.USAGE
    if args.ledger_command == "status":
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        days = audit.status(location, partitions, args.first, args.last or yesterday)
        if args.json:
            out.write(orjson.dumps([d.as_dict() for d in days]).decode() + "\n")
        else:
            for d in days:
                extra = f" missing {','.join(map(str, d.missing))}" if d.state == "partial" else ""
                if d.interrupted:
                    extra += f" (interrupted close: {','.join(map(str, d.interrupted))})"
                out.write(f"{d.day.isoformat()} {d.state}{extra}\n")
        return ExitCode.OK
    if args.ledger_command == "verify":
        redis = redis_days(args.day) if redis_days else None
        report = audit.verify(location, args.day, partitions, redis)
        if args.json:
            out.write(orjson.dumps(report.as_dict()).decode() + "\n")
        else:
            out.write(f"{args.day.isoformat()}: partitions checked "
                      f"{','.join(map(str, report.partitions_checked)) or 'none'}\n")
            for line in report.notes:
                out.write(f"note: {line}\n")
            for line in report.problems:
                out.write(f"PROBLEM: {line}\n")
            out.write("ok\n" if report.ok else f"{len(report.problems)} problems\n")
        return ExitCode.OK if report.ok else ExitCode.REFUSED
    if source_factory is None:
        print("streamer ledger close: no day source: this build does not wire the pipeline's "
              "Redis reader to the ledger yet", file=sys.stderr)
        return ExitCode.UNSUPPORTED
    source = source_factory(args)
    writer = LedgerWriter(location, count_settings() if count_settings else {})
    refused = 0
    for partition in range(partitions):
        try:
            run = close_days(writer, source, partition, args.day)
        except LedgerOrderError as exc:
            print(f"streamer ledger close: {exc}", file=sys.stderr)
            refused += 1
            continue
        if after_close is not None:
            after_close(partition, run)
        closed = ", ".join(d.isoformat() for d in run.closed_now) or "nothing new"
        out.write(f"p{partition}: closed {closed}\n")
    return ExitCode.REFUSED if refused else ExitCode.OK
