"""streamer.verify.ledger_files, the harness's own reader of the ledger, can fail: a
ledger written by the writer passes, the same ledger with one row appended behind the
writer's back (a count changed, a row doubled) fails its invariants and its snapshot
differs from the untouched one."""

from __future__ import annotations

import shutil
from pathlib import Path

from deltalake import DeltaTable, write_deltalake

from streamer.verify.ledger_files import (
    interrupted,
    ledger_counters,
    ledger_problems,
    ledger_snapshot,
    uncommitted_files,
)
from tests.ledger.crash_writer import DAYS, FIRST, PARTITIONS, close_all


def test_ledger_files_pass_a_written_ledger_and_catch_a_tampered_one(tmp_path: Path) -> None:
    good = tmp_path / "good"
    close_all(str(good), 21)
    check = ledger_problems(str(good))
    assert check.ok, check.problems
    assert check.closed == DAYS * PARTITIONS and check.uses > 0
    assert uncommitted_files(str(good)) == [] and interrupted(str(good)) == set()
    counters = ledger_counters(str(good))
    assert sum(v for k, v in counters.items() if k[0] == "tracks") == check.uses
    reference = ledger_snapshot(str(good))
    assert set(reference.commits.values()) == {1}
    assert len(reference.commits) == 6 * DAYS * PARTITIONS
    first_day = ledger_snapshot(str(good), through=FIRST)
    assert len(first_day.commits) == 6 * PARTITIONS
    assert {row[0] for row in first_day.rows["tracks"]} == {FIRST}

    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    holders = DeltaTable(str(bad / "holders"))
    row = holders.to_pyarrow_table().slice(0, 1)
    write_deltalake(str(bad / "holders"), row, mode="append")   # a holder row doubled
    tampered = ledger_problems(str(bad))
    assert not tampered.ok
    assert any("weighted_micro" in problem for problem in tampered.problems)
    assert ledger_snapshot(str(bad)).differences(reference)
    assert ledger_snapshot(str(bad)).totals()["holders"]["rows"] == (
        reference.totals()["holders"]["rows"] + 1)
    assert reference.totals()["tracks"]["uses"] == check.uses

    # A Parquet file no commit references is found (a close that died before committing).
    stray = next((bad / "tracks").rglob("*.parquet"))
    shutil.copy(stray, stray.with_name("part-stray.parquet"))
    assert uncommitted_files(str(bad)) == [str(stray.with_name("part-stray.parquet"))]
