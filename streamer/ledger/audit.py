"""Which days are closed (``status``), and whether a closed day's rows are what their
commits said (``verify``).

``status`` reads the ``closes`` table (one row per closed day and partition, data, so it
survives log cleanup) and each table's transaction versions (a partition whose data
tables are ahead of ``closes`` was interrupted mid-close: the next close finishes it).

``verify`` checks a day against three independent records: each table's commit
metadata (row counts and totals recorded when the rows were written), the ``closes``
row, and the counting rules (track uses over countries = holder uses per right; per
right, weighted_micro over holders = uses x 1,000,000; holders and genres rebuilt from
attributions and catalog equal the stored ones). Optionally the day's Redis counters,
supplied by the caller while Redis still holds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, cast

import duckdb
import orjson

from streamer.events.shares import MICRO
from streamer.ledger import schemas as s
from streamer.ledger.model import day_of_number, totals_of
from streamer.ledger.reader import days_between
from streamer.ledger.writer import META_PREFIX, LedgerLocation, app_id

State = Literal["complete", "partial", "open"]


@dataclass(frozen=True, slots=True)
class DayStatus:
    day: date
    state: State
    missing: tuple[int, ...]
    """Partitions that have not closed the day (all of them when open)."""
    interrupted: tuple[int, ...] = ()
    """Partitions whose close of the day began and did not finish (some tables hold it)."""

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "state": self.state, "missing": list(self.missing),
                "interrupted": list(self.interrupted)}


def status(location: LedgerLocation, partitions: int, first: date | None = None,
           last: date | None = None) -> list[DayStatus]:
    """Per day from ``first`` (default: the first closed day) to ``last`` (default: the
    last closed day), what is closed."""
    closed: dict[date, set[int]] = {}
    if location.exists(s.CLOSES):
        table = location.open(s.CLOSES).to_pyarrow_dataset().to_table(
            columns=[s.DAY, s.PARTITION])
        days = cast(list[date], table[s.DAY].to_pylist())  # not nullable
        numbers = cast(list[int], table[s.PARTITION].to_pylist())
        for day, partition in zip(days, numbers, strict=True):
            closed.setdefault(day, set()).add(partition)
    if not closed and (first is None or last is None):
        return []
    first = first or min(closed)
    last = last or max(closed)
    ahead = _tables_ahead(location, partitions)
    everyone = set(range(partitions))
    result = []
    for day in days_between(first, last):
        have = closed.get(day, set()) & everyone
        missing = tuple(sorted(everyone - have))
        state: State = "complete" if not missing else "partial" if have else "open"
        interrupted = tuple(p for p in missing if ahead.get(p) == day)
        result.append(DayStatus(day, state, missing, interrupted))
    return result


def _tables_ahead(location: LedgerLocation, partitions: int) -> dict[int, date]:
    """Partition -> the day its data tables hold beyond ``closes`` (an unfinished close)."""
    if not location.exists(s.CLOSES):
        return {}
    closes = location.open(s.CLOSES)
    tables = [location.open(name) for name in s.DATA_TABLES if location.exists(name)]
    ahead = {}
    for partition in range(partitions):
        done = closes.transaction_version(app_id(partition))
        for table in tables:
            version = table.transaction_version(app_id(partition))
            if version is not None and (done is None or version > done):
                ahead[partition] = day_of_number(version)
    return ahead


@dataclass(frozen=True, slots=True)
class RedisDay:
    """A day's counters as Redis holds them for one partition, summed over countries
    (the plain ``1d`` counters): track (track_id, use) -> uses, holder (holder_id, right,
    use) -> (uses, weighted_micro), genre (genre, ai_origin, use) -> uses."""

    tracks: Mapping[tuple[str, str], int]
    holders: Mapping[tuple[str, str, str], tuple[int, int]]
    genres: Mapping[tuple[str, str, str], int]


@dataclass(slots=True)
class VerifyReport:
    day: date
    partitions_checked: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "ok": self.ok,
                "partitions_checked": self.partitions_checked, "problems": self.problems,
                "notes": self.notes}


def verify(location: LedgerLocation, day: date, partitions: int,
           redis: Mapping[int, RedisDay] | None = None) -> VerifyReport:
    """Check every closed partition of ``day`` (see the module docstring)."""
    report = VerifyReport(day)
    if not location.exists(s.CLOSES):
        report.notes.append("no ledger at this location")
        return report
    con = duckdb.connect()
    for name in s.ALL_TABLES:
        con.register(name, location.open(name).to_pyarrow_dataset())
    commits = {name: _commits_of_day(location, name, day) for name in s.ALL_TABLES}
    closes = {row[1]: row for row in con.execute(
        "SELECT * FROM closes WHERE day = ? ORDER BY partition", [day]).fetchall()}
    columns = [f.name for f in s.SCHEMAS[s.CLOSES]]
    for partition in range(partitions):
        if partition not in closes:
            if redis and partition in redis:
                report.notes.append(f"p{partition}: not closed, Redis not compared")
            continue
        report.partitions_checked.append(partition)
        close = dict(zip(columns, closes[partition], strict=True))
        _verify_partition(con, report, day, partition, close, commits)
        if redis and partition in redis:
            _compare_redis(con, report, day, partition, redis[partition])
    return report


def _commits_of_day(location: LedgerLocation, name: str,
                    day: date) -> dict[int, list[dict[str, Any]]]:
    """Partition -> the commit infos of ``name`` that closed ``day`` (as long as the log
    still has them: Delta removes commit files older than its log retention)."""
    found: dict[int, list[dict[str, Any]]] = {}
    for info in location.open(name).history():
        if info.get(f"{META_PREFIX}day") == day.isoformat():
            found.setdefault(int(info[f"{META_PREFIX}partition"]), []).append(info)
    return found


def _verify_partition(con: duckdb.DuckDBPyConnection, report: VerifyReport, day: date,
                      partition: int, close: Mapping[str, Any],
                      commits: Mapping[str, Mapping[int, list[dict[str, Any]]]]) -> None:
    where = f"p{partition}"
    fingerprints = set()
    for name in s.ALL_TABLES:
        table = con.sql(f"SELECT * FROM {name} WHERE day = ? AND partition = ?",
                        params=[day, partition]).to_arrow_table()
        actual = totals_of(name, table)
        if name != s.CLOSES and actual["rows"] != close[f"{name}_rows"]:
            report.problems.append(f"{where} {name}: {actual['rows']} rows, closes recorded "
                                   f"{close[f'{name}_rows']}")
        infos = commits[name].get(partition, [])
        if not infos:
            report.notes.append(f"{where} {name}: commit no longer in the log; checked "
                                "against closes only")
            continue
        if len(infos) != 1:
            report.problems.append(f"{where} {name}: {len(infos)} commits for the day")
        recorded = orjson.loads(infos[0][f"{META_PREFIX}totals"])
        if name == s.CLOSES:
            recorded = {"rows": recorded["rows"]}
            actual = {"rows": actual["rows"]}
        if recorded != actual:
            report.problems.append(f"{where} {name}: rows total {actual}, commit recorded "
                                   f"{recorded}")
        fingerprints.add(infos[0].get(f"{META_PREFIX}input_sha256"))
    if len(fingerprints) > 1:
        report.problems.append(f"{where}: tables were written from different inputs")
    args = [day, partition]
    checks = {
        "track uses != closes.uses":
            "SELECT coalesce(sum(uses), 0) <> ? FROM tracks WHERE day = ? AND partition = ?",
        "weighted_micro != closes.weighted_micro":
            "SELECT coalesce(sum(weighted_micro), 0) <> ? FROM holders "
            "WHERE day = ? AND partition = ?",
    }
    for problem, sql in zip(checks, checks.values(), strict=True):
        value = close["uses"] if problem.startswith("track") else close["weighted_micro"]
        if con.execute(sql, [value, *args]).fetchall() != [(False,)]:
            report.problems.append(f"{where}: {problem}")
    rules = {
        # Per right, use and country: the weights over all holders = uses x MICRO.
        "weighted_micro over holders per right, use and country != track uses x 1,000,000":
            f"""
            WITH t AS (SELECT use, country, sum(uses) AS uses FROM tracks
                       WHERE day = $1 AND partition = $2 GROUP BY ALL),
                 tr AS (SELECT r."right", t.* FROM t CROSS JOIN
                        (SELECT unnest(['master', 'publishing']) AS "right") r),
                 h AS (SELECT "right", use, country, sum(weighted_micro) AS w FROM holders
                       WHERE day = $1 AND partition = $2 GROUP BY ALL)
            SELECT count(*) FROM tr FULL JOIN h USING ("right", use, country)
            WHERE h.w IS DISTINCT FROM tr.uses * {MICRO}""",
        # Per track, country, use and right, from the allocations the catalog rows give.
        "per-track allocations per right != track uses x 1,000,000": f"""
            WITH a AS (SELECT * FROM attributions WHERE day = $1 AND partition = $2),
                 k AS (SELECT * FROM catalog WHERE day = $1 AND partition = $2),
                 alloc AS (SELECT track_id, country, use, "right",
                                  sum(a.uses * share_micro) AS w
                           FROM a JOIN k USING (track_id, catalog_version) GROUP BY ALL),
                 t AS (SELECT track_id, country, use, uses FROM tracks
                       WHERE day = $1 AND partition = $2),
                 tr AS (SELECT r."right", t.* FROM t CROSS JOIN
                        (SELECT unnest(['master', 'publishing']) AS "right") r)
            SELECT count(*) FROM tr FULL JOIN alloc USING (track_id, country, use, "right")
            WHERE alloc.w IS DISTINCT FROM tr.uses * {MICRO}""",
        "attributions summed != tracks": """
            SELECT count(*) FROM (
              (SELECT track_id, country, use, sum(uses) FROM attributions
               WHERE day = $1 AND partition = $2 GROUP BY ALL
               EXCEPT ALL SELECT track_id, country, use, uses FROM tracks
               WHERE day = $1 AND partition = $2)
              UNION ALL
              (SELECT track_id, country, use, uses FROM tracks WHERE day = $1 AND partition = $2
               EXCEPT ALL SELECT track_id, country, use, sum(uses) FROM attributions
               WHERE day = $1 AND partition = $2 GROUP BY ALL))""",
        "holders rebuilt from attributions and catalog != holders": """
            WITH a AS (SELECT * FROM attributions WHERE day = $1 AND partition = $2),
                 k AS (SELECT * FROM catalog WHERE day = $1 AND partition = $2),
                 rebuilt AS (SELECT holder_id, "right", use, country, sum(a.uses) AS uses,
                                    sum(a.uses * share_micro) AS w
                             FROM a JOIN k USING (track_id, catalog_version) GROUP BY ALL),
                 stored AS (SELECT holder_id, "right", use, country, uses,
                                   weighted_micro AS w FROM holders
                            WHERE day = $1 AND partition = $2)
            SELECT count(*) FROM ((SELECT * FROM rebuilt EXCEPT ALL SELECT * FROM stored)
                                  UNION ALL (SELECT * FROM stored EXCEPT ALL
                                             SELECT * FROM rebuilt))""",
        "genres rebuilt from attributions and catalog != genres": """
            WITH a AS (SELECT * FROM attributions WHERE day = $1 AND partition = $2),
                 v AS (SELECT DISTINCT track_id, catalog_version, genre, ai_origin FROM catalog
                       WHERE day = $1 AND partition = $2 AND genre IS NOT NULL),
                 rebuilt AS (SELECT genre, ai_origin, use, country, sum(a.uses) AS uses
                             FROM a JOIN v USING (track_id, catalog_version) GROUP BY ALL),
                 stored AS (SELECT genre, ai_origin, use, country, uses FROM genres
                            WHERE day = $1 AND partition = $2)
            SELECT count(*) FROM ((SELECT * FROM rebuilt EXCEPT ALL SELECT * FROM stored)
                                  UNION ALL (SELECT * FROM stored EXCEPT ALL
                                             SELECT * FROM rebuilt))""",
    }
    for problem, sql in rules.items():
        count = con.execute(sql, args).fetchall()[0][0]
        if count:
            report.problems.append(f"{where}: {problem} ({count} rows)")


def _compare_redis(con: duckdb.DuckDBPyConnection, report: VerifyReport, day: date,
                   partition: int, redis: RedisDay) -> None:
    where = f"p{partition} vs Redis"
    args = [day, partition]
    tracks = {(t, u): int(n) for t, u, n in con.execute(
        "SELECT track_id, use, sum(uses) FROM tracks WHERE day = ? AND partition = ? "
        "GROUP BY ALL", args).fetchall()}
    holders = {(h, r, u): (int(n), int(w)) for h, r, u, n, w in con.execute(
        "SELECT holder_id, \"right\", use, sum(uses), sum(weighted_micro) FROM holders "
        "WHERE day = ? AND partition = ? GROUP BY ALL", args).fetchall()}
    genres = {(g, o, u): int(n) for g, o, u, n in con.execute(
        "SELECT genre, ai_origin, use, sum(uses) FROM genres WHERE day = ? AND partition = ? "
        "GROUP BY ALL", args).fetchall()}
    pairs: tuple[tuple[str, Mapping[Any, Any], Mapping[Any, Any]], ...] = (
        ("tracks", tracks, redis.tracks), ("holders", holders, redis.holders),
        ("genres", genres, redis.genres))
    for what, ledger, expected in pairs:
        wanted = {key: value for key, value in expected.items() if value not in (0, (0, 0))}
        if ledger != wanted:
            differing = sorted(key for key in set(ledger) | set(wanted)
                               if ledger.get(key) != wanted.get(key))
            report.problems.append(f"{where} {what}: {len(differing)} keys differ, e.g. "
                                   f"{differing[0]}: ledger {ledger.get(differing[0])}, "
                                   f"Redis {wanted.get(differing[0])}")

