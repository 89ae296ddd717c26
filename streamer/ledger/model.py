"""One closed (day, partition): the catalog versions and the uses each attributed.

The pipeline hands the ledger two things per closed day and partition: which catalog
version of which track attributed how many uses per country and use (``attributions``),
and those versions' entries (``CatalogEntry``). Everything else the ledger holds, the
track, holder and genre counts, is derived from them here with the counting rules of
pipeline/attribution.py (exact integer micro-shares, ``_unclaimed``, ``_unattributed``),
so per-holder figures and per-track allocations can always be rebuilt from the ledger
alone, and the three count tables agree with the attributions by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from streamer.events.shares import MICRO
from streamer.events.track_meta import UNATTRIBUTED_VERSION, catalog_version
from streamer.ledger import schemas as s

USES = ("create", "play")
RIGHTS = ("master", "publishing")
UNCLAIMED = "_unclaimed"
UNATTRIBUTED = UNATTRIBUTED_VERSION
"""The holder of uses whose track never got metadata, and their catalog version."""

EPOCH = date(1970, 1, 1)


class LedgerInputError(ValueError):
    """The rows handed to the ledger break its rules; the message names the problem."""


def day_number(day: date) -> int:
    """Days since 1970-01-01: the Delta transaction version of a day's close."""
    return day.toordinal() - EPOCH.toordinal()


def day_of_number(number: int) -> date:
    return date.fromordinal(EPOCH.toordinal() + number)


Shares = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A track's catalog entry as it attributed uses: metadata and exact micro-shares."""

    track_id: str
    genre: str | None
    ai_origin: str | None
    master: Shares
    publishing: Shares
    artist: str | None = None
    label: str | None = None
    title: str | None = None
    isrc: str | None = None
    version: str = field(init=False, compare=False)
    """A content hash (16 hex digits of SHA-256 of the entry): the same entry always gets
    the same version, so a re-run of the same input writes the same rows."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", catalog_version(
            self.genre, self.ai_origin, self.artist, self.label, self.master,
            self.publishing, self.title, self.isrc))

    @classmethod
    def from_json(cls, track_id: str, data: bytes | str) -> CatalogEntry:
        """From the pipeline's entry JSON (``pipeline.attribution.plan_version``): genre,
        ai_origin, master, publishing, and the report names it carries."""
        entry = orjson.loads(data)
        return cls(track_id, entry["genre"], entry["ai_origin"],
                   tuple((holder, micro) for holder, micro in entry["master"]),
                   tuple((holder, micro) for holder, micro in entry["publishing"]),
                   entry.get("artist"), entry.get("label"), entry.get("title"),
                   entry.get("isrc"))

    @classmethod
    def unattributed(cls, track_id: str) -> CatalogEntry:
        whole = ((UNATTRIBUTED, MICRO),)
        return cls(track_id, None, None, whole, whole)

    @classmethod
    def from_track_meta(cls, track_id: str, meta: Any) -> CatalogEntry:
        """From the pipeline's ``TrackMeta``."""
        return cls(track_id, meta.genre, meta.ai_origin, tuple(meta.master),
                   tuple(meta.publishing), meta.artist, meta.label, meta.title, meta.isrc)

    def allocation(self, right: str) -> Shares:
        """The right's holders with the unclaimed rest: micro-shares adding up to MICRO."""
        shares = self.master if right == "master" else self.publishing
        claimed = sum(micro for _, micro in shares)
        return (*shares, (UNCLAIMED, MICRO - claimed)) if claimed < MICRO else shares


AttributionKey = tuple[str, str, str, str]
"""(track_id, country, use, catalog_version)"""


