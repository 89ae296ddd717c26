"""``streamer report``: exit codes and one-line errors."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from streamer.exit_codes import ExitCode
from streamer.reports.cli import register, run_report
from tests.reports.conftest import PARTIES, RATES, ClosedMonth


def run(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="streamer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code = run_report(args, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def ledger_env(closed_month: ClosedMonth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_LEDGER_URL", closed_month.location.url)
    monkeypatch.setenv("STREAMER_PARTITIONS", "1")


COMMON = ["--period", "2026-11", "--rates", str(RATES), "--parties", str(PARTIES)]


def test_statements_dsr_and_explain(ledger_env: None, tmp_path: Path) -> None:
    code, out, err = run(["report", "statements", *COMMON, "--out", str(tmp_path / "s")])
    assert code == 0 and out.startswith("wrote 10 statements for 2026-11")
    assert "2 holders not in" in err and "'indie'" in err
    code, out, _ = run(["report", "dsr", *COMMON, "--recipient", "pub-x", "--territory", "DE",
                        "--created", "2026-12-01T00:00:00Z", "--out", str(tmp_path / "d")])
    assert code == 0 and out.strip().endswith("_DE_1of1_20261201T000000.tsv")
    code, out, _ = run(["report", "explain", *COMMON, "--holder", "_unattributed", "--track",
                        "trk-003"])
    assert code == 0 and "matches the statement's" in out


def test_refusals_and_bad_input(ledger_env: None, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('currency = "EUR"\n[[rate]]\nperiod = "2026-13"\n')
    code, _, err = run(["report", "statements", "--period", "2026-11", "--rates", str(bad),
                        "--parties", str(PARTIES), "--out", str(tmp_path)])
    assert code == ExitCode.USAGE and err.count("\n") == 1
    assert f"{bad}: [[rate]] #1: period: '2026-13' is not a month YYYY-MM" in err
    code, _, err = run(["report", "dsr", *COMMON, "--recipient", "label-b", "--out",
                        str(tmp_path)])
    assert code == ExitCode.USAGE and "not a party that receives DSR files" in err
    code, _, err = run(["report", "statements", *COMMON, "--partitions", "2", "--out",
                        str(tmp_path)])
    assert code == ExitCode.REFUSED and "2026-11-01 partial (partitions 1 missing)" in err
    assert "--provisional" in err
    code, _, err = run(["report", "statements", *COMMON, "--ledger-versions", "tracks=x",
                        "--out", str(tmp_path)])
    assert code == ExitCode.USAGE and "--ledger-versions" in err
    monkeypatch.setenv("STREAMER_LEDGER_URL", str(tmp_path / "nowhere"))
    code, _, err = run(["report", "statements", *COMMON, "--out", str(tmp_path)])
    assert code == ExitCode.USAGE and "no ledger table" in err
    code, _, err = run(["report", "statements", "--period", "2026-12", "--rates", str(RATES),
                        "--parties", str(PARTIES), "--out", str(tmp_path)])
    assert code == ExitCode.USAGE


def test_streamer_command_wires_report(ledger_env: None, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from streamer.cli import main

    code = main(["report", "statements", *COMMON, "--holder", "pub-x", "--out",
                 str(tmp_path)])
    assert code == ExitCode.OK
    assert sorted(p.name for p in tmp_path.glob("statement_pub-x_2026-11.*")) == [
        "statement_pub-x_2026-11.csv", "statement_pub-x_2026-11.json"]
    capsys.readouterr()
    code = main(["report", "statements", *COMMON, "--partitions", "2", "--out",
                 str(tmp_path)])
    err = capsys.readouterr().err
    assert code == ExitCode.REFUSED and err.count("\n") == 1 and "partial" in err


def test_a_levy_only_party_gets_dsr_files_and_a_party_with_nothing_one_line(
        ledger_env: None, tmp_path: Path) -> None:
    code, out, err = run(["report", "dsr", *COMMON, "--recipient", "cmo-gema",
                          "--out", str(tmp_path / "d")])
    assert code == 0 and err == ""
    assert out and all(name.startswith("DSR_PADPIDA2007040502I_") and name.endswith(".tsv")
                       for name in out.splitlines())
    assert sorted(out.splitlines()) == sorted(p.name for p in (tmp_path / "d").iterdir())
    parties = tmp_path / "parties.toml"
    parties.write_text(PARTIES.read_text() + '\n[[party]]\nholder_id = "nobody"\n'
                       'name = "Nobody"\ndpid = "PADPIDA2001010101N"\ndsr = true\n')
    code, out, err = run(["report", "dsr", "--period", "2026-11", "--rates", str(RATES),
                          "--parties", str(parties), "--recipient", "nobody",
                          "--out", str(tmp_path / "n")])
    assert code == 0 and out == ""
    assert err.count("\n") == 1 and "no usage lines or levies for 'nobody' in 2026-11" in err
