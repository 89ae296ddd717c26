"""Date-range answers from the ledger, in the shapes of the API's ``1d`` windows.

Synchronous on purpose: a query opens the Delta tables' latest snapshots and runs
DuckDB over their pyarrow datasets (the ``day`` partition filter is pushed down, so
only the range's files are read); the API runs these in a thread
(``asyncio.to_thread``), never on the event loop.

By default only *complete* days are summed: days that every partition has closed. A
day some partitions have not closed yet is still Redis' (it keeps a day's counters
until the day is in the ledger plus a grace), so the caller adds Redis' answer for the
days not in ``RangeAnswer.closed`` and the sum is the same whoever serves a day. With
``partial=True`` the closed partitions of the other days are summed too
(``RangeAnswer.cells``): Redis drops a partition's territory counters a grace after
that partition closed the day, whether or not the others have, so a caller that needs
them for a day one partition is late to close reads those partitions here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable

from streamer.ledger import schemas as s
from streamer.ledger.model import RIGHTS, USES
from streamer.ledger.writer import LedgerLocation

MAX_RANGE_DAYS = 400
AI_ORIGINS = ("human", "ai_assisted", "ai_generated")
DAY_MS = 86_400_000


class RangeError(ValueError):
    """A date range the ledger does not answer; ``parameter`` names the culprit."""

    def __init__(self, parameter: str, detail: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {detail}")


def check_range(first: date, last: date) -> None:
    if last < first:
        raise RangeError("to", f"{last.isoformat()} is before from {first.isoformat()}")
    days = (last - first).days + 1
    if days > MAX_RANGE_DAYS:
        raise RangeError("to", f"the range has {days} days, at most {MAX_RANGE_DAYS}")


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


@dataclass(frozen=True, slots=True)
class RangeAnswer:
    body: dict[str, Any]
    """The API body: key, ``from``, ``to``, ``start_ms``, ``end_ms``, ``closed_days``,
    the counts (``uses`` / ``rights`` / ``uses_by_origin``) over the closed days, and
    ``territories`` when asked for."""
    closed: tuple[date, ...] = field(default=())
    """The complete days; the others are Redis' (but for ``cells``)."""
    cells: tuple[tuple[date, int], ...] = field(default=())
    """Every (day, partition) summed: the complete days' and, with ``partial``, those
    of the days only some partitions closed."""


def _zero_uses() -> dict[str, int]:
    return dict.fromkeys(USES, 0)


def _zero_rights() -> dict[str, Any]:
    return {right: {"uses": _zero_uses(), "weighted_micro": _zero_uses()} for right in RIGHTS}


def _zero_origins() -> dict[str, dict[str, int]]:
    return {origin: _zero_uses() for origin in AI_ORIGINS}


