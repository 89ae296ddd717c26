"""Closing days: exactly once per table, in order, against concurrent writers."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import write_deltalake

from streamer.ledger import (
    CatalogEntry,
    DayGap,
    DayNotClosable,
    DayPartition,
    LedgerInputError,
    LedgerLocation,
    LedgerWriter,
)
from streamer.ledger import schemas as s
from streamer.ledger.audit import RedisDay, status, verify
from streamer.ledger.model import UNATTRIBUTED, day_number
from streamer.ledger.writer import app_id
from tests.ledger.conftest import SETTINGS, snapshot
from tests.ledger.days import make_days

D1 = date(2026, 11, 1)


def test_closing_a_day_again_commits_nothing_and_changes_no_file(
        location: LedgerLocation, writer: LedgerWriter) -> None:
    days = make_days(1, D1, 2, 2, 300)
    for key in sorted(days):
        result = writer.close(days[key].closed())
        assert result.committed == s.ALL_TABLES
    before = snapshot(location.url)
    log_before = {path: v for path, v in before.items() if "_delta_log" in path}
    assert len(log_before) >= len(s.ALL_TABLES) * 5  # create + 4 closes per table
    for key in sorted(days):
        result = LedgerWriter(location, SETTINGS).close(days[key].closed())
        assert (result.committed, result.already) == ((), s.ALL_TABLES)
    assert snapshot(location.url) == before


def test_every_commit_carries_its_day_partition_and_totals(
        location: LedgerLocation, writer: LedgerWriter) -> None:
    day = make_days(2, D1, 1, 1, 200)[(D1, 0)]
    writer.close(day.closed())
    for name in s.ALL_TABLES:
        table = location.open(name)
        assert table.transaction_version(app_id(0)) == day_number(D1)
        info = table.history(1)[0]
        assert info["streamer.day"] == "2026-11-01"
        assert info["streamer.partition"] == "0"
        assert info["streamer.code_version"] == "test"
        assert orjson.loads(info["streamer.settings"]) == SETTINGS
        totals = orjson.loads(info["streamer.totals"])
        if name == s.TRACKS:
            assert totals["uses"] == len(day.events)
            assert totals["rows"] == len(day.tracks())
        if name == s.HOLDERS:
            assert totals["weighted_micro"] == 2 * 1_000_000 * len(day.events)


def test_days_close_in_order_per_partition(writer: LedgerWriter) -> None:
    days = make_days(3, D1, 4, 1, 20)
    writer.close(days[(D1 + timedelta(days=1), 0)].closed())
    with pytest.raises(DayGap, match="before 2026-11-03"):
        writer.close(days[(D1 + timedelta(days=3), 0)].closed())
    with pytest.raises(DayNotClosable, match="first closed day 2026-11-02"):
        writer.close(days[(D1, 0)].closed())
    writer.close(days[(D1 + timedelta(days=2), 0)].closed())
    assert writer.close(days[(D1 + timedelta(days=3), 0)].closed()).committed == s.ALL_TABLES
    assert writer.last_closed_day(0) == D1 + timedelta(days=3)
    assert writer.last_closed_day(1) is None


def test_an_idle_day_closes_with_no_rows(location: LedgerLocation, writer: LedgerWriter) -> None:
    writer.close(DayPartition.from_mappings(D1, 0, {}, []))
    assert [d.state for d in status(location, 1)] == ["complete"]
    assert location.open(s.TRACKS).to_pyarrow_table().num_rows == 0
    assert verify(location, D1, 1).ok


def test_two_writers_racing_on_one_day_commit_it_once(location: LedgerLocation) -> None:
    days = make_days(4, D1, 1, 1, 500)
    closed = days[(D1, 0)].closed()
    LedgerWriter(location, SETTINGS).last_closed_day(0)  # create the tables
    barrier = threading.Barrier(4)
    results = []

    def close() -> None:
        writer = LedgerWriter(location, SETTINGS)
        barrier.wait()
        results.append(writer.close(closed))

    threads = [threading.Thread(target=close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in s.ALL_TABLES:
        assert sum(name in r.committed for r in results) == 1
        commits = [h for h in location.open(name).history() if "streamer.day" in h]
        assert len(commits) == 1
    rows = location.open(s.TRACKS).to_pyarrow_table()
    assert pc.sum(rows["uses"]).as_py() == len(days[(D1, 0)].events)
    assert verify(location, D1, 1).ok


def test_status_reports_partial_open_and_interrupted_days(
        location: LedgerLocation, writer: LedgerWriter) -> None:
    days = make_days(5, D1, 3, 3, 30)
    for partition in range(3):
        writer.close(days[(D1, partition)].closed())
    writer.close(days[(D1 + timedelta(days=1), 0)].closed())
    # An interrupted close of partition 2: its first two tables hold day 2, closes does not.
    closed = days[(D1 + timedelta(days=1), 2)].closed()
    writer._commit_once(s.CATALOG, closed.catalog, closed, {"rows": 0}, "x")
    writer._commit_once(s.ATTRIBUTIONS, closed.attributions, closed, {"rows": 0}, "x")
    report = status(location, 3, last=D1 + timedelta(days=2))
    assert [(d.state, d.missing, d.interrupted) for d in report] == [
        ("complete", (), ()), ("partial", (1, 2), (2,)), ("open", (0, 1, 2), ())]
    # The next close of that day finishes it, writing only the tables it lacked.
    result = writer.close(closed)
    assert result.already == (s.CATALOG, s.ATTRIBUTIONS)
    assert verify(location, D1 + timedelta(days=1), 3).partitions_checked == [0, 2]


def test_verify_finds_rows_that_no_close_wrote(location: LedgerLocation,
                                               writer: LedgerWriter) -> None:
    day = make_days(6, D1, 1, 1, 100)[(D1, 0)]
    writer.close(day.closed())
    assert verify(location, D1, 1).ok
    extra = pa.table({"day": [D1], "partition": pa.array([0], pa.int32()),
                      "track_id": ["trk-000"], "country": ["DE"], "use": ["play"],
                      "uses": pa.array([1], pa.int64())}, schema=s.SCHEMAS[s.TRACKS])
    write_deltalake(location.open(s.TRACKS), extra, mode="append")
    problems = verify(location, D1, 1).problems
    assert any("tracks" in p and "rows" in p for p in problems), problems
    assert any("weighted_micro over holders" in p for p in problems), problems


def test_verify_compares_with_redis_totals(location: LedgerLocation,
                                           writer: LedgerWriter) -> None:
    day = make_days(7, D1, 1, 1, 150)[(D1, 0)]
    writer.close(day.closed())
    tracks: dict[tuple[str, str], int] = {}
    for (track, _, use), n in day.tracks().items():
        tracks[(track, use)] = tracks.get((track, use), 0) + n
    holders: dict[tuple[str, str, str], tuple[int, int]] = {}
    for (holder, right, use, _), (n, w) in day.holders().items():
        old = holders.get((holder, right, use), (0, 0))
        holders[(holder, right, use)] = (old[0] + n, old[1] + w)
    genres: dict[tuple[str, str, str], int] = {}
    for (genre, origin, use, _), n in day.genres().items():
        genres[(genre, origin, use)] = genres.get((genre, origin, use), 0) + n
    assert verify(location, D1, 1, {0: RedisDay(tracks, holders, genres)}).ok
    some = next(iter(tracks))
    tracks[some] += 1
    problems = verify(location, D1, 1, {0: RedisDay(tracks, holders, genres)}).problems
    assert problems == [f"p0 vs Redis tracks: 1 keys differ, e.g. {some}: ledger "
                        f"{tracks[some] - 1}, Redis {tracks[some]}"]


@pytest.mark.parametrize(("attributions", "entries", "message"), [
    ({("t", "DE", "play", "v0"): 1}, [], "no catalog entry for track t version v0"),
    ({("t", "de", "play", UNATTRIBUTED): 1}, [], "country"),
    ({("t", "DE", "stream", UNATTRIBUTED): 1}, [], "a use other than"),
    ({("t", "DE", "play", UNATTRIBUTED): 0}, [], "uses <= 0"),
])
def test_bad_input_is_refused_with_a_reason(
        attributions: dict[tuple[str, str, str, str], int], entries: list[CatalogEntry],
        message: str) -> None:
    with pytest.raises(LedgerInputError, match=message):
        DayPartition.from_mappings(D1, 0, attributions, entries)


def test_shares_over_one_are_refused() -> None:
    entry = CatalogEntry("t", "pop", "human", (("a", 700_000), ("b", 400_000)), ())
    with pytest.raises(LedgerInputError, match="add up to 1000000"):
        DayPartition.from_mappings(D1, 0, {("t", "DE", "play", entry.version): 1}, [entry])
