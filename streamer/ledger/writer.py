"""Appending a closed (day, partition) to the ledger exactly once per table.

Each table is a Delta table; a close appends one commit per table, the data tables
first and ``closes`` last. Every commit carries a Delta *application transaction*
(``txn`` action) with app id ``streamer.ledger.p<partition>`` and version = the day's
number (days since 1970-01-01), the mechanism Spark's streaming sinks use:

* A commit is atomic (the log entry ``_delta_log/N.json`` appears whole, by a
  rename that refuses to replace, or not at all), so a crash never leaves a commit
  half visible: Parquet files written before a crash are in no commit and no reader
  sees them (vacuum removes them, docs/LEDGER.md).
* Before writing a table, the close reads the partition's transaction version in that
  table; at or past the day, the table already holds the day: nothing is written and
  no file changes. A crash between two tables' commits is finished by the next close
  of the same day, which finds the first tables done and commits the rest.
* Two writers closing the same day at once (a worker and a rebalanced-away zombie):
  both read a version below the day, both write; the first commit wins, and Delta's
  conflict check fails the second because the winning commit carries a ``txn`` with the
  same app id (delta-rs: ``ConcurrentTransaction``). The loser re-reads the version,
  sees the day, and reports it already closed. The check needs the commit's read
  snapshot to be the one whose version was read, so the same ``DeltaTable`` object is
  used for both.
* The version is one number per app id, a high-water mark, so it tells "this day was
  committed" only if days are committed in increasing order per partition. The close
  enforces that: day D of partition p is accepted only if ``closes`` holds D - 1 for p
  (or p has closed nothing yet: its first day). Every table gets a commit for every
  closed day, empty or not, so in every table the txn versions of p are exactly its
  closed days in order, and a table's version is at most one day ahead of ``closes``.
  A day at or before the last closed one is already closed if ``closes`` has its row,
  else it predates the partition's first close and can no longer be closed
  (``DayNotClosable``); a day past the next one is a gap (``DayGap``): the caller
  closes the days in between first (idle days close with no rows).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, cast

import deltalake
import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from streamer.build_info import build_info
from streamer.ledger import schemas as s
from streamer.ledger.model import DayPartition, day_number, day_of_number, derive_counts, totals_of

META_PREFIX = "streamer."
# Row groups of 32,768 rows: a file's rows are sorted by the table's key, so a query for
# one holder or track reads the row groups whose min/max statistics can hold it. With
# delta-rs' default (one group per file here), a holder's day on the 20M-use benchmark
# took 4.6 s; with 32,768, 0.19 s, for the same bytes.
_WRITER_PROPERTIES = WriterProperties(compression="ZSTD", compression_level=3,
                                      max_row_group_size=32_768)


def app_id(partition: int) -> str:
    """The Delta application id of a partition's closes (the same in every table)."""
    return f"streamer.ledger.p{partition}"


class LedgerOrderError(Exception):
    """A day that cannot be closed now; the message says which day comes first."""


class DayGap(LedgerOrderError):
    def __init__(self, partition: int, first_missing: date, day: date) -> None:
        self.partition = partition
        self.first_missing = first_missing
        self.day = day
        super().__init__(f"partition {partition}: cannot close {day.isoformat()} before "
                         f"{first_missing.isoformat()} (days close in order; close the "
                         "days in between first)")


class DayNotClosable(LedgerOrderError):
    def __init__(self, partition: int, day: date, first_closed: date | None) -> None:
        self.partition = partition
        self.day = day
        first = first_closed.isoformat() if first_closed else "?"
        super().__init__(f"partition {partition}: {day.isoformat()} is before the "
                         f"partition's first closed day {first} and can no longer be closed")


class LedgerInconsistent(Exception):
    """A table's transaction version is ahead of what the close order allows."""


@dataclass(frozen=True, slots=True)
class LedgerLocation:
    """Where the tables live: ``<url>/<table>``, a local folder or an object store URL
    (``s3://bucket/prefix``, ``az://``, ``gs://``) with deltalake storage options."""

    url: str
    storage_options: Mapping[str, str] | None = field(default=None, repr=False)

    def table_uri(self, name: str) -> str:
        return f"{self.url.rstrip('/')}/{name}"

    def options(self) -> dict[str, str] | None:
        return dict(self.storage_options) if self.storage_options else None

    def open(self, name: str, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.table_uri(name), version=version, storage_options=self.options())

    def exists(self, name: str) -> bool:
        return bool(DeltaTable.is_deltatable(self.table_uri(name), self.options()))

    def create_tables(self) -> None:
        """Create missing tables (empty, partitioned by day); safe to race."""
        for name in s.ALL_TABLES:
            if self.exists(name):
                continue
            try:
                DeltaTable.create(self.table_uri(name), s.SCHEMAS[name], mode="ignore",
                                  partition_by=[s.DAY], name=f"streamer_{name}",
                                  configuration=s.TABLE_CONFIGURATION,
                                  storage_options=self.options())
            except Exception:
                if not self.exists(name):  # another process created it first: fine
                    raise


