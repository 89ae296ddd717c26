"""``streamer report statements|dsr|explain``.

``register(subparsers)`` adds the ``report`` command to streamer/cli.py's parser; the
parsed arguments carry ``report_run``, which returns the exit code:

* 0 (``ExitCode.OK``): done
* 9 (``ExitCode.REFUSED``): refused: the period has days not closed by every partition
  (without ``--provisional``), or the ledger's holder rows disagree with its attributions
* 2 (``ExitCode.USAGE``): bad arguments or input: a rate card or party registry that does
  not validate, an unknown recipient, a missing ledger table or version

The codes are streamer/exit_codes.py's, listed in ``streamer --help``.

The ledger is found as ``streamer ledger`` finds it (the settings ``STREAMER_LEDGER_URL``
and ``STREAMER_LEDGER_STORAGE_OPTIONS``); ``--partitions`` defaults to
``STREAMER_PARTITIONS``.
Every problem is one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from streamer.config import ConfigError, load_settings
from streamer.exit_codes import ExitCode
from streamer.ledger.cli import location_of
from streamer.reports.dsr import DEFAULT_GZIP_OVER_BYTES, DEFAULT_MAX_FILE_BYTES, write_dsr
from streamer.reports.explain import explain
from streamer.reports.parties import Parties, PartiesError, load_parties
from streamer.reports.pricing import DEFAULT_MEMORY_LIMIT, LedgerMismatch, Pricing, price
from streamer.reports.rates import USES, RateCardError, load_rate_card
from streamer.reports.source import (
    Period,
    PeriodNotClosed,
    ReportInputError,
    open_snapshot,
    parse_versions,
)
from streamer.reports.statements import write_statements

EXIT_OK, EXIT_REFUSED, EXIT_INPUT = ExitCode.OK, ExitCode.REFUSED, ExitCode.USAGE


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _territory(text: str) -> str:
    if len(text) != 2 or not text.isascii() or not text.isupper() or not text.isalpha():
        raise argparse.ArgumentTypeError(f"expected an ISO 3166-1 alpha-2 code such as DE, "
                                         f"got {text!r}")
    return text


def register(subparsers: Any) -> None:
    """Add ``report`` to ``streamer``'s subcommands (docs/STATEMENTS.md)."""
    report = subparsers.add_parser("report", help="royalty statements and DDEX DSR files "
                                   "from the ledger's closed days (docs/STATEMENTS.md)")
    commands = report.add_subparsers(dest="report_command", required=True)
    statements = commands.add_parser("statements", help="per holder: a CSV of lines and a "
                                     "JSON summary")
    statements.add_argument("--holder", help="only this holder (pools are still split over "
                            "every holder)")
    statements.add_argument("--out", required=True, help="folder to write into")
    dsr = commands.add_parser("dsr", help="DDEX DSR flat files (UGC profile 1.2) for one "
                              "recipient, one report per territory")
    dsr.add_argument("--recipient", required=True, help="holder id of a party with dsr = true")
    dsr.add_argument("--out", required=True)
    dsr.add_argument("--created", help="MessageCreatedDateTime, UTC (default: the newest "
                     "commit time of the ledger versions read, so rebuilds are identical)")
    dsr.add_argument("--max-file-bytes", type=_positive, default=DEFAULT_MAX_FILE_BYTES,
                     help="split a report into numbered files so that the blocks of one "
                     "file stay under this size (HEAD, summaries and FOOT come on top)")
    dsr.add_argument("--gzip-over-bytes", type=_positive, default=DEFAULT_GZIP_OVER_BYTES,
                     help="gzip files larger than this")
    why = commands.add_parser("explain", help="how one statement line's figure was computed "
                              "from ledger rows")
    why.add_argument("--holder", required=True)
    why.add_argument("--track", required=True)
    why.add_argument("--use", choices=USES)
    why.add_argument("--right", choices=("master", "publishing"))
    for command in (statements, dsr, why):
        command.add_argument("--period", required=True, help="a calendar month, YYYY-MM (UTC)")
        command.add_argument("--territory", type=_territory)
        command.add_argument("--rates", required=True, help="rate card (TOML)")
        command.add_argument("--parties", required=True, help="party registry (TOML)")
        command.add_argument("--provisional", action="store_true",
                             help="build even if some days are not closed; every output "
                             "says it is provisional")
        command.add_argument("--partitions", type=_positive,
                             help="input partitions (default STREAMER_PARTITIONS)")
        command.add_argument("--ledger-versions", help="table=version,... to rebuild from "
                             "exactly those versions (as an output's manifest lists them)")
        command.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT,
                             help="DuckDB's memory for the build; the rest spills to disk "
                             f"(default {DEFAULT_MEMORY_LIMIT})")
        command.add_argument("--work-dir", help="folder for the build's working files "
                             "(default: the system's temporary folder)")
    report.set_defaults(report_run=run_report)


