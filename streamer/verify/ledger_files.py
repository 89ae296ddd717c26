"""The ledger's Delta tables read directly (deltalake + DuckDB), for reconciliation.

Nothing here goes through ``streamer.ledger`` (the code under test): the table and
column names are the documented ones (docs/LEDGER.md), the files are read with
``deltalake.DeltaTable`` (which follows the transaction log, so only committed files
count) and aggregated with DuckDB.

* ``ledger_counters``: the ``tracks``, ``holders`` and ``genres`` rows of one partition
  (or all), in the key shapes of ``GroundTruth.expected_ledger``.
* ``ledger_problems``: the invariants of issue 20 that the ledger alone must satisfy,
  plus the ledger against a partition's plain ``1d`` counters in Redis.
* ``ledger_snapshot``: every table's rows sorted, and the commits per (table, day,
  partition), to compare a disturbed run with an undisturbed one.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

CounterKey = tuple[Any, ...]
TABLES = ("catalog", "attributions", "tracks", "holders", "genres", "closes")
WHOLE_MICRO = 1_000_000


def _tables(url: str, storage_options: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each table that exists as a DeltaTable (a ledger nothing closed into has none)."""
    from deltalake import DeltaTable

    found = {}
    for name in TABLES:
        path = f"{url.rstrip('/')}/{name}"
        if "://" not in url and not os.path.isdir(os.path.join(path, "_delta_log")):
            continue
        found[name] = DeltaTable(path, storage_options=dict(storage_options or {}))
    return found


def _connect(url: str, storage_options: Mapping[str, str] | None = None) -> Any:
    import duckdb

    con = duckdb.connect()
    for name, table in _tables(url, storage_options).items():
        con.register(name, table.to_pyarrow_dataset())
    return con


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def _where(partition: int | None) -> str:
    return "" if partition is None else f"WHERE partition = {int(partition)}"


def ledger_counters(url: str, partition: int | None = None,
                    storage_options: Mapping[str, str] | None = None) -> dict[CounterKey, int]:
    """The ledger's count rows as ``GroundTruth.expected_ledger`` keys, summed over the
    partitions (or of one)::

        ("tracks", day_start_ms, track_id, country, use)                         -> uses
        ("holders", day_start_ms, holder_id, right, use, country, "uses"|"weighted_micro")
        ("genres", day_start_ms, genre, ai_origin, use, country)                 -> uses
    """
    con = _connect(url, storage_options)
    out: Counter[CounterKey] = Counter()
    present = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    where = _where(partition)
    if "tracks" in present:
        for day, track, country, use, uses in con.execute(
                f"SELECT day, track_id, country, use, sum(uses)::BIGINT FROM tracks {where} "
                "GROUP BY ALL").fetchall():
            out[("tracks", day_start_ms(day), track, country, use)] += uses
    if "holders" in present:
        for day, holder, right, use, country, uses, weighted in con.execute(
                f'SELECT day, holder_id, "right", use, country, sum(uses)::BIGINT, '
                f"sum(weighted_micro)::BIGINT FROM holders {where} GROUP BY ALL").fetchall():
            start = day_start_ms(day)
            out[("holders", start, holder, right, use, country, "uses")] += uses
            out[("holders", start, holder, right, use, country, "weighted_micro")] += weighted
    if "genres" in present:
        for day, genre, origin, use, country, uses in con.execute(
                f"SELECT day, genre, ai_origin, use, country, sum(uses)::BIGINT FROM genres "
                f"{where} GROUP BY ALL").fetchall():
            out[("genres", day_start_ms(day), genre, origin, use, country)] += uses
    con.close()
    return {key: value for key, value in out.items() if value}


def closed(url: str, storage_options: Mapping[str, str] | None = None
           ) -> dict[tuple[date, int], int]:
    """(day, partition) -> number of ``closes`` rows (1 for each closed one)."""
    con = _connect(url, storage_options)
    try:
        if "closes" not in {row[0] for row in con.execute("SHOW TABLES").fetchall()}:
            return {}
        return {(day, partition): count for day, partition, count in con.execute(
            "SELECT day, partition, count(*) FROM closes GROUP BY ALL").fetchall()}
    finally:
        con.close()