@dataclass(frozen=True, slots=True)
class CloseResult:
    day: date
    partition: int
    committed: tuple[str, ...]
    """Tables this call committed to; empty when the day was already closed."""
    already: tuple[str, ...]
    """Tables that already held the day (a retry, or another writer was first)."""


class LedgerWriter:
    """Closes days into the ledger. ``count_settings`` are the settings that shape counts
    (allowed lateness, dedupe horizon, windows, ...), recorded in every commit."""

    def __init__(self, location: LedgerLocation, count_settings: Mapping[str, object],
                 code_version: str | None = None) -> None:
        self.location = location
        self.code_version = code_version or _code_version()
        self.settings_json = orjson.dumps(dict(count_settings),
                                          option=orjson.OPT_SORT_KEYS).decode()
        self._created = False

    def last_closed_day(self, partition: int) -> date | None:
        self._ensure_tables()
        version = self.location.open(s.CLOSES).transaction_version(app_id(partition))
        return None if version is None else day_of_number(version)

    def close(self, closed: DayPartition) -> CloseResult:
        """Append the day's rows to every table, each exactly once (see the module doc)."""
        self._ensure_tables()
        day, partition = closed.day, closed.partition
        number = day_number(day)
        closes = self.location.open(s.CLOSES)
        last = closes.transaction_version(app_id(partition))
        if last is None and _has_close(closes, day, partition):
            # Transaction ids expired (delta.setTransactionRetentionDuration): the rows
            # still say the day is closed.
            raise LedgerInconsistent(f"partition {partition}: {day.isoformat()} is in "
                                     "closes but its transaction id is gone; do not set "
                                     "delta.setTransactionRetentionDuration")
        if last is not None and number <= last:
            if _has_close(closes, day, partition):
                return CloseResult(day, partition, (), s.ALL_TABLES)
            raise DayNotClosable(partition, day, first_closed_day(closes, partition))
        if last is not None and number > last + 1:
            raise DayGap(partition, day_of_number(last + 1), day)
        tables = {s.CATALOG: closed.catalog, s.ATTRIBUTIONS: closed.attributions,
                  **derive_counts(closed)}
        totals = {name: totals_of(name, table) for name, table in tables.items()}
        fingerprint = _fingerprint(closed)
        committed: list[str] = []
        already: list[str] = []
        for name in s.DATA_TABLES:
            done = self._commit_once(name, tables[name], closed, totals[name], fingerprint)
            (committed if done else already).append(name)
        row = _close_row(closed, totals, self.code_version, self.settings_json)
        done = self._commit_once(s.CLOSES, row, closed, {"rows": 1, "tables": totals},
                                 fingerprint)
        (committed if done else already).append(s.CLOSES)
        return CloseResult(day, partition, tuple(committed), tuple(already))

    def _ensure_tables(self) -> None:
        if not self._created:
            self.location.create_tables()
            self._created = True

    def _commit_once(self, name: str, rows: pa.Table, closed: DayPartition,
                     totals: Mapping[str, Any], fingerprint: str) -> bool:
        number = day_number(closed.day)
        app = app_id(closed.partition)
        table = self.location.open(name)
        version = table.transaction_version(app)
        if version is not None and version >= number:
            if version > number:
                raise LedgerInconsistent(
                    f"{name}: partition {closed.partition} holds "
                    f"{day_of_number(version).isoformat()}, after "
                    f"{closed.day.isoformat()} which closes has not")
            return False
        metadata = {
            f"{META_PREFIX}table": name,
            f"{META_PREFIX}day": closed.day.isoformat(),
            f"{META_PREFIX}partition": str(closed.partition),
            f"{META_PREFIX}rows": str(rows.num_rows),
            f"{META_PREFIX}totals": orjson.dumps(totals, option=orjson.OPT_SORT_KEYS).decode(),
            f"{META_PREFIX}code_version": self.code_version,
            f"{META_PREFIX}settings": self.settings_json,
            f"{META_PREFIX}input_sha256": fingerprint,
        }
        properties = CommitProperties(
            custom_metadata=metadata,
            app_transactions=[Transaction(app, number, int(time.time() * 1000))])
        # A table created before a column existed (catalog: title, isrc) gains it by a
        # schema merge in this same commit; its older files read the column as null.
        known = {column.name for column in table.schema().fields}
        evolve: Literal["merge"] | None = (
            "merge" if not known.issuperset(rows.column_names) else None)
        try:
            # The same DeltaTable whose version was read: its snapshot is the commit's
            # read version, so a concurrent commit of this day conflicts.
            write_deltalake(table, rows, mode="append", commit_properties=properties,
                            writer_properties=_WRITER_PROPERTIES, schema_mode=evolve)
        except CommitFailedError:
            again = self.location.open(name).transaction_version(app)
            if again is not None and again >= number:
                return False  # another writer committed the day first
            raise
        return True


