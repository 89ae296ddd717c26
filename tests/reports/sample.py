"""The sample in docs/STATEMENTS.md ("What a rights holder sees"), built by the product.

``python -m tests.reports.sample DIR`` closes the test month (tests/reports/fixture.py,
seed 21, one partition) into ``DIR/ledger``, runs ``streamer report statements --holder
pub-x`` and ``streamer report dsr --recipient pub-x --territory IS --created
2026-12-01T00:00:00Z`` with the deploy/examples card and parties, and prints the excerpt
that the docs show. tests/reports/test_docs_sample.py checks that the docs hold it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from streamer.ledger import LedgerLocation
from streamer.reports.cli import register, run_report
from tests.reports.fixture import make_month

ROOT = Path(__file__).resolve().parents[2]
RATES = ROOT / "deploy" / "examples" / "rates.toml"
PARTIES = ROOT / "deploy" / "examples" / "parties.toml"
HOLDER, TERRITORY, CREATED = "pub-x", "IS", "2026-12-01T00:00:00Z"
CSV_LINES = 6
DSR_BLOCKS = 3
VARYING = ("committed_at", "url", "MessageId")
"""What a rebuilt ledger changes (its commit time and place, and the DSR MessageId derived
from them); the docs test compares everything else."""


def _report(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="streamer")
    register(parser.add_subparsers(dest="command", required=True))
    err = io.StringIO()
    code = run_report(parser.parse_args(["report", *argv]), io.StringIO(), err)
    if code != 0:
        raise RuntimeError(f"streamer report {argv[0]}: exit {code}: {err.getvalue()}")


def _cut(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with each per-territory, use, right and origin group cut to its first
    entry, and at most two levies."""
    out = dict(summary)
    for name in ("by_territory", "by_use", "by_right", "by_ai_origin"):
        first = next(iter(sorted(summary[name].items())), None)
        out[name] = dict([first]) if first else {}
    out["levies"] = summary["levies"][:2]
    return out


def build(location: LedgerLocation, out: Path) -> str:
    """The markdown excerpt for a ledger holding the test month."""
    common = ["--period", "2026-11", "--rates", str(RATES), "--parties", str(PARTIES),
              "--partitions", "1"]
    before = os.environ.get("STREAMER_LEDGER_URL")
    os.environ["STREAMER_LEDGER_URL"] = location.url
    try:
        _report(["statements", *common, "--holder", HOLDER, "--out",
                 str(out / "statements")])
        _report(["dsr", *common, "--recipient", HOLDER, "--territory", TERRITORY,
                 "--created", CREATED, "--out", str(out / "dsr")])
    finally:
        if before is None:
            del os.environ["STREAMER_LEDGER_URL"]
        else:
            os.environ["STREAMER_LEDGER_URL"] = before
    csv_name = f"statement_{HOLDER}_2026-11.csv"
    csv_lines = (out / "statements" / csv_name).read_text().splitlines()[:CSV_LINES + 1]
    summary = json.loads((out / "statements" / f"statement_{HOLDER}_2026-11.json").read_text())
    (dsr,) = sorted((out / "dsr").iterdir())
    records = [line for line in dsr.read_text().splitlines() if not line.startswith("#")]
    shown, blocks = [], 0
    for line in records:
        if line.startswith("AS02.02"):
            blocks += 1
        if blocks <= DSR_BLOCKS or line.startswith("FOOT"):
            shown.append(line)
        elif shown[-1] != "…":
            shown.append("…")
    return "\n".join([
        f"`{csv_name}` (header and first {CSV_LINES} lines):", "", "```",
        *csv_lines, "```", "",
        f"`statement_{HOLDER}_2026-11.json` (the per-territory, use, right and origin groups "
        "cut to their first entry):", "", "```json",
        json.dumps(_cut(summary), indent=2, sort_keys=True, ensure_ascii=False), "```", "",
        f"`{dsr.name}` (comment lines left out; blocks after the first {DSR_BLOCKS} cut):",
        "", "```", *shown, "```"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reports.sample")
    parser.add_argument("dir", help="an empty folder for the ledger and the outputs")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    location = LedgerLocation(str(root / "ledger"))
    if not (root / "ledger").exists():
        make_month(seed=21, partitions=1).close_into(location)
    sys.stdout.write(build(location, root / "out") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
