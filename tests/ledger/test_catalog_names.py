"""Report names (title, ISRC, artist, label) from a TrackCreated to the ledger's catalog
rows, and a catalog table created before title and isrc existed."""

from __future__ import annotations

import hashlib
from datetime import date

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from streamer.events.validation import parse_track_created
from streamer.ledger import CatalogEntry, LedgerLocation, LedgerWriter
from streamer.ledger import schemas as s
from streamer.ledger.model import day_number
from streamer.ledger.writer import app_id
from streamer.pipeline.attribution import plan_for, plan_version
from streamer.pipeline.day_closing import day_partition

D1 = date(2026, 11, 1)
NAMES = {"title": "Tab\there | pipe \\ backslash", "isrc": "USQX91300108",
         "artist": "Daft Punk feat. Pharrell Williams", "label": "Columbia"}


def track(track_id: str, **names: str) -> dict[str, object]:
    return {"event_id": f"e-{track_id}", "track_id": track_id, "occurred_at": 1,
            "creator_id": "c", "genre": "pop", "ai_origin": "human",
            "rights": [{"holder_id": "lbl", "right": "master", "share": "0.75"},
                       {"holder_id": "pub", "right": "publishing", "share": 1}], **names}


def redis_day(*events: dict[str, object]) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """What the flusher leaves in Redis for a day (``a`` and ``av``): 3 plays in DE per
    track, attributed by the plan of its TrackCreated."""
    attributions, entries = {}, {}
    for event in events:
        _, track_id, _, meta = parse_track_created(event)
        version, text = plan_version(plan_for(meta))
        attributions[f"{track_id}|DE|play|{version}".encode()] = b"3"
        entries[f"{track_id}|{version}".encode()] = text.encode()
    return attributions, entries


def catalog_rows(location: LedgerLocation) -> list[dict[str, object]]:
    table = location.open(s.CATALOG).to_pyarrow_table()
    return sorted(table.to_pylist(), key=lambda row: (row["track_id"], row["right"],
                                                      row["holder_id"]))


def test_a_closed_days_catalog_rows_carry_the_report_names(
        location: LedgerLocation, writer: LedgerWriter) -> None:
    attributions, entries = redis_day(track("trk-named", **NAMES), track("trk-plain"))
    writer.close(day_partition(D1, 0, attributions, entries))
    rows = catalog_rows(location)
    named = [row for row in rows if row["track_id"] == "trk-named"]
    plain = [row for row in rows if row["track_id"] == "trk-plain"]
    # master: lbl and _unclaimed; publishing: pub
    assert len(named) == len(plain) == 3
    for row in named:
        assert {name: row[name] for name in NAMES} == NAMES
    for row in plain:
        assert [row[name] for name in NAMES] == [None] * 4
    # The version the pipeline recorded is the ledger's own content hash of the entry.
    _, _, _, meta = parse_track_created(track("trk-named", **NAMES))
    assert {row["catalog_version"] for row in named} == {
        CatalogEntry.from_track_meta("trk-named", meta).version}
    assert {row["catalog_version"] for row in named}.isdisjoint(
        row["catalog_version"] for row in plain)


def test_names_make_a_new_version_and_no_names_keep_the_old_one() -> None:
    """Versions recorded in Redis by code before title and isrc existed still match."""
    shares = ((("lbl", 750_000),), (("pub", 1_000_000),))
    old = CatalogEntry("t", "pop", "human", *shares, artist="A", label=None)
    canonical = orjson.dumps(["pop", "human", "A", None, [["lbl", 750_000]],
                              [["pub", 1_000_000]]])
    assert old.version == hashlib.sha256(canonical).hexdigest()[:16]
    titled = CatalogEntry("t", "pop", "human", *shares, artist="A", title="Song")
    with_isrc = CatalogEntry("t", "pop", "human", *shares, artist="A", isrc="USQX91300108")
    assert len({old.version, titled.version, with_isrc.version}) == 3


def test_a_catalog_table_from_before_title_and_isrc_gains_them(
        location: LedgerLocation, writer: LedgerWriter) -> None:
    old_schema = pa.schema([f for f in s.SCHEMAS[s.CATALOG] if f.name not in ("title", "isrc")])
    DeltaTable.create(location.table_uri(s.CATALOG), old_schema, partition_by=[s.DAY],
                      configuration=s.TABLE_CONFIGURATION)
    # A day of partition 1 closed by the older code: rows without the two columns.
    attributions, entries = redis_day(track("trk-old", artist="Old Artist"))
    older = day_partition(D1, 1, attributions, entries).catalog.select(old_schema.names)
    write_deltalake(location.table_uri(s.CATALOG), older, mode="append",
                    commit_properties=CommitProperties(app_transactions=[
                        Transaction(app_id(1), day_number(D1))]))
    attributions, entries = redis_day(track("trk-new", **NAMES))
    writer.close(day_partition(D1, 0, attributions, entries))
    table = location.open(s.CATALOG)
    # Columns are read by name: a merge may order them otherwise than a new table.
    assert sorted(f.name for f in table.schema().fields) == sorted(s.SCHEMAS[s.CATALOG].names)
    rows = catalog_rows(location)
    assert {row["track_id"] for row in rows} == {"trk-old", "trk-new"}
    for row in rows:
        if row["track_id"] == "trk-old":
            assert (row["artist"], row["title"], row["isrc"]) == ("Old Artist", None, None)
        else:
            assert {name: row[name] for name in NAMES} == NAMES
    titles = table.to_pyarrow_dataset().to_table(columns=["title"])["title"]
    assert pc.count(titles, mode="only_null").as_py() == 3
