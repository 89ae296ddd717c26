"""``streamer ledger status|verify|close`` through ``register``'s parser."""

from __future__ import annotations

import argparse
import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from streamer.exit_codes import ExitCode
from streamer.ledger import LedgerLocation
from streamer.ledger import schemas as s
from streamer.ledger.cli import register, run_ledger
from tests.ledger.crash_writer import FIRST, SyntheticSource, days_of


def _parse(argv: list[str], source: Any = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamer")
    register(parser.add_subparsers(dest="command", required=True),
             source_factory=(lambda _: source) if source else None,
             count_settings=lambda: {"allowed_lateness_ms": 1})
    return parser.parse_args(["ledger", *argv])


def _run(argv: list[str], source: Any = None) -> tuple[int, str]:
    args = _parse(argv, source)
    out = io.StringIO()
    code = run_ledger(args, (lambda _: source) if source else None, None,
                      lambda: {"allowed_lateness_ms": 1}, out=out)
    return code, out.getvalue()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LedgerLocation:
    monkeypatch.setenv("STREAMER_LEDGER_URL", str(tmp_path / "ledger"))
    monkeypatch.setenv("STREAMER_PARTITIONS", "2")
    return LedgerLocation(str(tmp_path / "ledger"))


def test_close_status_and_verify(env: LedgerLocation, capsys: pytest.CaptureFixture[str]) -> None:
    source = SyntheticSource(days_of(5))
    code, out = _run(["close", "--day", (FIRST + timedelta(days=1)).isoformat()], source)
    assert code == 0
    assert out.splitlines() == ["p0: closed 2026-11-01, 2026-11-02",
                                "p1: closed 2026-11-01, 2026-11-02"]
    code, out = _run(["close"], source)
    assert (code, out.splitlines()) == (0, ["p0: closed 2026-11-03", "p1: closed 2026-11-03"])
    code, out = _run(["close"], source)
    assert out.splitlines() == ["p0: closed nothing new", "p1: closed nothing new"]
    code, out = _run(["status", "--to", "2026-11-04", "--json"])
    assert code == 0
    assert [(d["day"], d["state"]) for d in orjson.loads(out)] == [
        ("2026-11-01", "complete"), ("2026-11-02", "complete"), ("2026-11-03", "complete"),
        ("2026-11-04", "open")]
    code, out = _run(["status", "--partitions", "3", "--to", "2026-11-01"])
    assert out == "2026-11-01 partial missing 2\n"
    code, out = _run(["verify", "--day", "2026-11-02"])
    assert (code, out.splitlines()[-1]) == (0, "ok")


def test_close_without_a_day_source_says_so(env: LedgerLocation,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["close"])[0] == ExitCode.UNSUPPORTED
    assert "no day source" in capsys.readouterr().err


def test_bad_day_and_configuration(env: LedgerLocation, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse(["verify", "--day", "2026-13-01"])
    assert exited.value.code == 2
    assert "expected a UTC day YYYY-MM-DD" in capsys.readouterr().err
    monkeypatch.setenv("STREAMER_LEDGER_STORAGE_OPTIONS", "{not json")
    assert _run(["status"])[0] == ExitCode.USAGE
    assert "STREAMER_LEDGER_STORAGE_OPTIONS" in capsys.readouterr().err


def test_verify_exit_code_on_problems(env: LedgerLocation) -> None:
    source = SyntheticSource(days_of(6))
    _run(["close", "--day", "2026-11-01"], source)
    extra = pa.table({"day": [date(2026, 11, 1)], "partition": pa.array([1], pa.int32()),
                      "genre": ["pop"], "ai_origin": ["human"], "use": ["play"],
                      "country": ["DE"], "uses": pa.array([3], pa.int64())},
                     schema=s.SCHEMAS[s.GENRES])
    write_deltalake(env.open(s.GENRES), extra, mode="append")
    code, out = _run(["verify", "--day", "2026-11-01"])
    assert code == ExitCode.REFUSED
    assert "PROBLEM: p1 genres" in out
