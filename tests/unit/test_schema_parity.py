"""The published JSON Schemas and the hand-written validators accept the same events.

Producers in other languages validate with ``schemas/*.schema.json``; the worker
validates with ``parse_sound_used`` / ``parse_track_created``. For generated valid
events and mutations of them (dropped fields, wrong types, bad enums, near-miss
strings, boundary lengths, bad shares, ...), both must agree, except for the
documented differences, each pinned down by its own test below:

* Rules JSON Schema cannot express (the worker is stricter): the shares of one right
  add up to at most 1; a holder appears at most once per right.
* JSON numbers as shares with more than 6 decimals: the schema does not check the
  places of a number (``multipleOf`` is inexact for binary floats); the worker does.
* Floats with a zero fraction such as ``5.0``: JSON Schema counts them as integers,
  the worker wants a JSON integer.
* A string ending in ``"\\n"`` in a field checked by ``pattern``: Python's ``re``
  (used by the ``jsonschema`` package) lets ``$`` match before a final newline, which
  ECMA-262 regexes, the dialect JSON Schema specifies, do not. The worker follows ECMA.

Optional fields set to null count as absent on both sides.
"""

from __future__ import annotations

import re
import string
from typing import Any

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

from streamer.events.validation import (
    Rejected,
    load_schema,
    parse_sound_used,
    parse_track_created,
)

SETTINGS = settings(max_examples=400, deadline=None)
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
MAX_EPOCH_MS = 2**53 - 1

SOUND_SCHEMA = load_schema("sound_used")
TRACK_SCHEMA = load_schema("track_created")
SOUND = Draft202012Validator(SOUND_SCHEMA)
TRACK = Draft202012Validator(TRACK_SCHEMA)

SOUND_REQUIRED = {"event_id", "track_id", "occurred_at", "user_id", "use", "country"}
SOUND_OPTIONAL = {"video_id"}
TRACK_REQUIRED = {"event_id", "track_id", "occurred_at", "creator_id", "genre", "ai_origin",
                  "rights"}
TRACK_OPTIONAL = {"isrc", "iswc", "title", "duration_ms", "ai_tool", "artist", "label"}
INTEGER_FIELDS = {"occurred_at", "duration_ms"}

# -- the schema files themselves ---------------------------------------------------


@pytest.mark.parametrize("name", ["sound_used", "track_created"])
def test_schema_file_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == DRAFT_2020_12
    assert validator_for(schema) is Draft202012Validator
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(f"/{name}.schema.json")
    assert schema["type"] == "object"


def test_schemas_name_the_contract_fields() -> None:
    assert set(SOUND_SCHEMA["required"]) == SOUND_REQUIRED
    assert set(SOUND_SCHEMA["properties"]) == SOUND_REQUIRED | SOUND_OPTIONAL
    assert set(TRACK_SCHEMA["required"]) == TRACK_REQUIRED
    assert set(TRACK_SCHEMA["properties"]) == TRACK_REQUIRED | TRACK_OPTIONAL
    entry = TRACK_SCHEMA["properties"]["rights"]["items"]
    assert set(entry["required"]) == {"holder_id", "right", "share"}
    assert SOUND_SCHEMA["properties"]["use"]["enum"] == ["create", "play"]
    assert entry["properties"]["right"]["enum"] == ["master", "publishing"]
    assert TRACK_SCHEMA["properties"]["ai_origin"]["enum"] == ["human", "ai_assisted",
                                                               "ai_generated"]


def test_load_schema_reads_the_packaged_files() -> None:
    from importlib import resources

    for name in ("sound_used", "track_created"):
        raw = resources.files("streamer.events").joinpath(f"schemas/{name}.schema.json")
        assert orjson.loads(raw.read_bytes()) == load_schema(name)


# -- comparing the two validators ------------------------------------------------------


def _lookup(obj: Any, field: str) -> Any:
    """The value at a Rejected.field such as ``rights[2].share``."""
    value = obj
    for part in field.split("."):
        match = re.fullmatch(r"(\w+)\[(\d+)\]", part)
        value = value[match.group(1)][int(match.group(2))] if match else value[part]
    return value


