"""The ledger's tables: names, explicit Arrow schemas, and the Delta settings they share.

Every table is partitioned by ``day`` (a UTC calendar day, Arrow ``date32``) and carries
the input ``partition`` (``int32``) that closed the rows. Counts are ``int64``: exact
integers, never floats. docs/LEDGER.md documents each column; change both together.
"""

from __future__ import annotations

from typing import Any, Final

import pyarrow as pa

DAY: Final = "day"
PARTITION: Final = "partition"

TRACKS: Final = "tracks"
HOLDERS: Final = "holders"
GENRES: Final = "genres"
CATALOG: Final = "catalog"
ATTRIBUTIONS: Final = "attributions"
CLOSES: Final = "closes"


def _fields(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    head: list[pa.Field[Any]] = [pa.field(DAY, pa.date32(), nullable=False),
                                 pa.field(PARTITION, pa.int32(), nullable=False)]
    return pa.schema(head + [pa.field(name, kind, nullable=nullable)
                             for name, kind, nullable in fields])


_STR = pa.string()
_I64 = pa.int64()

SCHEMAS: Final[dict[str, pa.Schema]] = {
    # Uses per track, country and use: what the track's 1d counters said, by territory.
    TRACKS: _fields(("track_id", _STR, False), ("country", _STR, False), ("use", _STR, False),
                    ("uses", _I64, False)),
    # Per holder and right: uses, and uses x micro-share (exact; a use weighs 1,000,000
    # per right over all holders, _unclaimed and _unattributed included).
    HOLDERS: _fields(("holder_id", _STR, False), ("right", _STR, False), ("use", _STR, False),
                     ("country", _STR, False), ("uses", _I64, False),
                     ("weighted_micro", _I64, False)),
    GENRES: _fields(("genre", _STR, False), ("ai_origin", _STR, False), ("use", _STR, False),
                    ("country", _STR, False), ("uses", _I64, False)),
    # One row per (track, catalog version, right, holder) that attributed the day's uses;
    # the unclaimed rest of a right is a row of its own, so the shares of one version and
    # right add up to exactly 1,000,000. title and isrc came later: last, so a table
    # created before them gains them by a schema merge in the same order (writer.py).
    CATALOG: _fields(("track_id", _STR, False), ("catalog_version", _STR, False),
                     ("genre", _STR, True), ("ai_origin", _STR, True), ("artist", _STR, True),
                     ("label", _STR, True), ("right", _STR, False), ("holder_id", _STR, False),
                     ("share_micro", _I64, False), ("title", _STR, True), ("isrc", _STR, True)),
    # Which catalog version attributed which uses.
    ATTRIBUTIONS: _fields(("track_id", _STR, False), ("country", _STR, False),
                          ("use", _STR, False), ("catalog_version", _STR, False),
                          ("uses", _I64, False)),
    # One row per closed (day, partition), committed last: the close is complete.
    CLOSES: _fields(("tracks_rows", _I64, False), ("holders_rows", _I64, False),
                    ("genres_rows", _I64, False), ("catalog_rows", _I64, False),
                    ("attributions_rows", _I64, False), ("uses", _I64, False),
                    ("weighted_micro", _I64, False), ("code_version", _STR, False),
                    ("settings", _STR, False)),
}

DATA_TABLES: Final = (CATALOG, ATTRIBUTIONS, TRACKS, HOLDERS, GENRES)
"""The order a close commits them in; ``closes`` comes after all of them."""

ALL_TABLES: Final = (*DATA_TABLES, CLOSES)

SORT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    TRACKS: ("track_id", "country", "use"),
    HOLDERS: ("holder_id", "right", "use", "country"),
    GENRES: ("genre", "ai_origin", "use", "country"),
    CATALOG: ("track_id", "catalog_version", "right", "holder_id"),
    ATTRIBUTIONS: ("track_id", "country", "use", "catalog_version"),
    CLOSES: (),
}
"""Each table's key within a (day, partition): rows are written sorted by it (files read
the same for the same input, and sort order helps Parquet's dictionary and run-length
encodings)."""

TABLE_CONFIGURATION: Final[dict[str, str | None]] = {
    # Closed days never change: no UPDATE, DELETE or MERGE (compaction still works).
    "delta.appendOnly": "true",
}