# Per closed (day, partition): each query returns the rows that break an invariant.
_INVARIANTS = {
    # weighted_micro over all holders = uses x 1e6, per country, use and right.
    "holders weighted_micro != tracks uses x 1e6 (per day, partition, country, use, right)": """
        WITH t AS (SELECT day, partition, country, use, sum(uses) AS uses FROM tracks
                   GROUP BY ALL),
             h AS (SELECT day, partition, country, use, "right", sum(weighted_micro) AS w,
                          sum(uses) AS u FROM holders GROUP BY ALL)
        SELECT h.day, h.partition, h.country, h.use, h."right", t.uses, h.w
        FROM h FULL JOIN t USING (day, partition, country, use)
        WHERE coalesce(h.w, -1) != coalesce(t.uses, 0) * 1000000""",
    # Per track, country and use, each right's shares over all holders weigh the
    # track's uses x 1e6 (attributions x catalog, against tracks).
    "per (track, country, use) and right, weighted_micro over holders != uses x 1e6": """
        WITH w AS (SELECT a.day, a.partition, a.track_id, a.country, a.use, c."right",
                          sum(a.uses * c.share_micro) AS w
                   FROM attributions a JOIN catalog c
                        USING (day, partition, track_id, catalog_version)
                   GROUP BY ALL),
             t AS (SELECT day, partition, track_id, country, use, uses FROM tracks),
             r AS (SELECT DISTINCT "right" FROM catalog)
        SELECT t.*, r."right", w.w FROM t CROSS JOIN r
        LEFT JOIN w USING (day, partition, track_id, country, use, "right")
        WHERE coalesce(w.w, -1) != t.uses * 1000000""",
    # tracks = attributions summed over catalog versions.
    "tracks != attributions summed over versions": """
        WITH a AS (SELECT day, partition, track_id, country, use, sum(uses) AS uses
                   FROM attributions GROUP BY ALL)
        SELECT * FROM a FULL JOIN tracks t USING (day, partition, track_id, country, use)
        WHERE coalesce(a.uses, -1) != coalesce(t.uses, -2)""",
    # The closes row's totals against the rows.
    "closes row totals != the rows": """
        WITH t AS (SELECT day, partition, count(*) AS n, sum(uses) AS uses FROM tracks
                   GROUP BY ALL),
             h AS (SELECT day, partition, count(*) AS n, sum(weighted_micro) AS w
                   FROM holders GROUP BY ALL)
        SELECT c.day, c.partition FROM closes c
        LEFT JOIN t USING (day, partition) LEFT JOIN h USING (day, partition)
        WHERE c.tracks_rows != coalesce(t.n, 0) OR c.uses != coalesce(t.uses, 0)
           OR c.holders_rows != coalesce(h.n, 0) OR c.weighted_micro != coalesce(h.w, 0)""",
    "a (day, partition) closed more than once": """
        SELECT day, partition, count(*) FROM closes GROUP BY ALL HAVING count(*) > 1""",
}


@dataclass(slots=True)
class LedgerCheck:
    closed: int = 0                     # (day, partition) pairs closed
    rows: int = 0                       # count rows (tracks + holders + genres)
    uses: int = 0                       # sum of tracks.uses
    redis_days_compared: int = 0        # (day, partition) pairs checked against Redis
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_problems(url: str, redis_1d: Mapping[int, Mapping[CounterKey, int]] | None = None,
                    storage_options: Mapping[str, str] | None = None) -> LedgerCheck:
    """Check the ledger's invariants; with ``redis_1d`` ({partition: that partition's plain
    counters, as ``read_counters(..., partition=p)`` returns them}) also, per closed day and
    partition: tracks summed over countries = the day's ``t`` counters, holders summed over
    countries = the ``h`` counters, genres = the ``g`` counters."""
    check = LedgerCheck()
    con = _connect(url, storage_options)
    try:
        present = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        if not present:
            return check
        missing = set(TABLES) - present
        if missing:
            check.problems.append(f"tables missing: {sorted(missing)}")
            return check
        for name, sql in _INVARIANTS.items():
            bad = con.execute(sql).fetchall()
            if bad:
                check.problems.append(f"{name}: {len(bad)} rows, e.g. {bad[:3]}")
        check.closed = con.execute("SELECT count(*) FROM closes").fetchone()[0]
        check.rows = sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                         for t in ("tracks", "holders", "genres"))
        check.uses = con.execute("SELECT coalesce(sum(uses), 0) FROM tracks").fetchone()[0]
        pairs = con.execute("SELECT DISTINCT day, partition FROM closes").fetchall()
    finally:
        con.close()
    if redis_1d is not None:
        per_partition: dict[int, dict[CounterKey, int]] = {}
        for day, partition in pairs:
            if partition not in redis_1d:
                continue
            if partition not in per_partition:
                per_partition[partition] = ledger_counters(url, partition, storage_options)
            found = summed_over_countries(per_partition[partition], day_start_ms(day))
            want = {key: value for key, value in redis_1d[partition].items()
                    if key[1] == "1d" and key[2] == day_start_ms(day) and key[0] in (
                        "track", "holder", "genre")}
            check.redis_days_compared += 1
            if found != want:
                diff = sorted((k for k in found.keys() | want.keys()
                               if found.get(k, 0) != want.get(k, 0)), key=repr)
                check.problems.append(
                    f"{day} p{partition}: ledger summed over countries != Redis 1d counters "
                    f"in {len(diff)} keys, e.g. " + ", ".join(
                        f"{k}: ledger {found.get(k, 0)}, redis {want.get(k, 0)}"
                        for k in diff[:3]))
    return check


