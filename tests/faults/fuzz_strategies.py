"""Hypothesis strategies for malformed input, each with the dead-letter entry it must cause.

Every strategy builds an input that is invalid *by construction* and says why, from the
published contract (docs, JSON Schemas), not from the validator's code:

* ``bad_use_element``: a SoundUsed with exactly one broken rule (a required field
  missing or null, a wrong type, a value out of its range or pattern, an event from the
  future or older than the lateness), or a JSON value that is not an object;
* ``bad_use_record``: a record that is rejected as a whole: random bytes, truncated or
  trailing-garbage JSON, invalid UTF-8, a byte-order mark, nesting deeper than any
  parser allows, a JSON scalar, an empty value or tombstone, an empty batch, a batch
  over the 10,000-event limit;
* ``bad_track_record``: a TrackCreated with one broken rule (shares, holders, enums).

``collect_malformed`` runs them through ``@given`` and returns the drawn items.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fault_workload import TRACKS, BadElement, BadRecord
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

MAX_EPOCH_MS = 2**53 - 1
REQUIRED = ("event_id", "track_id", "occurred_at", "user_id", "use", "country")
_TRACK_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_COUNTRY = re.compile(r"[A-Z]{2}")

_chars = st.characters(blacklist_categories=("Cs",))  # orjson cannot encode lone surrogates
text = st.text(alphabet=_chars, max_size=24)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), text)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6)
non_strings = json_values.filter(lambda v: v is not None and not isinstance(v, str))
bad_length_ids = st.one_of(st.just(""), st.text(alphabet=_chars, min_size=129, max_size=160))


def _base_use(i: int, track: str, occurred_at: int) -> dict[str, Any]:
    return {"event_id": f"fz-{i}", "track_id": track, "occurred_at": occurred_at,
            "user_id": f"user-{i % 997}", "use": "play" if i % 3 else "create",
            "country": "DE"}


@st.composite
def bad_use_element(draw: st.DrawFn, now_ms: int, t0_ms: int) -> BadElement:
    i = draw(st.integers(0, 10**9))
    event = _base_use(i, f"fz-track-{i % 50}", t0_ms + i % 600_000)
    if draw(st.booleans()):
        event["video_id"] = f"v{i}"
    if draw(st.integers(0, 9)) == 0:  # unknown extra fields do not make an event valid
        event[draw(text.filter(lambda k: k not in event and k not in REQUIRED
                               and k != "video_id"))] = draw(json_values)
    kind = draw(st.sampled_from(
        ["missing", "null", "event_id", "track_id", "occurred_at", "user_id", "use",
         "country", "video_id", "future", "late", "not_object"]))
    if kind in ("missing", "null"):
        name = draw(st.sampled_from(REQUIRED))
        if kind == "missing":
            del event[name]
        else:
            event[name] = None
        return BadElement(event, frozenset({"missing_field"}), name)
    if kind in ("event_id", "user_id", "video_id"):
        value = draw(non_strings | bad_length_ids)
        event[kind] = value
        return BadElement(event, frozenset({"wrong_type", "invalid_value"}), kind)
    if kind == "track_id":
        value = draw(non_strings | text.filter(lambda s: not _TRACK_ID.fullmatch(s))
                     | st.text(alphabet="ab.:-_09", min_size=129, max_size=140))
        event["track_id"] = value
        return BadElement(event, frozenset({"wrong_type", "invalid_value"}), "track_id")
    if kind == "occurred_at":
        value = draw(st.one_of(
            non_strings.filter(lambda v: type(v) is not int), text,
            st.integers(min_value=-(2**63), max_value=-1),
            st.integers(min_value=MAX_EPOCH_MS + 1, max_value=2**64 - 1)))
        event["occurred_at"] = value
        return BadElement(event, frozenset({"wrong_type", "invalid_value"}), "occurred_at")
    if kind == "use":
        event["use"] = draw(non_strings | text.filter(lambda s: s not in ("create", "play")))
        return BadElement(event, frozenset({"wrong_type", "invalid_value"}), "use")
    if kind == "country":
        event["country"] = draw(non_strings | text.filter(lambda s: not _COUNTRY.fullmatch(s)))
        return BadElement(event, frozenset({"wrong_type", "invalid_value"}), "country")
    if kind == "future":
        # An hour ahead at least, so it is still in the future when the worker reads it.
        event["occurred_at"] = now_ms + draw(st.integers(3_600_000, 30 * 86_400_000))
        return BadElement(event, frozenset({"future"}), "occurred_at")
    if kind == "late":
        # The stream's events start at t0; behind any of them by more than the 1 h lateness.
        event["occurred_at"] = t0_ms - draw(st.integers(3_700_000, 30 * 86_400_000))
        return BadElement(event, frozenset({"late"}), "occurred_at", late=True)
    value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
    return BadElement(value, frozenset({"not_object"}), None,
                      single_ok=not isinstance(value, list))


@st.composite
def bad_use_record(draw: st.DrawFn) -> BadRecord:
    i = draw(st.integers(0, 10**6))
    valid = orjson.dumps(_base_use(i, f"fz-track-{i % 50}", 1_700_000_000_000))
    kind = draw(st.sampled_from(
        ["bytes", "truncated", "garbage", "utf8", "bom", "deep", "scalar", "empty",
         "tombstone", "empty_batch", "huge_batch"]))
    if kind == "bytes":
        head = draw(st.sampled_from([bytes([b]) for b in range(0, 9)]))
        return BadRecord(head + draw(st.binary(max_size=200)), frozenset({"not_json"}))
    if kind == "truncated":
        body = valid if draw(st.booleans()) else b"[" + valid + b"," + valid + b"]"
        cut = draw(st.integers(1, len(body) - 1))
        return BadRecord(body[:cut], frozenset({"not_json"}))
    if kind == "garbage":
        tail = draw(st.sampled_from([b"x", b"}", b"]", b",", b"{", b"0", b'"'])) + draw(
            st.binary(max_size=20))
        return BadRecord(valid + tail, frozenset({"not_json"}))
    if kind == "utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82",
                                    b"\xf0\x28\x8c\xbc", b"\x80"]))
        return BadRecord(valid.replace(b'"user-', b'"user-' + bad, 1), frozenset({"not_json"}))
    if kind == "bom":
        return BadRecord(b"\xef\xbb\xbf" + valid, frozenset({"not_json"}))
    if kind == "deep":
        depth = draw(st.integers(1100, 5000))
        return BadRecord(b"[" * depth + b"]" * depth, frozenset({"not_json"}))
    if kind == "scalar":
        value = draw(scalars)
        return BadRecord(orjson.dumps(value), frozenset({"not_object"}))
    if kind == "empty":
        return BadRecord(b"", frozenset({"empty_record"}))
    if kind == "tombstone":
        return BadRecord(None, frozenset({"empty_record"}))
    if kind == "empty_batch":
        return BadRecord(draw(st.sampled_from([b"[]", b" [ ] ", b"[\n]"])),
                         frozenset({"empty_batch"}))
    count = draw(st.integers(10_001, 10_050))
    element = draw(st.sampled_from([b"0", b"{}", b"null"]))
    return BadRecord(b"[" + b",".join([element] * count) + b"]", frozenset({"batch_too_large"}))


@st.composite
def bad_track_record(draw: st.DrawFn, t0_ms: int) -> BadRecord:
    i = draw(st.integers(0, 10**6))
    track = {"event_id": f"fzt-{i}", "track_id": f"fz-bad-track-{i}", "occurred_at": t0_ms,
             "creator_id": "c", "genre": "lofi", "ai_origin": "human",
             "rights": [{"holder_id": "h1", "right": "master", "share": "0.5"},
                        {"holder_id": "h2", "right": "publishing", "share": 1}]}
    kind = draw(st.sampled_from(["decimals", "over_one", "twice", "zero", "genre", "origin",
                                 "rights_type", "right", "creator", "not_object"]))
    codes = {"bad_share"}
    if kind == "decimals":
        track["rights"][0]["share"] = draw(st.sampled_from(["0.1234567", 0.1234567, "1e-7"]))
    elif kind == "over_one":
        track["rights"].append({"holder_id": "h3", "right": "master",
                                "share": draw(st.sampled_from(["0.500001", 0.75, 1]))})
    elif kind == "twice":
        track["rights"].append({"holder_id": "h1", "right": "master", "share": "0.1"})
    elif kind == "zero":
        track["rights"][0]["share"] = draw(st.sampled_from([0, "0", "-0.5", -1, "1.5", 2, True]))
    elif kind == "genre":
        track["genre"] = draw(st.sampled_from(["LoFi", "", "lo fi", "x" * 65, 5]))
        codes = {"invalid_value", "wrong_type"}
    elif kind == "origin":
        track["ai_origin"] = draw(text.filter(
            lambda s: s not in ("human", "ai_assisted", "ai_generated")))
        codes = {"invalid_value"}
    elif kind == "rights_type":
        track["rights"] = draw(json_values.filter(lambda v: v is not None
                                                  and not isinstance(v, list)))
        codes = {"wrong_type"}
    elif kind == "right":
        track["rights"][0]["right"] = draw(text.filter(
            lambda s: s not in ("master", "publishing")))
        codes = {"invalid_value"}
    elif kind == "creator":
        del track["creator_id"]
        codes = {"missing_field"}
    else:
        return BadRecord(orjson.dumps(draw(st.lists(scalars, max_size=3))),
                         frozenset({"not_object"}), topic=TRACKS)
    return BadRecord(orjson.dumps(track), frozenset(codes), topic=TRACKS)


def collect_malformed(now_ms: int, t0_ms: int, examples: int,
                      per_example: int) -> tuple[list[BadElement], list[BadRecord]]:
    """Draw ``examples`` x ``per_example`` malformed inputs with Hypothesis (derandomized:
    the same inputs on every run)."""
    elements: list[BadElement] = []
    records: list[BadRecord] = []
    item = st.one_of(
        bad_use_element(now_ms, t0_ms), bad_use_element(now_ms, t0_ms),
        bad_use_record(), bad_track_record(t0_ms))

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(item, min_size=per_example, max_size=per_example))
    def draw_batch(items: list[BadElement | BadRecord]) -> None:
        for thing in items:
            (elements if isinstance(thing, BadElement) else records).append(thing)

    draw_batch()
    return elements, records