class LedgerReader:
    """Range queries over the ledger; ``partitions`` is the input topics' partition count
    (a day is complete when that many partitions closed it)."""

    def __init__(self, location: LedgerLocation, partitions: int) -> None:
        self.location = location
        self.partitions = partitions

    def complete_days(self, first: date, last: date) -> tuple[date, ...]:
        """Days in [first, last] that every partition has closed."""
        return self._closed(first, last, False)[0]

    def _closed(self, first: date, last: date, partial: bool
                ) -> tuple[tuple[date, ...], tuple[tuple[date, int], ...]]:
        """The complete days in [first, last], and the (day, partition) cells to sum:
        the complete days' or, with ``partial``, every closed one."""
        if not self.location.exists(s.CLOSES):
            return (), ()
        con = duckdb.connect()
        con.register("closes", _dataset(self.location.open(s.CLOSES),
                                        [(s.DAY, ">=", first.isoformat()),
                                         (s.DAY, "<=", last.isoformat())]))
        rows = con.execute(
            "SELECT DISTINCT day, partition FROM closes WHERE day BETWEEN ? AND ? "
            "AND partition < ? ORDER BY day, partition",
            [first, last, self.partitions]).fetchall()
        by_day: dict[date, list[int]] = {}
        for day, partition in rows:
            by_day.setdefault(day, []).append(partition)
        complete = tuple(day for day, have in by_day.items() if len(have) == self.partitions)
        cells = tuple((day, p) for day, have in by_day.items()
                      if partial or len(have) == self.partitions for p in have)
        return complete, cells

    def _rows(self, table: str, key_column: str, key: str, columns: str,
              cells: tuple[tuple[date, int], ...]) -> list[tuple[Any, ...]]:
        if not cells:
            return []
        days = sorted({day for day, _ in cells})
        con = duckdb.connect()
        con.register("t", _dataset(self.location.open(table),
                                   [(s.DAY, "in", [day.isoformat() for day in days])]))
        con.register("d", pa.table({"day": pa.array([d for d, _ in cells], pa.date32()),
                                    "p": pa.array([p for _, p in cells], pa.int32())}))
        # Files of other days are not even listed (building a dataset's fragments costs
        # ~10 ms a file); DuckDB pushes the key filter to Parquet row-group statistics.
        sql = (f"SELECT {columns}, country, sum(uses)::HUGEINT"
               + (", sum(weighted_micro)::HUGEINT" if table == s.HOLDERS else "")
               + f" FROM t WHERE {key_column} = ? AND day BETWEEN ? AND ? "
               "AND partition < ? AND (day, partition) IN (SELECT (day, p) FROM d) "
               "GROUP BY ALL")
        return con.execute(sql, [key, days[0], days[-1], self.partitions]).fetchall()

    def _envelope(self, key_name: str, key: str, first: date, last: date,
                  closed: tuple[date, ...]) -> dict[str, Any]:
        check_range(first, last)
        return {key_name: key, "from": first.isoformat(), "to": last.isoformat(),
                "start_ms": day_start_ms(first), "end_ms": day_start_ms(last) + DAY_MS,
                "closed_days": len(closed)}

    def track_usage(self, track_id: str, first: date, last: date,
                    by_territory: bool = False, partial: bool = False) -> RangeAnswer:
        check_range(first, last)
        closed, cells = self._closed(first, last, partial)
        uses = _zero_uses()
        territories: dict[str, dict[str, int]] = {}
        for use, country, count in self._rows(s.TRACKS, "track_id", track_id, "use", cells):
            uses[use] += int(count)
            territories.setdefault(country, _zero_uses())[use] += int(count)
        body = {**self._envelope("track_id", track_id, first, last, closed), "uses": uses}
        if by_territory:
            body["territories"] = dict(sorted(territories.items()))
        return RangeAnswer(body, closed, cells)

    def holder_usage(self, holder_id: str, first: date, last: date,
                     by_territory: bool = False, partial: bool = False) -> RangeAnswer:
        check_range(first, last)
        closed, cells = self._closed(first, last, partial)
        rights = _zero_rights()
        territories: dict[str, dict[str, Any]] = {}
        for right, use, country, count, weight in self._rows(
                s.HOLDERS, "holder_id", holder_id, '"right", use', cells):
            for target in (rights, territories.setdefault(country, _zero_rights())):
                target[right]["uses"][use] += int(count)
                target[right]["weighted_micro"][use] += int(weight)
        body = {**self._envelope("holder_id", holder_id, first, last, closed), "rights": rights}
        if by_territory:
            body["territories"] = dict(sorted(territories.items()))
        return RangeAnswer(body, closed, cells)

    def genre_usage(self, genre: str, first: date, last: date,
                    by_territory: bool = False, partial: bool = False) -> RangeAnswer:
        check_range(first, last)
        closed, cells = self._closed(first, last, partial)
        by_origin = _zero_origins()
        territories: dict[str, dict[str, dict[str, int]]] = {}
        for origin, use, country, count in self._rows(s.GENRES, "genre", genre,
                                                      "ai_origin, use", cells):
            for target in (by_origin, territories.setdefault(country, _zero_origins())):
                target[origin][use] += int(count)
        body = {**self._envelope("genre", genre, first, last, closed),
                "uses_by_origin": by_origin}
        if by_territory:
            body["territories"] = dict(sorted(territories.items()))
        return RangeAnswer(body, closed, cells)


def _dataset(table: DeltaTable, days: list[tuple[str, str, Any]]) -> pads.Dataset:
    """The table's files of the given days only, as a pyarrow dataset."""
    return table.to_pyarrow_dataset(file_pruning_predicate=days)


def days_between(first: date, last: date) -> Iterable[date]:
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)