def _documented(obj: Any, exc: Rejected) -> str | None:
    """Why the schema may accept what the worker rejects, or None if it may not."""
    field = exc.field or ""
    if exc.code == "bad_share" and field == "rights":
        return "share sum over 1"
    if exc.code == "bad_share" and field.endswith(".holder_id"):
        return "duplicate holder"
    try:
        value = _lookup(obj, field)
    except (KeyError, IndexError, TypeError):
        return None
    if (exc.code == "bad_share" and field.endswith(".share") and type(value) is float
            and 0 < value <= 1):
        return "number share with more than 6 decimals"
    if field in INTEGER_FIELDS and type(value) is float and value.is_integer():
        return "float with zero fraction"
    if isinstance(value, str) and value.endswith("\n"):
        return "python re: $ before a final newline"
    return None


def compare(kind: str, obj: Any) -> str:
    """'agree', or the documented difference that explains a disagreement; any other
    disagreement fails."""
    schema, parse = {"sound": (SOUND, parse_sound_used),
                     "track": (TRACK, parse_track_created)}[kind]
    schema_ok = schema.is_valid(obj)
    exc: Rejected | None = None
    try:
        parse(obj)
    except Rejected as rejected:
        exc = rejected
    if schema_ok == (exc is None):
        return "agree"
    if exc is None:
        errors = [e.message for e in schema.iter_errors(obj)]
        raise AssertionError(f"worker accepts, schema rejects ({errors}): {obj!r}")
    why = _documented(obj, exc)
    assert why is not None, f"schema accepts, worker rejects ({exc.reason}): {obj!r}"
    return f"documented: {why}"


# -- strategies ------------------------------------------------------------------------

_TEXT = st.characters(exclude_categories=("Cs",))
TRACK_CHARS = string.ascii_letters + string.digits + "._:-"
NEAR_MISS_CHARS = (TRACK_CHARS + " /#,\n\t\x00\x1f\x7f\u00e9\u00c4\u0661\uff24\u0394\u266b"
                   + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_")

ids = st.text(_TEXT, min_size=1, max_size=128)
occurred = st.integers(min_value=0, max_value=MAX_EPOCH_MS)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_TEXT, max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)


@st.composite
def boundary_strings(draw: st.DrawFn) -> str:
    """Strings around the length limits (64, 128, 256, 512), of valid or near-miss
    characters."""
    length = draw(st.sampled_from([0, 1, 2, 3, 11, 12, 13, 63, 64, 65, 127, 128, 129, 255, 256,
                                   257, 512, 513]))
    alphabet = draw(st.sampled_from([TRACK_CHARS, "a", "Z", "0", "T0123456789", NEAR_MISS_CHARS]))
    body = "".join(draw(st.lists(st.sampled_from(alphabet), min_size=length, max_size=length)))
    return body + draw(st.sampled_from(["", "", "", "\n", " ", "A", "\u00e9"]))


near_miss_strings = (
    st.text(st.sampled_from(NEAR_MISS_CHARS), max_size=16)
    | st.text(_TEXT, max_size=8)
    | boundary_strings()
    | st.sampled_from(["create", "play", "Create", "PLAY", "human", "ai_assisted", "AI_GENERATED",
                       "master", "publishing", "sync", "DE", "de", "USUV71101875", "T0345246801",
                       "lofi", "LoFi", "_lofi", "-", ""])
)
near_miss_numbers = (
    st.sampled_from([-1, 0, 1, MAX_EPOCH_MS, MAX_EPOCH_MS + 1, 2**63 - 1, -(2**63), 0.0, 1.0,
                     5.0, -0.0, 0.5, 1.5, 1e16, float(MAX_EPOCH_MS + 1)])
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
)
any_value = json_values | near_miss_strings | near_miss_numbers


def six_places(m: int) -> str:
    return f"{m // 1_000_000}.{m % 1_000_000:06d}"