def _code_version() -> str:
    info = build_info()
    return (f"streamer {info['version']} (commit {info['commit']}; deltalake "
            f"{deltalake.__version__}, duckdb {duckdb.__version__})")


def _has_close(closes: DeltaTable, day: date, partition: int) -> bool:
    dataset = closes.to_pyarrow_dataset()
    found = dataset.to_table(columns=[s.PARTITION],
                             filter=(pads.field(s.DAY) == pa.scalar(day, pa.date32()))
                             & (pads.field(s.PARTITION) == partition))
    return bool(found.num_rows)


def first_closed_day(closes: DeltaTable, partition: int) -> date | None:
    days = [day for day in closes.to_pyarrow_dataset().to_table(
        columns=[s.DAY], filter=pads.field(s.PARTITION) == partition)[s.DAY].to_pylist()
        if isinstance(day, date)]
    return min(days) if days else None


def _close_row(closed: DayPartition, totals: Mapping[str, Mapping[str, int]],
               code_version: str, settings_json: str) -> pa.Table:
    values: dict[str, Any] = {
        s.DAY: [closed.day], s.PARTITION: [closed.partition],
        **{f"{name}_rows": [totals[name]["rows"]] for name in s.DATA_TABLES},
        "uses": [totals[s.TRACKS]["uses"]],
        "weighted_micro": [totals[s.HOLDERS]["weighted_micro"]],
        "code_version": [code_version], "settings": [settings_json],
    }
    return pa.table(values, schema=s.SCHEMAS[s.CLOSES])


def _fingerprint(closed: DayPartition) -> str:
    """SHA-256 of the close's input rows (sorted, so the same input gives the same hash):
    recorded in each table's commit, so ``verify`` can tell that all tables of a day were
    written from one input, even if a retry came from a different one."""
    digest = hashlib.sha256()
    for table in (closed.attributions, closed.catalog):
        digest.update(str(table.num_rows).encode())
        for column in table.columns:
            _digest_column(digest, column.combine_chunks())
    return digest.hexdigest()


def _digest_column(digest: Any, array: pa.Array[Any]) -> None:
    """Feed a column's values (not its memory layout) to ``digest``: the null mask, then
    fixed-width values, or a string column's offsets from 0 and the bytes they span."""
    start, length = array.offset, len(array)
    digest.update(np.asarray(array.is_null()).tobytes())
    if not length:
        return
    # pyarrow Buffers support the buffer protocol (the stubs do not say so).
    buffers = [cast(bytes, buffer) for buffer in array.buffers()]
    if pa.types.is_string(array.type):
        offsets = np.frombuffer(buffers[1], np.int32)[start:start + length + 1]
        digest.update((offsets - offsets[0]).tobytes())
        if buffers[2] is not None:
            digest.update(memoryview(buffers[2])[int(offsets[0]):int(offsets[-1])])
    else:
        width = array.type.bit_width // 8
        data = memoryview(buffers[1])[start * width:(start + length) * width]
        # Null slots may hold anything: zero them (the mask above says where they were).
        values = np.frombuffer(data, np.uint8).reshape(length, width).copy()
        values[np.asarray(array.is_null())] = 0
        digest.update(values.tobytes())


__all__ = ["CloseResult", "DayGap", "DayNotClosable", "LedgerInconsistent", "LedgerLocation",
           "LedgerOrderError", "LedgerWriter", "TableNotFoundError", "app_id"]