def _prepare(args: argparse.Namespace) -> tuple[Pricing, Parties]:
    period = Period.parse(args.period)
    card = load_rate_card(args.rates)
    parties = load_parties(args.parties)
    versions = parse_versions(args.ledger_versions) if args.ledger_versions else None
    settings = load_settings()
    snapshot = open_snapshot(location_of(settings), args.partitions or settings.partitions,
                             period, args.provisional, versions)
    return price(snapshot, card, args.memory_limit, args.work_dir), parties


def run_report(args: argparse.Namespace, out: TextIO | None = None,
               err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    name = f"streamer report {args.report_command}"
    try:
        pricing, parties = _prepare(args)
    except (PeriodNotClosed, LedgerMismatch) as exc:
        err.write(f"{name}: {exc}\n")
        return EXIT_REFUSED
    except (RateCardError, PartiesError, ReportInputError, ConfigError, OSError) as exc:
        err.write(f"{name}: {exc}\n")
        return EXIT_INPUT
    with pricing:
        return _run(args, pricing, parties, name, out, err)


def _run(args: argparse.Namespace, pricing: Pricing, parties: Parties, name: str,
         out: TextIO, err: TextIO) -> int:
    try:
        if args.report_command == "statements":
            run = write_statements(pricing, parties, args.out, args.holder, args.territory)
            out.write(f"wrote {len(run.holders)} statements for {args.period} to {args.out}"
                      f"{' (PROVISIONAL)' if pricing.snapshot.provisional else ''}\n")
            if run.unknown_holders:
                err.write(f"{name}: {len(run.unknown_holders)} holders not in "
                          f"{args.parties}: {', '.join(map(repr, run.unknown_holders[:20]))}"
                          f"{' ...' if len(run.unknown_holders) > 20 else ''} (statements "
                          "written under their ids)\n")
            if pricing.unpriced_uses:
                err.write(f"{name}: {pricing.unpriced_uses} uses matched no rate-card entry "
                          "(lines with amount 0, basis unpriced)\n")
        elif args.report_command == "dsr":
            reports = write_dsr(pricing, parties, args.recipient, args.out, args.territory,
                                args.created, args.max_file_bytes, args.gzip_over_bytes)
            for report in reports:
                for file_name in report.files:
                    out.write(f"{file_name}\n")
            if not any(report.files for report in reports):
                # Not an error, but never a silent nothing.
                err.write(f"{name}: no usage lines or levies for {args.recipient!r} in "
                          f"{args.period}, so no DSR file was written (--territory T writes "
                          "a no-usage report)\n")
        else:
            for line in explain(pricing, args.holder, args.track, args.territory, args.use,
                                args.right):
                out.write(line + "\n")
    except (ReportInputError, OSError) as exc:
        err.write(f"{name}: {exc}\n")
        return EXIT_INPUT
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m streamer.reports.cli``: the same as ``streamer report``."""
    parser = argparse.ArgumentParser(prog="streamer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.report_run(args))


if __name__ == "__main__":
    sys.exit(main())
