"""What a report reads: the ledger's closed days of one period, at pinned table versions.

Every report is built from one snapshot: each Delta table opened at a version fixed when
the build starts (the latest, or the versions a previous output recorded, to rebuild it
with Delta time travel), and only the (day, partition) pairs that ``closes`` records, so
rows of an interrupted close (data tables ahead of ``closes``) are never read. A period
with a day that not every partition has closed is refused, naming the days, unless the
build is provisional. Live counters (Redis) are never read.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from streamer.ledger import schemas as s
from streamer.ledger.writer import LedgerLocation

TABLES = (s.CLOSES, s.ATTRIBUTIONS, s.CATALOG, s.TRACKS, s.HOLDERS)
"""The tables a report reads (and whose versions it records)."""
_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


class ReportInputError(ValueError):
    """Input a report cannot be built from; the message names the problem."""


class PeriodNotClosed(ReportInputError):
    def __init__(self, period: str, days: list[tuple[date, str, tuple[int, ...]]]) -> None:
        self.days = days
        shown = ", ".join(f"{day.isoformat()} {state}"
                          + (f" (partitions {','.join(map(str, missing))} missing)"
                             if state == "partial" else "")
                          for day, state, missing in days[:10])
        more = f" and {len(days) - 10} more" if len(days) > 10 else ""
        super().__init__(f"period {period} has days not closed by every partition: {shown}"
                         f"{more}; build with --provisional to report them anyway")


@dataclass(frozen=True, slots=True)
class Period:
    text: str
    first: date
    last: date

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.fullmatch(text)
        if not match:
            raise ReportInputError(f"--period: {text!r} is not a month YYYY-MM")
        year, month = int(match[1]), int(match[2])
        return cls(text, date(year, month, 1),
                   date(year, month, calendar.monthrange(year, month)[1]))

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A period of the ledger at fixed versions, ready for DuckDB (``connect``)."""

    location: LedgerLocation
    partitions: int
    period: Period
    versions: dict[str, int]
    committed_at: str
    """The newest commit time among the pinned versions (UTC, ISO 8601): the derived
    creation time of outputs, the same on every rebuild from these versions."""
    provisional: bool
    not_closed: tuple[tuple[date, str, tuple[int, ...]], ...]
    """Days of the period not closed by every partition (empty unless provisional)."""

    def manifest(self) -> dict[str, Any]:
        """What every output records about its input, enough to rebuild it."""
        return {"url": self.location.url, "partitions": self.partitions,
                "versions": dict(sorted(self.versions.items())),
                "committed_at": self.committed_at, "provisional": self.provisional,
                "days_not_closed": [day.isoformat() for day, _, _ in self.not_closed]}

    def connect(self, database: str = ":memory:",
                memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with views ``attributions``, ``catalog``, ``tracks`` and
        ``holders`` holding the period's closed rows only. ``database``: a file for the
        report's working tables (DuckDB keeps at most ``memory_limit`` of them in memory
        and spills the rest next to that file)."""
        con = duckdb.connect(database)
        if memory_limit:
            con.execute(f"SET memory_limit = '{_checked_limit(memory_limit)}'")
        if database != ":memory:":
            con.execute(f"SET temp_directory = '{database}.tmp'")
        first, last = self.period.first.isoformat(), self.period.last.isoformat()
        days = [(s.DAY, ">=", first), (s.DAY, "<=", last)]
        for name in TABLES:
            table = self.location.open(name, version=self.versions[name])
            # Only the period's files become dataset fragments (a ledger of years has many).
            con.register(f"{name}_all", table.to_pyarrow_dataset(file_pruning_predicate=days))
        con.execute(f"""CREATE TEMP TABLE closed AS SELECT DISTINCT day, partition
                        FROM {s.CLOSES}_all WHERE day BETWEEN DATE '{first}' AND DATE '{last}'
                        AND partition < {int(self.partitions)}""")
        for name in TABLES[1:]:
            con.execute(f"""CREATE TEMP VIEW {name} AS SELECT t.* FROM {name}_all t
                            SEMI JOIN closed USING (day, partition)
                            WHERE t.day BETWEEN DATE '{first}' AND DATE '{last}'""")
        return con


_LIMIT = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)")


def _checked_limit(text: str) -> str:
    if not _LIMIT.fullmatch(text.strip()):
        raise ReportInputError(f"memory limit {text!r}: expected a size such as 4GB")
    return text.strip()


def open_snapshot(location: LedgerLocation, partitions: int, period: Period,
                  provisional: bool = False,
                  versions: Mapping[str, int] | None = None) -> Snapshot:
    """Pin the tables (at ``versions``, default the latest) and check the period is
    closed. Raises ``PeriodNotClosed`` or ``ReportInputError``."""
    if partitions < 1:
        raise ReportInputError("partitions must be at least 1")
    pinned: dict[str, int] = {}
    committed = 0
    for name in TABLES:
        if not location.exists(name):
            raise ReportInputError(f"no ledger table {name!r} at {location.url}")
        wanted = None if versions is None else versions.get(name)
        if versions is not None and wanted is None:
            raise ReportInputError(f"--ledger-versions: no version for table {name}")
        try:
            table = location.open(name, version=wanted)
        except Exception as exc:  # deltalake raises several kinds for a missing version
            raise ReportInputError(f"ledger table {name} version {wanted}: {exc}") from None
        pinned[name] = table.version()
        committed = max(committed, _commit_time(location, name, pinned[name]))
    not_closed = _not_closed(location, pinned[s.CLOSES], partitions, period)
    if not_closed and not provisional:
        raise PeriodNotClosed(period.text, not_closed)
    # Without a commit time (log cleaned up): the day after the period, still derived.
    moment = (datetime.fromtimestamp(committed // 1000, UTC) if committed else
              datetime(period.last.year, period.last.month, period.last.day, tzinfo=UTC)
              + timedelta(days=1))
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Snapshot(location, partitions, period, pinned, stamp, provisional,
                    tuple(not_closed))


def _commit_time(location: LedgerLocation, name: str, version: int) -> int:
    """The commit time (epoch ms) of ``version``, read from the latest table's history
    (deltalake 1.x labels a time-travelled table's history with the wrong versions); 0
    if the log no longer has that commit."""
    for info in location.open(name).history():
        if info.get("version") == version:
            return int(info.get("timestamp", 0))
    return 0


def _not_closed(location: LedgerLocation, version: int, partitions: int,
                period: Period) -> list[tuple[date, str, tuple[int, ...]]]:
    con = duckdb.connect()
    con.register("closes", location.open(s.CLOSES, version=version).to_pyarrow_dataset())
    closed: dict[date, set[int]] = {}
    for day, partition in con.execute(
            "SELECT DISTINCT day, partition FROM closes WHERE day BETWEEN ? AND ? "
            "AND partition < ?", [period.first, period.last, partitions]).fetchall():
        closed.setdefault(day, set()).add(int(partition))
    everyone = set(range(partitions))
    result = []
    for day in period.days():
        missing = tuple(sorted(everyone - closed.get(day, set())))
        if missing:
            result.append((day, "open" if len(missing) == partitions else "partial", missing))
    return result


def parse_versions(text: str) -> dict[str, int]:
    """``--ledger-versions``: ``table=version,...`` (as a report's manifest lists them)."""
    versions: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, number = part.partition("=")
        if name not in TABLES or not number.isdigit():
            raise ReportInputError(f"--ledger-versions: {part!r} is not table=version with a "
                                   f"table among {', '.join(TABLES)}")
        versions[name] = int(number)
    return versions