@st.composite
def share_forms(draw: st.DrawFn, micro: int) -> object:
    """One way a producer may write ``micro`` millionths."""
    forms: list[object] = [six_places(micro), six_places(micro).rstrip("0").rstrip("."),
                           micro / 1e6]
    if micro == 1_000_000:
        forms.append(1)
    else:
        forms.append(six_places(micro)[1:])  # ".25"
    return draw(st.sampled_from(forms))


bad_shares = (
    st.sampled_from([0, "0", "0.0", 0.0, -0.5, "-0.5", 2, "2", 1.000001, "1.000001", "1.5",
                     "5e-1", "1E0", "+0.5", " 0.5", "0.5 ", "", "abc", ".", "0.1234567",
                     "0.0000001", 1e-7, 0.1234567, True, False, None, [0.5], {"v": 1}, "NaN",
                     "Infinity", "0.5\n", 1, "1", "1.0", 0.999999, "0.9", ".75"])
    | st.integers(min_value=1, max_value=9_999_999).map(lambda n: f"0.{n:07d}")
    | st.integers(min_value=1, max_value=9_999_999).map(lambda n: n / 1e7)
    | st.text(st.sampled_from("0123456789.-+eE _"), max_size=9)
    | st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def rights_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    entries = []
    holders = st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",)),
                      min_size=1, max_size=128)
    for which in ("master", "publishing"):
        count = draw(st.integers(min_value=0, max_value=4))
        names = draw(st.lists(holders, min_size=count, max_size=count, unique=True))
        remaining = 1_000_000
        for index, name in enumerate(names):
            if remaining == 0:
                break
            take_all = index == count - 1 and draw(st.booleans())
            micro = remaining if take_all else draw(st.integers(1, remaining))
            remaining -= micro
            entries.append({"holder_id": name, "right": which,
                            "share": draw(share_forms(micro))})
    return draw(st.permutations(entries))


valid_sounds = st.fixed_dictionaries(
    {
        "event_id": ids,
        "track_id": st.text(st.sampled_from(TRACK_CHARS), min_size=1, max_size=128),
        "occurred_at": occurred,
        "user_id": ids,
        "use": st.sampled_from(["create", "play"]),
        "country": st.text(st.sampled_from(string.ascii_uppercase), min_size=2, max_size=2),
    },
    optional={"video_id": ids, "extra": json_values},
)

valid_tracks = st.fixed_dictionaries(
    {
        "event_id": ids,
        "track_id": st.text(st.sampled_from(TRACK_CHARS), min_size=1, max_size=128),
        "occurred_at": occurred,
        "creator_id": ids,
        "genre": st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True),
        "ai_origin": st.sampled_from(["human", "ai_assisted", "ai_generated"]),
        "rights": rights_lists(),
    },
    optional={
        "isrc": st.from_regex(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}", fullmatch=True),
        "iswc": st.from_regex(r"T[0-9]{10}", fullmatch=True),
        "title": st.text(_TEXT, max_size=512),
        "duration_ms": st.integers(min_value=0, max_value=2**63 - 1),
        "ai_tool": st.text(_TEXT, max_size=128),
        "artist": st.text(_TEXT, min_size=1, max_size=512),
        "label": st.text(_TEXT, min_size=1, max_size=256),
        "extra": json_values,
    },
)


def json_round_trip(obj: Any) -> Any:
    """What the worker sees after the event went through Kafka as JSON."""
    return orjson.loads(orjson.dumps(obj))