@dataclass(frozen=True, slots=True)
class DayPartition:
    """The closed rows of one day and partition, checked, as Arrow tables of the ledger's
    schemas (``catalog`` and ``attributions``; the counts come from ``derive_counts``)."""

    day: date
    partition: int
    catalog: pa.Table
    attributions: pa.Table

    @classmethod
    def from_mappings(cls, day: date, partition: int,
                      attributions: Mapping[AttributionKey, int],
                      entries: Iterable[CatalogEntry]) -> DayPartition:
        """From Python mappings: uses per (track, country, use, version), and the entries
        those versions name (``UNATTRIBUTED`` needs none)."""
        keys = sorted(attributions)
        columns = list(zip(*keys, strict=True)) if keys else [(), (), (), ()]
        table = pa.table({
            "track_id": pa.array(columns[0], pa.string()),
            "country": pa.array(columns[1], pa.string()),
            "use": pa.array(columns[2], pa.string()),
            "catalog_version": pa.array(columns[3], pa.string()),
            "uses": pa.array([attributions[key] for key in keys], pa.int64()),
        })
        return cls.from_arrow(day, partition, table, catalog_rows(entries))

    @classmethod
    def from_arrow(cls, day: date, partition: int, attributions: pa.Table,
                   catalog: pa.Table) -> DayPartition:
        """From columnar input (``attributions``: track_id, country, use, catalog_version,
        uses; ``catalog``: the catalog schema without day and partition). Entries no
        attribution names are left out; ``_unattributed`` entries are added."""
        if not 0 <= partition < 2**31:
            raise LedgerInputError(f"partition {partition} out of range")
        attributions = _with_day(attributions, s.ATTRIBUTIONS, day, partition)
        catalog = _with_day(catalog, s.CATALOG, day, partition)
        attributions, catalog = _checked(attributions, catalog, day, partition)
        return cls(day, partition, catalog, attributions)

    @property
    def uses(self) -> int:
        return int(pc.sum(self.attributions["uses"]).as_py() or 0)


def catalog_rows(entries: Iterable[CatalogEntry]) -> pa.Table:
    """Catalog entries as rows (one per right and holder, the unclaimed rest included)."""
    rows: dict[str, list[Any]] = {name: [] for name in s.SCHEMAS[s.CATALOG].names[2:]}
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        version = entry.version
        if (entry.track_id, version) in seen:
            continue
        seen.add((entry.track_id, version))
        for right in RIGHTS:
            for holder, micro in entry.allocation(right):
                for name, value in (("track_id", entry.track_id), ("catalog_version", version),
                                    ("genre", entry.genre), ("ai_origin", entry.ai_origin),
                                    ("artist", entry.artist), ("label", entry.label),
                                    ("right", right), ("holder_id", holder),
                                    ("share_micro", micro), ("title", entry.title),
                                    ("isrc", entry.isrc)):
                    rows[name].append(value)
    schema = pa.schema(list(s.SCHEMAS[s.CATALOG])[2:])
    return pa.table(rows, schema=schema)


def _with_day(table: pa.Table, name: str, day: date, partition: int) -> pa.Table:
    schema = s.SCHEMAS[name]
    missing = [f for f in schema.names[2:] if f not in table.column_names]
    if missing:
        raise LedgerInputError(f"{name}: missing columns {', '.join(missing)}")
    columns: list[pa.Array[Any] | pa.ChunkedArray[Any]] = [
        pa.array([day] * table.num_rows, pa.date32()),
        pa.array([partition] * table.num_rows, pa.int32())]
    try:
        columns += [table[f.name].cast(f.type) for f in list(schema)[2:]]
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LedgerInputError(f"{name}: {exc}") from None