def summed_over_countries(rows: Mapping[CounterKey, int], start: int) -> dict[CounterKey, int]:
    """One day's ledger rows as the plain ``1d`` counter keys of ``read_counters``."""
    out: Counter[CounterKey] = Counter()
    for key, value in rows.items():
        if key[1] != start:
            continue
        if key[0] == "tracks":
            _, _, track, _country, use = key
            out[("track", "1d", start, track, use)] += value
        elif key[0] == "holders":
            _, _, holder, right, use, _country, measure = key
            out[("holder", "1d", start, holder, right, use, measure)] += value
        else:
            _, _, genre, origin, use, _country = key
            out[("genre", "1d", start, genre, origin, use)] += value
    return {key: value for key, value in out.items() if value}


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """What two runs of the same input must share: every table's rows (sorted) and the
    commits per (table, day, partition)."""

    rows: Mapping[str, tuple[tuple[Any, ...], ...]]
    commits: Mapping[tuple[str, str, str], int]
    columns: Mapping[str, tuple[str, ...]]

    def totals(self) -> dict[str, dict[str, int]]:
        """Per table its row count and the sums of its count columns."""
        out: dict[str, dict[str, int]] = {}
        for name, rows in self.rows.items():
            out[name] = {"rows": len(rows)}
            for at, column in enumerate(self.columns[name]):
                if column in _SUMMED:
                    out[name][column] = sum(int(row[at]) for row in rows)
        return out

    def differences(self, other: LedgerSnapshot) -> list[str]:
        problems = []
        for name in sorted(self.rows.keys() | other.rows.keys()):
            mine, theirs = self.rows.get(name, ()), other.rows.get(name, ())
            if mine != theirs:
                only_mine = Counter(mine) - Counter(theirs)
                only_theirs = Counter(theirs) - Counter(mine)
                problems.append(f"{name}: {len(mine)} vs {len(theirs)} rows; only here "
                                f"{len(only_mine)} (e.g. {list(only_mine)[:2]}), only there "
                                f"{len(only_theirs)} (e.g. {list(only_theirs)[:2]})")
        if self.commits != other.commits:
            problems.append(f"commits differ: {len(self.commits)} vs {len(other.commits)} "
                            "(table, day, partition) pairs")
        return problems


_SUMMED = ("uses", "weighted_micro", "share_micro")
# Columns that differ between two runs of the same input by design.
_RUN_COLUMNS = {"closes": ("code_version",)}


def ledger_snapshot(url: str, storage_options: Mapping[str, str] | None = None,
                    ignore: Iterable[str] = (), through: date | None = None) -> LedgerSnapshot:
    """Every table's rows, sorted, and the commit count per (table, day, partition) from
    the commits' ``streamer.day`` / ``streamer.partition`` metadata; with ``through``
    only the days up to it (two runs at different wall-clock times may seal a different
    number of idle days after the traffic)."""
    rows: dict[str, tuple[tuple[Any, ...], ...]] = {}
    names: dict[str, tuple[str, ...]] = {}
    commits: Counter[tuple[str, str, str]] = Counter()
    for name, table in _tables(url, storage_options).items():
        data = table.to_pyarrow_table()
        if through is not None:
            import pyarrow as pa
            import pyarrow.compute as pc

            data = data.filter(pc.less_equal(data["day"], pa.scalar(through, pa.date32())))
        columns = [c for c in data.column_names
                   if c not in _RUN_COLUMNS.get(name, ()) and c not in ignore]
        names[name] = tuple(columns)
        rows[name] = tuple(sorted((tuple(row[c] for c in columns)
                                   for row in data.select(columns).to_pylist()), key=repr))
        for entry in table.history():
            if "streamer.day" in entry and (through is None or date.fromisoformat(
                    str(entry["streamer.day"])) <= through):
                commits[(name, str(entry["streamer.day"]),
                         str(entry["streamer.partition"]))] += 1
    return LedgerSnapshot(rows, dict(commits), names)


def interrupted(url: str, storage_options: Mapping[str, str] | None = None
                ) -> set[tuple[str, str]]:
    """(day, partition) pairs with a commit in some table but no ``closes`` commit yet: a
    close cut between its table commits (finished by the next close of that day)."""
    started: set[tuple[str, str]] = set()
    finished: set[tuple[str, str]] = set()
    for name, table in _tables(url, storage_options).items():
        for entry in table.history():
            if "streamer.day" in entry:
                pair = (str(entry["streamer.day"]), str(entry["streamer.partition"]))
                (finished if name == "closes" else started).add(pair)
    return started - finished


def uncommitted_files(url: str) -> list[str]:
    """Parquet files of a local ledger that no commit references (written by a close
    that died before its commit, or lost a race): invisible to readers, ``vacuum``
    deletes them."""
    orphans = []
    for name, table in _tables(url).items():
        live = {os.path.normpath(uri.removeprefix("file://")) for uri in table.file_uris()}
        root = os.path.join(url, name)
        for folder, _, files in os.walk(root):
            orphans += [path for path in (os.path.normpath(os.path.join(folder, f))
                                          for f in files if f.endswith(".parquet"))
                        if path not in live]
    return sorted(orphans)