def mutate(data: st.DataObject, obj: dict[str, Any], fields: set[str]) -> Any:
    """Apply one to three mutations of the kinds a producer gets wrong."""
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="mutations")):
        if type(obj) is not dict:
            break
        action = data.draw(st.sampled_from(
            ["drop", "replace", "string", "number", "entry", "entry", "append", "not_object"]),
            label="action")
        rights = obj.get("rights")
        if action in ("entry", "append") and type(rights) is not list:
            action = "replace"
        if action == "drop" and obj:
            obj.pop(data.draw(st.sampled_from(sorted(obj)), label="drop"), None)
        elif action in ("drop", "replace", "string", "number"):
            name = data.draw(st.sampled_from(sorted(fields | set(obj))), label="field")
            value = data.draw({"replace": any_value, "string": near_miss_strings,
                               "number": near_miss_numbers}[action], label="value")
            obj[name] = value
        elif action == "entry":
            if not rights:
                rights.append({"holder_id": "h", "right": "master", "share": "0.1"})
            index = data.draw(st.integers(0, len(rights) - 1), label="entry")
            entry = rights[index]
            if type(entry) is not dict:
                continue
            key = data.draw(st.sampled_from(["holder_id", "right", "share", "extra"]), label="key")
            how = data.draw(st.sampled_from(["drop", "junk", "string", "share", "copy"]),
                            label="how")
            if how == "drop":
                entry.pop(key, None)
            elif how == "junk":
                entry[key] = data.draw(any_value, label="junk")
            elif how == "string":
                entry[key] = data.draw(near_miss_strings, label="string")
            elif how == "share":
                entry["share"] = data.draw(bad_shares, label="share")
            else:  # the same holder again, or an entry replaced by junk
                rights.append(dict(entry))
        elif action == "append":
            extra = data.draw(st.integers(1, 70), label="appended")
            which = data.draw(st.sampled_from(["master", "publishing", "other"]), label="right")
            share = data.draw(bad_shares | st.just("0.01"), label="share")
            rights.extend({"holder_id": f"x{i}", "right": which, "share": share}
                          for i in range(extra))
        else:
            return data.draw(json_values.filter(lambda v: type(v) is not dict), label="obj")
    return obj


@SETTINGS
@given(valid_sounds)
def test_valid_sound_used_accepted_by_both(obj: dict[str, Any]) -> None:
    obj = json_round_trip(obj)
    assert SOUND.is_valid(obj)
    parse_sound_used(obj)


@SETTINGS
@given(valid_tracks)
def test_valid_track_created_accepted_by_both(obj: dict[str, Any]) -> None:
    obj = json_round_trip(obj)
    assert TRACK.is_valid(obj), [e.message for e in TRACK.iter_errors(obj)]
    parse_track_created(obj)


@settings(max_examples=500, deadline=None)
@given(valid_sounds, st.data())
def test_mutated_sound_used_parity(obj: dict[str, Any], data: st.DataObject) -> None:
    mutated = json_round_trip(mutate(data, obj, SOUND_REQUIRED | SOUND_OPTIONAL))
    event(compare("sound", mutated))


@settings(max_examples=500, deadline=None)
@given(valid_tracks, st.data())
def test_mutated_track_created_parity(obj: dict[str, Any], data: st.DataObject) -> None:
    mutated = json_round_trip(mutate(data, obj, TRACK_REQUIRED | TRACK_OPTIONAL))
    event(compare("track", mutated))


# -- each documented difference exists exactly as documented -----------------------------


def _sound(**changes: Any) -> dict[str, Any]:
    obj = {"event_id": "e", "track_id": "t", "occurred_at": 1, "user_id": "u", "use": "play",
           "country": "DE"}
    obj.update(changes)
    return obj


def _track(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"event_id": "e", "track_id": "t", "occurred_at": 1, "creator_id": "c",
                           "genre": "lofi", "ai_origin": "human", "rights": []}
    obj.update(changes)
    return obj


@pytest.mark.parametrize(
    ("rights", "field"),
    [
        ([{"holder_id": "a", "right": "master", "share": "0.6"},
          {"holder_id": "b", "right": "master", "share": 0.5}], "rights"),
        ([{"holder_id": "a", "right": "publishing", "share": "0.1"},
          {"holder_id": "a", "right": "publishing", "share": "0.1"}], "rights[1].holder_id"),
        ([{"holder_id": "a", "right": "master", "share": 0.1234567}], "rights[0].share"),
        ([{"holder_id": "a", "right": "master", "share": 1e-7}], "rights[0].share"),
    ],
)
def test_documented_share_differences(rights: list[dict[str, Any]], field: str) -> None:
    obj = json_round_trip(_track(rights=rights))
    assert TRACK.is_valid(obj)
    with pytest.raises(Rejected) as info:
        parse_track_created(obj)
    assert (info.value.code, info.value.field) == ("bad_share", field)
    assert compare("track", obj).startswith("documented: ")


