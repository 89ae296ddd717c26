"""TrackMeta's catalog entry: a round trip with and without the report names, entries
written before they existed, and what the names change (the ledger version, no count)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from streamer.events.track_meta import REPORT_FIELDS, TrackMeta
from streamer.ledger import CatalogEntry
from streamer.pipeline.attribution import add_attribution, build_plan, plan_version

SHARES = ((("lbl", 750_000),), (("pub-1", 500_000), ("pub-2", 500_000)))
NAMES = {"title": "Tab\there | pipe \\ \u266b", "isrc": "USQX91300108",
         "artist": "Daft Punk feat. Pharrell Williams", "label": "Columbia"}


def test_an_entry_without_names_is_what_it_was_before_they_existed() -> None:
    meta = TrackMeta("pop", "human", *SHARES)
    # The pre-names format, written independently: four one-letter keys, nothing more.
    old = orjson.dumps({"g": "pop", "o": "human", "m": [["lbl", 750_000]],
                        "p": [["pub-1", 500_000], ["pub-2", 500_000]]})
    assert meta.to_json() == old
    decoded = TrackMeta.from_json(old)
    assert decoded == meta
    assert [getattr(decoded, name) for name in REPORT_FIELDS] == [None] * 4


def test_names_round_trip_and_absent_ones_are_left_out() -> None:
    meta = TrackMeta("pop", "human", *SHARES, **NAMES)
    assert TrackMeta.from_json(meta.to_json()) == meta
    assert orjson.loads(meta.to_json())["t"] == NAMES["title"]
    partial = TrackMeta("pop", "human", *SHARES, artist="A")
    assert set(orjson.loads(partial.to_json())) == {"g", "o", "m", "p", "a"}
    assert TrackMeta.from_json(partial.to_json()) == partial


_name = st.none() | st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@given(_name, _name, _name, _name)
def test_any_names_round_trip(title: str | None, isrc: str | None, artist: str | None,
                              label: str | None) -> None:
    meta = TrackMeta("pop", "ai_generated", *SHARES, title, isrc, artist, label)
    again = TrackMeta.from_json(meta.to_json())
    assert again == meta
    assert again.report_fields() == {name: value for name, value in zip(
        REPORT_FIELDS, (title, isrc, artist, label), strict=True) if value is not None}


def test_names_change_the_ledger_version_but_no_count() -> None:
    plain = TrackMeta("pop", "human", *SHARES)
    named = TrackMeta("pop", "human", *SHARES, **NAMES)
    plain_plan, named_plan = build_plan(plain), build_plan(named)
    assert plain_plan != named_plan  # a rename seals earlier uses under the old version
    assert build_plan(TrackMeta("pop", "human", *SHARES, **NAMES)) == named_plan
    counts = []
    for plan in (plain_plan, named_plan):
        holders: dict[str, int] = {}
        genres: dict[str, int] = {}
        add_attribution(holders, genres, plan, "play", 7)
        counts.append((holders, genres))
    assert counts[0] == counts[1]
    version, text = plan_version(named_plan)
    assert version == CatalogEntry.from_track_meta("t", named).version
    assert CatalogEntry.from_json("t", text) == CatalogEntry.from_track_meta("t", named)
    plain_version, plain_text = plan_version(plain_plan)
    assert plain_version == CatalogEntry.from_track_meta("t", plain).version != version
    assert set(orjson.loads(plain_text)) == {"genre", "ai_origin", "master", "publishing"}