def _checked(attributions: pa.Table, catalog: pa.Table, day: date,
             partition: int) -> tuple[pa.Table, pa.Table]:
    where = f"day {day.isoformat()} partition {partition}"
    if attributions.num_rows and pc.min(attributions["uses"]).as_py() <= 0:
        raise LedgerInputError(f"{where}: attributions with uses <= 0")
    if pc.all(pc.is_in(attributions["use"], pa.array(USES))).as_py() is False:
        raise LedgerInputError(f"{where}: a use other than {', '.join(USES)}")
    country_ok = pc.match_substring_regex(attributions["country"], r"^[A-Z]{2}$")
    if pc.all(country_ok).as_py() is False:
        raise LedgerInputError(f"{where}: a country that is not two capital letters")
    if pc.all(pc.is_in(catalog["right"], pa.array(RIGHTS))).as_py() is False:
        raise LedgerInputError(f"{where}: a right other than {', '.join(RIGHTS)}")
    con = duckdb.connect()
    con.register("a", attributions)
    con.register("c", catalog)
    duplicate = _first_row(con.execute(
        "SELECT track_id, country, use, catalog_version FROM a "
        "GROUP BY ALL HAVING count(*) > 1 LIMIT 1"))
    if duplicate:
        raise LedgerInputError(f"{where}: attribution {duplicate} listed twice")
    unattributed = con.sql(
        "SELECT DISTINCT track_id FROM a WHERE catalog_version = ? ORDER BY 1",
        params=[UNATTRIBUTED]).to_arrow_table()
    entries = catalog_rows(CatalogEntry.unattributed(track)
                           for track in unattributed["track_id"].to_pylist())
    con.register("u", _with_day(entries, s.CATALOG, day, partition))
    # Only the versions that attributed uses, each (track, version, right, holder) once.
    catalog = con.sql(
        "SELECT * FROM (SELECT * FROM c WHERE catalog_version <> ? UNION ALL SELECT * FROM u) "
        "WHERE (track_id, catalog_version) IN (SELECT track_id, catalog_version FROM a) "
        "ORDER BY track_id, catalog_version, \"right\", holder_id", params=[UNATTRIBUTED]
    ).to_arrow_table().cast(s.SCHEMAS[s.CATALOG])
    con.register("k", catalog)
    problem = _first_row(con.execute(
        "SELECT track_id, catalog_version, \"right\", sum(share_micro), count(*), "
        "count(DISTINCT holder_id), min(share_micro), "
        "count(DISTINCT (genre, ai_origin, artist, label, title, isrc)) FROM k GROUP BY ALL "
        "HAVING sum(share_micro) <> ? OR count(*) <> count(DISTINCT holder_id) "
        "OR min(share_micro) <= 0 "
        "OR count(DISTINCT (genre, ai_origin, artist, label, title, isrc)) > 1 "
        "LIMIT 1", [MICRO]))
    if problem:
        raise LedgerInputError(
            f"{where}: catalog entry {problem[0]} version {problem[1]} {problem[2]}: shares "
            f"must be positive, one per holder and add up to {MICRO} (got {problem[3]}), "
            "with one set of metadata")
    rights = _first_row(con.execute(
        "SELECT track_id, catalog_version FROM k GROUP BY ALL "
        "HAVING count(DISTINCT \"right\") <> 2 LIMIT 1"))
    if rights:
        raise LedgerInputError(f"{where}: catalog entry {rights[0]} version {rights[1]} "
                               "lacks a right")
    orphan = _first_row(con.execute(
        "SELECT track_id, catalog_version FROM a WHERE (track_id, catalog_version) NOT IN "
        "(SELECT track_id, catalog_version FROM k) LIMIT 1"))
    if orphan:
        raise LedgerInputError(f"{where}: no catalog entry for track {orphan[0]} "
                               f"version {orphan[1]}")
    ordered = con.sql("SELECT * FROM a ORDER BY track_id, country, use, catalog_version"
                          ).to_arrow_table().cast(s.SCHEMAS[s.ATTRIBUTIONS])
    return ordered, catalog


def _first_row(result: duckdb.DuckDBPyConnection) -> Any:
    rows = result.fetchall()
    return rows[0] if rows else None


_DERIVE = {
    s.TRACKS: """
        SELECT day, partition, track_id, country, use, sum(uses)::BIGINT AS uses
        FROM a GROUP BY ALL ORDER BY track_id, country, use""",
    s.HOLDERS: """
        SELECT a.day, a.partition, k.holder_id, k."right", a.use, a.country,
               sum(a.uses)::BIGINT AS uses,
               sum(a.uses * k.share_micro)::BIGINT AS weighted_micro
        FROM a JOIN k USING (track_id, catalog_version)
        GROUP BY ALL ORDER BY holder_id, "right", use, country""",
    s.GENRES: """
        SELECT a.day, a.partition, v.genre, v.ai_origin, a.use, a.country,
               sum(a.uses)::BIGINT AS uses
        FROM a JOIN (SELECT DISTINCT track_id, catalog_version, genre, ai_origin FROM k
                     WHERE genre IS NOT NULL) v USING (track_id, catalog_version)
        GROUP BY ALL ORDER BY genre, ai_origin, use, country""",
}


def derive_counts(closed: DayPartition) -> dict[str, pa.Table]:
    """The track, holder and genre rows of a closed day and partition, in exact int64
    arithmetic (DuckDB raises on an overflow rather than wrapping)."""
    con = duckdb.connect()
    con.register("a", closed.attributions)
    con.register("k", closed.catalog)
    return {name: con.sql(sql).to_arrow_table().cast(s.SCHEMAS[name])
            for name, sql in _DERIVE.items()}


def totals_of(name: str, table: pa.Table) -> dict[str, int]:
    """What a commit records about its rows: the row count and the sums of its counts."""
    totals = {"rows": table.num_rows}
    for column in ("uses", "weighted_micro", "share_micro"):
        if column in table.column_names:
            totals[column] = int(pc.sum(table[column]).as_py() or 0)
    if name in (s.TRACKS, s.ATTRIBUTIONS, s.HOLDERS, s.GENRES):
        for use in USES:
            chosen = table.filter(pc.equal(table["use"], pa.scalar(use)))
            totals[f"uses_{use}"] = int(pc.sum(chosen["uses"]).as_py() or 0)
    return totals


def sorted_rows(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    return table.sort_by([(key, "ascending") for key in keys]) if keys else table