@pytest.mark.parametrize(
    ("kind", "obj", "field"),
    [
        ("sound", _sound(occurred_at=5.0), "occurred_at"),
        ("track", _track(occurred_at=1700000000000.0), "occurred_at"),
        ("track", _track(duration_ms=1000.0), "duration_ms"),
    ],
)
def test_documented_zero_fraction_floats(kind: str, obj: dict[str, Any], field: str) -> None:
    schema, parse = (SOUND, parse_sound_used) if kind == "sound" else (TRACK, parse_track_created)
    assert schema.is_valid(obj)
    with pytest.raises(Rejected) as info:
        parse(obj)
    assert info.value.field == field
    assert compare(kind, obj) == "documented: float with zero fraction"


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("sound", _sound(track_id="t\n")),
        ("sound", _sound(country="DE\n")),
        ("track", _track(genre="lofi\n")),
        ("track", _track(isrc="USUV71101875\n")),
        ("track", _track(iswc="T0345246801\n")),
        ("track", _track(rights=[{"holder_id": "a\n", "right": "master", "share": 1}])),
        ("track", _track(rights=[{"holder_id": "a", "right": "master", "share": "0.5\n"}])),
    ],
)
def test_documented_python_dollar_quirk(kind: str, obj: dict[str, Any]) -> None:
    schema, parse = (SOUND, parse_sound_used) if kind == "sound" else (TRACK, parse_track_created)
    # Python's re accepts these; an ECMA-262 `$` (what JSON Schema specifies) and the
    # worker do not.
    assert schema.is_valid(obj)
    with pytest.raises(Rejected):
        parse(obj)
    assert compare(kind, obj) == "documented: python re: $ before a final newline"


# -- agreements that were once bugs -------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        pytest.param("sound", _sound(video_id=None), id="video_id"),
        pytest.param("track", _track(isrc=None), id="isrc"),
        pytest.param("track", _track(iswc=None), id="iswc"),
        pytest.param("track", _track(title=None), id="title"),
        pytest.param("track", _track(duration_ms=None), id="duration_ms"),
        pytest.param("track", _track(ai_tool=None), id="ai_tool"),
        pytest.param("track", _track(artist=None), id="artist"),
        pytest.param("track", _track(label=None), id="label"),
    ],
)
def test_optional_field_null_parity(kind: str, obj: dict[str, Any]) -> None:
    """An optional field set to null means absent, for the schema and the worker alike."""
    schema, parse = (SOUND, parse_sound_used) if kind == "sound" else (TRACK, parse_track_created)
    assert schema.is_valid(obj)
    parse(obj)


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [(field, "x" * length + tail, valid)
     for field, limit in (("artist", 512), ("label", 256))
     for length, tail, valid in ((0, "", False), (1, "", True), (limit, "", True),
                                 (limit + 1, "", False), (limit - 1, "\U0001f3b8", True),
                                 (limit, "\U0001f3b8", False))]
    + [(field, value, False) for field in ("artist", "label")
       for value in (0, 1.5, True, [], ["a"], {"name": "a"})],
)
def test_report_names_parity(field: str, value: object, valid: bool) -> None:
    """artist and label: the schema and the worker agree at the limits (in characters,
    an astral one included) and on every other JSON type."""
    obj = _track(**{field: value})
    assert TRACK.is_valid(obj) is valid
    assert compare("track", obj) == "agree"


@pytest.mark.parametrize("share", ["1.", "00.5", "01", "0.2_5", "0.5000000", "\u0660.\u0665"])
def test_share_string_parity(share: str) -> None:
    obj = _track(rights=[{"holder_id": "a", "right": "master", "share": share}])
    assert not TRACK.is_valid(obj)
    with pytest.raises(Rejected):
        parse_track_created(obj)
