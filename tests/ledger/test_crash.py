"""SIGKILL a real process while it writes the ledger, at random moments, then retry the
close: the tables must read exactly as after an undisturbed run, with one commit per
table, day and partition, and verify clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from streamer.ledger import LedgerLocation
from streamer.ledger import schemas as s
from streamer.ledger.audit import status, verify
from tests.ledger.crash_writer import DAYS, FIRST, PARTITIONS, close_all

REPO = Path(__file__).resolve().parents[2]
SEED = 21


def _start(ledger_dir: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "tests.ledger.crash_writer",
                                str(ledger_dir), str(SEED)], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _rows(location: LedgerLocation) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for name in s.ALL_TABLES:
        table = location.open(name).to_pyarrow_table()
        out[name] = sorted(tuple(row.values()) for row in table.to_pylist())
    return out


def _commits(location: LedgerLocation) -> list[tuple[str, str, str]]:
    return sorted((name, h["streamer.day"], h["streamer.partition"])
                  for name in s.ALL_TABLES for h in location.open(name).history()
                  if "streamer.day" in h)


def _commit_count(ledger_dir: Path) -> int:
    logs = ledger_dir.glob("*/_delta_log/*.json")
    return sum(1 for path in logs if path.name[0] != "_")


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> tuple[LedgerLocation, float]:
    ledger_dir = tmp_path_factory.mktemp("undisturbed") / "ledger"
    process = _start(ledger_dir)
    started = time.monotonic()
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "done"
    elapsed = time.monotonic() - started
    assert process.wait(30) == 0
    return LedgerLocation(str(ledger_dir)), elapsed


def test_sigkill_while_writing_then_retry_equals_an_undisturbed_run(
        tmp_path: Path, undisturbed: tuple[LedgerLocation, float]) -> None:
    reference, duration = undisturbed
    total_commits = _commit_count(Path(reference.url))
    rng = random.Random(SEED)
    ledger_dir = tmp_path / "ledger"
    mid_close = 0
    for _ in range(8):
        before = _commit_count(ledger_dir)
        process = _start(ledger_dir)
        # A random moment of what is left to write (each run resumes where the last died).
        time.sleep(rng.uniform(0, duration * (total_commits - before) / total_commits))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        written = _commit_count(ledger_dir)
        # Kills after this run committed something and before it finished: the ones that
        # matter here (others die importing, or find it all done).
        mid_close += before < written < total_commits and process.returncode == -signal.SIGKILL
    assert mid_close >= 3, "too few kills landed while the ledger was being written"
    location = LedgerLocation(str(ledger_dir))
    close_all(str(ledger_dir), SEED)  # the retry
    assert _rows(location) == _rows(reference)
    commits = _commits(location)
    assert commits == _commits(reference)
    assert len(commits) == len(set(commits)) == len(s.ALL_TABLES) * DAYS * PARTITIONS
    assert [d.state for d in status(location, PARTITIONS)] == ["complete"] * DAYS
    for offset in range(DAYS):
        report = verify(location, FIRST + timedelta(days=offset), PARTITIONS)
        assert report.ok, report.problems
