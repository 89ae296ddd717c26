"""The hand-written validators of SoundUsed and TrackCreated (streamer.events.validation).

Every rejection must name its rule (``code``) and field, because that is what goes
into the dead-letter ``reason`` header a producer acts on.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.events.validation import (
    Rejected,
    TrackMeta,
    parse_sound_used,
    parse_track_created,
)

MAX_EPOCH_MS = 9_007_199_254_740_991  # 2**53 - 1, the schema's maximum


def sound(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "ev-1",
        "track_id": "trk:1",
        "occurred_at": 1_700_000_000_000,
        "user_id": "user-7",
        "use": "create",
        "country": "DE",
    }
    event.update(changes)
    return event


def track(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "tc-1",
        "track_id": "trk:1",
        "occurred_at": 1_700_000_000_000,
        "creator_id": "creator-9",
        "genre": "lofi",
        "ai_origin": "ai_assisted",
        "rights": [
            {"holder_id": "label-a", "right": "master", "share": "0.5"},
            {"holder_id": "label-b", "right": "master", "share": 0.25},
            {"holder_id": "pub-c", "right": "publishing", "share": 1},
        ],
    }
    event.update(changes)
    return event


def without(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != field}


def rejection(parse: Any, obj: object) -> Rejected:
    with pytest.raises(Rejected) as info:
        parse(obj)
    return info.value


def assert_rejected(parse: Any, obj: object, code: str, field: str | None) -> Rejected:
    exc = rejection(parse, obj)
    assert (exc.code, exc.field) == (code, field), exc.reason
    return exc


# -- SoundUsed -------------------------------------------------------------------


def test_sound_used_valid_returns_its_key_fields() -> None:
    assert parse_sound_used(sound()) == ("ev-1", "trk:1", 1_700_000_000_000, "create")
    assert parse_sound_used(sound(use="play", event_id="x")) == (
        "x", "trk:1", 1_700_000_000_000, "play")


def test_sound_used_accepts_extra_fields_and_optional_video_id() -> None:
    assert parse_sound_used(sound(video_id="vid-1", extra={"a": 1}))[0] == "ev-1"


@pytest.mark.parametrize("occurred_at", [0, 1, MAX_EPOCH_MS])
def test_sound_used_occurred_at_bounds_accepted(occurred_at: int) -> None:
    assert parse_sound_used(sound(occurred_at=occurred_at))[2] == occurred_at


@pytest.mark.parametrize("value", [[], ["a"], "event", 5, 1.5, True, None])
def test_sound_used_not_an_object(value: object) -> None:
    exc = assert_rejected(parse_sound_used, value, "not_object", None)
    assert exc.reason.startswith("not_object: ")


@pytest.mark.parametrize(
    "field", ["event_id", "track_id", "occurred_at", "user_id", "use", "country"]
)
def test_sound_used_missing_required_field(field: str) -> None:
    exc = assert_rejected(parse_sound_used, without(sound(), field), "missing_field", field)
    assert exc.reason.startswith(f"missing_field:{field}: ")


@pytest.mark.parametrize("field", ["event_id", "track_id", "occurred_at", "user_id", "country"])
def test_sound_used_null_required_field_is_missing(field: str) -> None:
    assert_rejected(parse_sound_used, sound(**{field: None}), "missing_field", field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", 5),
        ("event_id", ["ev"]),
        ("track_id", 17),
        ("track_id", 1.5),
        ("track_id", True),
        ("user_id", 3),
        ("user_id", False),
        ("occurred_at", "1700000000000"),
        ("occurred_at", 1.7e12),
        ("occurred_at", 1_700_000_000_000.0),
        ("occurred_at", True),
        ("occurred_at", False),
        ("video_id", 9),
    ],
)
def test_sound_used_wrong_type(field: str, value: object) -> None:
    assert_rejected(parse_sound_used, sound(**{field: value}), "wrong_type", field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", ""),
        ("event_id", "e" * 129),
        ("user_id", ""),
        ("user_id", "u" * 129),
        ("video_id", ""),
        ("video_id", "v" * 129),
        ("occurred_at", -1),
        ("occurred_at", MAX_EPOCH_MS + 1),
        ("use", "share"),
        ("use", "Play"),
        ("use", "CREATE"),
        ("use", 1),
        ("use", ["play"]),
    ],
)
def test_sound_used_invalid_value(field: str, value: object) -> None:
    assert_rejected(parse_sound_used, sound(**{field: value}), "invalid_value", field)


@pytest.mark.parametrize("length", [1, 128])
def test_sound_used_id_lengths_at_the_limits_accepted(length: int) -> None:
    event = sound(event_id="e" * length, user_id="u" * length, video_id="v" * length)
    assert parse_sound_used(event)[0] == "e" * length


@pytest.mark.parametrize(
    "track_id",
    ["", "t" * 129, "a b", "a/b", "a#b", "a,b", "tr\u00e4ck", "t\n", "\nt", "t\x00", "\u0661"],
)
def test_track_id_charset_and_length(track_id: str) -> None:
    assert_rejected(parse_sound_used, sound(track_id=track_id), "invalid_value", "track_id")
    assert_rejected(parse_track_created, track(track_id=track_id), "invalid_value", "track_id")


@pytest.mark.parametrize(
    "track_id", ["a", "t" * 128, "ABC-xyz_09.:", "spotify:track:4uLU6hMCjMI75M1A2tKUQC", "-", "."]
)
def test_track_id_allowed_characters(track_id: str) -> None:
    assert parse_sound_used(sound(track_id=track_id))[1] == track_id
    assert parse_track_created(track(track_id=track_id))[1] == track_id


@pytest.mark.parametrize("value", [["trk"], {"id": "trk"}])
def test_unhashable_track_id_is_rejected_not_a_crash(value: object) -> None:
    assert_rejected(parse_sound_used, sound(track_id=value), "wrong_type", "track_id")


@pytest.mark.parametrize("country", ["DE", "US", "ZZ"])
def test_country_two_upper_case_ascii_letters(country: str) -> None:
    parse_sound_used(sound(country=country))


@pytest.mark.parametrize(
    "country",
    ["de", "De", "D", "DEU", "", "D1", "12", "D ", " D", "\u00c4\u00d6", "\uff24\uff25",
     "\u0394\u0395", "DE\n", 49, ["DE"], True],
)
def test_country_rejected(country: object) -> None:
    assert_rejected(parse_sound_used, sound(country=country), "invalid_value", "country")


# -- TrackCreated ----------------------------------------------------------------


def test_track_created_valid_returns_exact_micro_shares() -> None:
    event_id, track_id, occurred_at, meta = parse_track_created(track())
    assert (event_id, track_id, occurred_at) == ("tc-1", "trk:1", 1_700_000_000_000)
    assert meta == TrackMeta(
        genre="lofi",
        ai_origin="ai_assisted",
        master=(("label-a", 500_000), ("label-b", 250_000)),
        publishing=(("pub-c", 1_000_000),),
    )
    assert meta.holders("master") == (("label-a", 500_000), ("label-b", 250_000))
    assert meta.holders("publishing") == (("pub-c", 1_000_000),)


def test_track_meta_json_round_trip() -> None:
    meta = parse_track_created(track())[3]
    assert orjson.loads(meta.to_json()) == {
        "g": "lofi",
        "o": "ai_assisted",
        "m": [["label-a", 500_000], ["label-b", 250_000]],
        "p": [["pub-c", 1_000_000]],
    }
    assert TrackMeta.from_json(meta.to_json()) == meta


def test_empty_rights_list_is_fine() -> None:
    meta = parse_track_created(track(rights=[]))[3]
    assert (meta.master, meta.publishing) == ((), ())


@pytest.mark.parametrize("origin", ["human", "ai_assisted", "ai_generated"])
def test_ai_origins(origin: str) -> None:
    assert parse_track_created(track(ai_origin=origin))[3].ai_origin == origin


@pytest.mark.parametrize("value", [[], "track", 7, None, False])
def test_track_created_not_an_object(value: object) -> None:
    assert_rejected(parse_track_created, value, "not_object", None)


@pytest.mark.parametrize(
    "field",
    ["event_id", "track_id", "occurred_at", "creator_id", "genre", "ai_origin", "rights"],
)
def test_track_created_missing_required_field(field: str) -> None:
    exc = assert_rejected(parse_track_created, without(track(), field), "missing_field", field)
    assert exc.reason.startswith(f"missing_field:{field}: ")


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("event_id", 1, "wrong_type"),
        ("event_id", "", "invalid_value"),
        ("event_id", "e" * 129, "invalid_value"),
        ("creator_id", 5, "wrong_type"),
        ("creator_id", "", "invalid_value"),
        ("track_id", 5, "wrong_type"),
        ("occurred_at", "0", "wrong_type"),
        ("occurred_at", True, "wrong_type"),
        ("occurred_at", 10.0, "wrong_type"),
        ("occurred_at", -5, "invalid_value"),
        ("occurred_at", MAX_EPOCH_MS + 1, "invalid_value"),
        ("ai_origin", "robot", "invalid_value"),
        ("ai_origin", "Human", "invalid_value"),
        ("ai_origin", 0, "invalid_value"),
        ("ai_origin", ["human"], "invalid_value"),
        ("rights", "label-a", "wrong_type"),
        ("rights", {"holder_id": "a", "right": "master", "share": 1}, "wrong_type"),
        ("rights", 3, "wrong_type"),
    ],
)
def test_track_created_field_rules(field: str, value: object, code: str) -> None:
    assert_rejected(parse_track_created, track(**{field: value}), code, field)


@pytest.mark.parametrize("genre", ["lofi", "hyperpop", "a", "0", "lo-fi_2", "g" * 64])
def test_genre_accepted(genre: str) -> None:
    assert parse_track_created(track(genre=genre))[3].genre == genre


@pytest.mark.parametrize(
    "genre",
    ["", "LoFi", "lo fi", "-lofi", "_lofi", "g" * 65, "lofi!", "m\u00fcsik", "lofi\n", 5, True],
)
def test_genre_rejected(genre: object) -> None:
    assert_rejected(parse_track_created, track(genre=genre), "invalid_value", "genre")


# -- rights ----------------------------------------------------------------------


def right(holder: object = "h", which: object = "master", share: object = "0.1") -> dict:
    return {"holder_id": holder, "right": which, "share": share}


def test_rights_at_most_64_entries() -> None:
    # 1/64 = 0.015625 exactly: 64 holders add up to exactly 1.
    entries = [right(f"h{i}", "master", "0.015625") for i in range(64)]
    meta = parse_track_created(track(rights=entries))[3]
    assert len(meta.master) == 64
    assert sum(micro for _, micro in meta.master) == 1_000_000
    entries.append(right("h64", "publishing", "0.1"))
    assert_rejected(parse_track_created, track(rights=entries), "invalid_value", "rights")


@pytest.mark.parametrize(
    ("entry", "code", "field"),
    [
        ("label-a", "wrong_type", "rights[1]"),
        (["label-a", "master", 1], "wrong_type", "rights[1]"),
        (None, "wrong_type", "rights[1]"),
        ({"right": "master", "share": "0.1"}, "missing_field", "rights[1].holder_id"),
        (right(holder=None), "missing_field", "rights[1].holder_id"),
        (right(holder=""), "invalid_value", "rights[1].holder_id"),
        (right(holder="h" * 129), "invalid_value", "rights[1].holder_id"),
        (right(holder="bad\x07id"), "invalid_value", "rights[1].holder_id"),
        (right(holder="bad\nid"), "invalid_value", "rights[1].holder_id"),
        (right(holder=42), "invalid_value", "rights[1].holder_id"),
        ({"holder_id": "h", "share": "0.1"}, "missing_field", "rights[1].right"),
        (right(which="sync"), "invalid_value", "rights[1].right"),
        (right(which="Master"), "invalid_value", "rights[1].right"),
        (right(which=1), "invalid_value", "rights[1].right"),
        ({"holder_id": "h", "right": "master"}, "missing_field", "rights[1].share"),
        (right(share=None), "bad_share", "rights[1].share"),
        (right(share=0), "bad_share", "rights[1].share"),
        (right(share="0"), "bad_share", "rights[1].share"),
        (right(share=-0.25), "bad_share", "rights[1].share"),
        (right(share=1.5), "bad_share", "rights[1].share"),
        (right(share="1.000001"), "bad_share", "rights[1].share"),
        (right(share="0.0000001"), "bad_share", "rights[1].share"),
        (right(share=0.1234567), "bad_share", "rights[1].share"),
        (right(share=True), "bad_share", "rights[1].share"),
        (right(share="abc"), "bad_share", "rights[1].share"),
        (right(share="5e-1"), "bad_share", "rights[1].share"),
        (right(share=[0.5]), "bad_share", "rights[1].share"),
    ],
)
def test_rights_entry_rules(entry: object, code: str, field: str) -> None:
    rights = [right("first", "publishing", "0.5"), entry]
    assert_rejected(parse_track_created, track(rights=rights), code, field)


def test_holder_id_allows_unicode_and_128_characters() -> None:
    entries = [right("\u00e9diteur \u266b", "master", "0.5"), right("h" * 128, "master", "0.5")]
    meta = parse_track_created(track(rights=entries))[3]
    assert meta.master == (("\u00e9diteur \u266b", 500_000), ("h" * 128, 500_000))


def test_duplicate_holder_within_a_right_rejected() -> None:
    rights = [right("a", "master", "0.2"), right("b", "master", "0.2"),
              right("a", "master", "0.1")]
    exc = assert_rejected(parse_track_created, track(rights=rights), "bad_share",
                          "rights[2].holder_id")
    assert "'a'" in exc.detail


def test_same_holder_in_both_rights_is_fine() -> None:
    rights = [right("a", "master", 1), right("a", "publishing", "1.0")]
    meta = parse_track_created(track(rights=rights))[3]
    assert meta.master == (("a", 1_000_000),)
    assert meta.publishing == (("a", 1_000_000),)


@pytest.mark.parametrize(
    ("shares", "which"),
    [
        (["0.5", "0.5", "0.000001"], "master"),
        ([1, "0.000001"], "publishing"),
        ([0.7, 0.2, 0.1, 0.000001], "master"),
        (["0.333334", "0.333334", "0.333333"], "publishing"),
    ],
)
def test_shares_over_one_per_right_rejected(shares: list[object], which: str) -> None:
    rights = [right(f"h{i}", which, share) for i, share in enumerate(shares)]
    exc = assert_rejected(parse_track_created, track(rights=rights), "bad_share", "rights")
    assert which in exc.detail


@pytest.mark.parametrize(
    "shares",
    [
        ["0.333333", "0.333333", "0.333334"],
        # As floats 0.7 + 0.2 + 0.1 is not 1.0; as decimals it is exactly 1.
        [0.7, 0.2, 0.1],
        [0.1, 0.2, 0.3, 0.4],
        ["0.5", 0.5],
        ["0.000001"],
    ],
)
def test_shares_up_to_exactly_one_per_right_accepted(shares: list[object]) -> None:
    rights = [right(f"m{i}", "master", share) for i, share in enumerate(shares)]
    rights += [right(f"p{i}", "publishing", share) for i, share in enumerate(shares)]
    meta = parse_track_created(track(rights=rights))[3]
    assert sum(micro for _, micro in meta.master) <= 1_000_000
    assert [micro for _, micro in meta.publishing] == [micro for _, micro in meta.master]


def test_shares_of_the_two_rights_are_summed_separately() -> None:
    rights = [right("a", "master", "0.6"), right("b", "publishing", "0.6"),
              right("c", "master", "0.4"), right("d", "publishing", "0.4")]
    meta = parse_track_created(track(rights=rights))[3]
    assert meta.master == (("a", 600_000), ("c", 400_000))
    assert meta.publishing == (("b", 600_000), ("d", 400_000))


# -- optional TrackCreated fields --------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("isrc", "USUV71101875"),
        ("isrc", "GB1AB2400001"),
        ("iswc", "T0345246801"),
        ("title", ""),
        ("title", "t" * 512),
        ("title", "Caf\u00e9 \u266b"),
        ("duration_ms", 0),
        ("duration_ms", 215_000),
        ("ai_tool", ""),
        ("ai_tool", "a" * 128),
        ("artist", "A"),
        ("artist", "Daft Punk feat. Pharrell Williams"),
        ("artist", "\u00e9" * 512),
        ("artist", "\U0001f3b8" * 512),  # characters, not UTF-8 bytes or UTF-16 units
        ("label", "L"),
        ("label", "Columbia"),
        ("label", "l" * 256),
    ],
)
def test_optional_fields_accepted(field: str, value: object) -> None:
    parse_track_created(track(**{field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("isrc", "usuv71101875"),
        ("isrc", "USUV7110187"),
        ("isrc", "USUV711018755"),
        ("isrc", "U1UV71101875"),
        ("isrc", "USUV7110187A"),
        ("isrc", "US-UV7-11-01875"),
        ("isrc", 123),
        ("iswc", "T034524680"),
        ("iswc", "T03452468012"),
        ("iswc", "t0345246801"),
        ("iswc", "T-034.524.680-1"),
        ("iswc", 345246801),
        ("title", "t" * 513),
        ("title", 5),
        ("title", ["a"]),
        ("duration_ms", -1),
        ("duration_ms", 1.5),
        ("duration_ms", "100"),
        ("duration_ms", True),
        ("ai_tool", "a" * 129),
        ("ai_tool", 1),
    ],
)
def test_optional_fields_rejected(field: str, value: object) -> None:
    assert_rejected(parse_track_created, track(**{field: value}), "invalid_value", field)


@pytest.mark.parametrize(
    ("field", "value", "code", "detail"),
    [
        ("artist", "", "invalid_value", "must be 1 to 512 characters"),
        ("artist", "a" * 513, "invalid_value", "must be 1 to 512 characters"),
        ("artist", "\U0001f3b8" * 513, "invalid_value", "must be 1 to 512 characters"),
        ("artist", 7, "wrong_type", "expected a string, got integer"),
        ("artist", ["Daft Punk"], "wrong_type", "expected a string, got array"),
        ("artist", {"name": "x"}, "wrong_type", "expected a string, got object"),
        ("artist", False, "wrong_type", "expected a string, got boolean"),
        ("label", "", "invalid_value", "must be 1 to 256 characters"),
        ("label", "l" * 257, "invalid_value", "must be 1 to 256 characters"),
        ("label", 1.5, "wrong_type", "expected a string, got number"),
    ],
)
def test_report_names_rejected_with_their_reason(field: str, value: object, code: str,
                                                 detail: str) -> None:
    exc = assert_rejected(parse_track_created, track(**{field: value}), code, field)
    assert exc.detail == detail


def test_report_names_change_nothing_the_worker_counts() -> None:
    """title, isrc, artist and label are for reports: they travel in the catalog entry
    and change nothing that is attributed; null is the same as absent."""
    names = {"title": "Get Lucky", "isrc": "USQX91300108", "artist": "Daft Punk",
             "label": "Columbia"}
    plain = parse_track_created(track())
    named = parse_track_created(track(**names))
    nulls = parse_track_created(track(**dict.fromkeys(names)))
    assert plain == nulls
    assert plain[:3] == named[:3]
    counted = ("genre", "ai_origin", "master", "publishing")
    assert [getattr(plain[3], f) for f in counted] == [getattr(named[3], f) for f in counted]
    assert {name: getattr(named[3], name) for name in names} == names
    assert plain[3].to_json() == nulls[3].to_json()
    assert orjson.loads(named[3].to_json()) == {
        **orjson.loads(plain[3].to_json()),
        "t": "Get Lucky", "i": "USQX91300108", "a": "Daft Punk", "l": "Columbia"}


def test_rejected_reason_names_code_and_field() -> None:
    exc = Rejected("bad_share", "rights[0].share", "must be finite")
    assert exc.reason == "bad_share:rights[0].share: must be finite"
    assert str(exc) == exc.reason
    assert Rejected("not_json", None, "x").reason == "not_json: x"


_texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
_holders = st.lists(st.tuples(_texts, st.integers(1, 1_000_000)), max_size=4).map(tuple)


@settings(max_examples=500, deadline=None)
@given(st.builds(TrackMeta, genre=_texts, ai_origin=_texts, master=_holders,
                 publishing=_holders))
def test_catalog_entry_bytes_are_what_orjson_wrote(meta: TrackMeta) -> None:
    """to_json moved from orjson to msgspec (faster on tuples): the Redis catalog entry
    keeps exactly the same bytes, escapes included, and reads back the same."""
    assert meta.to_json() == orjson.dumps(
        {"g": meta.genre, "o": meta.ai_origin, "m": meta.master, "p": meta.publishing})
    assert TrackMeta.from_json(meta.to_json()) == meta


@settings(max_examples=800, deadline=None)
@given(st.text(max_size=12) | st.sampled_from(["", "a" * 128, "a" * 129, "Z9" * 64, "٣", "t٣",
                                                "ß", "t.1", "t:1", "t-_", "t 1", "İ", "²"])
       | st.integers(1, 200).map(lambda n: "a" * n))
def test_the_track_id_shortcut_accepts_exactly_the_pattern(track_id: str) -> None:
    """Ids of ASCII letters and digits skip the regex (``_TrackIdCache.check``): for any
    string the verdict is the pattern's, and only accepted ids are remembered."""
    from streamer.events.schema_rules import TRACK_ID_PATTERN, _TrackIdCache

    cache = _TrackIdCache()
    accepted = TRACK_ID_PATTERN.fullmatch(track_id) is not None
    try:
        assert cache.check(track_id) == track_id
        assert accepted
    except Rejected as rejected:
        assert not accepted and rejected.field == "track_id"
    assert (track_id in cache.seen) == accepted
