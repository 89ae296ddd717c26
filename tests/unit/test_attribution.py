"""Exact attribution of counted uses to tracks, holders, genres and trending."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.events.validation import TrackMeta
from streamer.pipeline.attribution import (
    UNATTRIBUTED,
    UNCLAIMED,
    add_attribution,
    attribute_uses,
    count_track_uses,
    plan_for,
)
from streamer.state.deltas import GENRE_RANKS, GENRES, HOLDERS, TRACKS, CounterDeltas

SETTINGS = settings(max_examples=300, deadline=None)
MICRO = 1_000_000
WINDOWS = (("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000))


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000


BASE = ms(2024, 5, 17, 13, 42)  # a 1m window start
STARTS = {"1m": BASE, "1h": ms(2024, 5, 17, 13), "1d": ms(2024, 5, 17)}


def plain(deltas: CounterDeltas) -> tuple[dict, dict]:
    """The deltas as plain dicts, dropping nothing (a defaultdict lookup would add keys)."""
    return ({key: dict(fields) for key, fields in deltas.hashes.items()},
            {key: dict(members) for key, members in deltas.trending.items()})


def test_constants() -> None:
    assert (UNCLAIMED, UNATTRIBUTED) == ("_unclaimed", "_unattributed")


def test_count_track_uses_creates_go_to_every_window_and_trending() -> None:
    deltas = CounterDeltas()
    count_track_uses(deltas, WINDOWS, "trk:1", "create", BASE, 3)
    hashes, trending = plain(deltas)
    assert hashes == {(TRACKS, name, start): {"create|trk:1": 3} for name, start in STARTS.items()}
    assert trending == {(name, start): {"trk:1": 3} for name, start in STARTS.items()}


def test_count_track_uses_plays_are_not_trending() -> None:
    deltas = CounterDeltas()
    count_track_uses(deltas, WINDOWS, "trk:1", "play", BASE, 5)
    count_track_uses(deltas, WINDOWS, "trk:1", "play", BASE, 2)
    hashes, trending = plain(deltas)
    assert hashes == {(TRACKS, name, start): {"play|trk:1": 7} for name, start in STARTS.items()}
    assert trending == {}


def test_attribute_uses_worked_example() -> None:
    meta = TrackMeta("lofi", "human", master=(("a", 500_000), ("b", 250_000)),
                     publishing=(("c", 1_000_000),))
    deltas = CounterDeltas()
    attribute_uses(deltas, WINDOWS, plan_for(meta), "create", BASE, 3, "trk")
    hashes, trending = plain(deltas)
    holders = {
        "master|create|u|a": 3, "master|create|w|a": 1_500_000,
        "master|create|u|b": 3, "master|create|w|b": 750_000,
        "master|create|u|_unclaimed": 3, "master|create|w|_unclaimed": 750_000,
        "publishing|create|u|c": 3, "publishing|create|w|c": 3_000_000,
    }
    expected = {}
    for name, start in STARTS.items():
        expected[(HOLDERS, name, start)] = holders
        expected[(GENRES, name, start)] = {"human|create|lofi": 3}
        # A create ranks the track in its genre's trending.
        expected[(GENRE_RANKS, name, start)] = {"lofi|trk": 3}
    assert hashes == expected
    assert trending == {}


def test_attribute_uses_without_metadata() -> None:
    deltas = CounterDeltas()
    attribute_uses(deltas, WINDOWS, plan_for(None), "play", BASE, 4, "trk")
    hashes, _ = plain(deltas)
    full = {
        "master|play|u|_unattributed": 4, "master|play|w|_unattributed": 4_000_000,
        "publishing|play|u|_unattributed": 4, "publishing|play|w|_unattributed": 4_000_000,
    }
    assert hashes == {(HOLDERS, name, start): full for name, start in STARTS.items()}
    assert not any(kind == GENRES for kind, _, _ in deltas.hashes)


def test_no_holders_means_the_whole_right_is_unclaimed() -> None:
    meta = TrackMeta("ambient", "ai_generated", master=(), publishing=(("p", 400_000),))
    deltas = CounterDeltas()
    attribute_uses(deltas, (("1m", 60_000),), plan_for(meta), "play", BASE, 2, "trk")
    holders = dict(deltas.hashes[(HOLDERS, "1m", BASE)])
    assert holders == {
        "master|play|u|_unclaimed": 2, "master|play|w|_unclaimed": 2_000_000,
        "publishing|play|u|p": 2, "publishing|play|w|p": 800_000,
        "publishing|play|u|_unclaimed": 2, "publishing|play|w|_unclaimed": 1_200_000,
    }


def test_a_holder_named_like_a_right_or_in_both_rights() -> None:
    meta = TrackMeta("lofi", "human", master=(("x", 1_000_000),), publishing=(("x", 1),))
    deltas = CounterDeltas()
    attribute_uses(deltas, (("1m", 60_000),), plan_for(meta), "create", BASE, 1, "trk")
    holders = dict(deltas.hashes[(HOLDERS, "1m", BASE)])
    assert holders["master|create|w|x"] == 1_000_000
    assert holders["publishing|create|w|x"] == 1
    assert holders["publishing|create|w|_unclaimed"] == 999_999
    assert "master|create|u|_unclaimed" not in holders


# -- the exactness property ---------------------------------------------------------------


@st.composite
def holder_shares(draw: st.DrawFn) -> tuple[tuple[str, int], ...]:
    """Distinct holders with micro shares adding up to at most 1,000,000."""
    names = draw(st.lists(st.text(min_size=1, max_size=12).filter(lambda n: "|" not in n
                                                                   and not n.startswith("_")),
                          max_size=8, unique=True))
    remaining = MICRO
    shares = []
    for index, name in enumerate(names):
        if remaining == 0:
            break
        last = index == len(names) - 1
        micro = remaining if last and draw(st.booleans()) else draw(st.integers(1, remaining))
        remaining -= micro
        shares.append((name, micro))
    return tuple(shares)


metas = st.builds(
    TrackMeta,
    genre=st.sampled_from(["lofi", "hyperpop", "ambient"]),
    ai_origin=st.sampled_from(["human", "ai_assisted", "ai_generated"]),
    master=holder_shares(),
    publishing=holder_shares(),
)


def _split(field: str) -> tuple[str, str, str, str]:
    right, use, kind, holder = field.split("|", 3)
    return right, use, kind, holder


@SETTINGS
@given(metas, st.lists(st.tuples(st.sampled_from(["create", "play"]),
                                 st.integers(min_value=1, max_value=10**9)), min_size=1,
                       max_size=5))
def test_weights_of_every_right_add_up_to_exactly_one_per_use(
    meta: TrackMeta, batches: list[tuple[str, int]]
) -> None:
    deltas = CounterDeltas()
    uses_by_kind: defaultdict[str, int] = defaultdict(int)
    for use, uses in batches:
        attribute_uses(deltas, WINDOWS, plan_for(meta), use, BASE, uses, "trk")
        uses_by_kind[use] += uses
    hashes, _ = plain(deltas)
    for name, start in STARTS.items():
        holders = hashes[(HOLDERS, name, start)]
        weights: defaultdict[tuple[str, str], int] = defaultdict(int)
        for field, value in holders.items():
            right, use, kind, holder = _split(field)
            assert isinstance(value, int)
            if kind == "w":
                weights[(right, use)] += value
            else:
                assert kind == "u"
                assert value == uses_by_kind[use], field
        for right in ("master", "publishing"):
            shares = dict(meta.holders(right))
            claimed = sum(shares.values())
            for use, uses in uses_by_kind.items():
                assert weights[(right, use)] == uses * MICRO
                for holder, micro in shares.items():
                    assert holders[f"{right}|{use}|w|{holder}"] == uses * micro
                unclaimed = f"{right}|{use}|w|{UNCLAIMED}"
                if claimed == MICRO:
                    assert unclaimed not in holders
                    assert f"{right}|{use}|u|{UNCLAIMED}" not in holders
                else:
                    assert holders[unclaimed] == uses * (MICRO - claimed)
            assert f"{right}|create|w|{UNATTRIBUTED}" not in holders
        genres = hashes[(GENRES, name, start)]
        assert genres == {f"{meta.ai_origin}|{use}|{meta.genre}": uses
                          for use, uses in uses_by_kind.items()}
        creates = uses_by_kind.get("create")
        assert hashes.get((GENRE_RANKS, name, start)) == (
            {f"{meta.genre}|trk": creates} if creates else None)


@SETTINGS
@given(st.sampled_from(["create", "play"]), st.integers(min_value=1, max_value=10**12))
def test_unattributed_always_full_weight(use: str, uses: int) -> None:
    deltas = CounterDeltas()
    attribute_uses(deltas, WINDOWS, plan_for(None), use, BASE, uses, "trk")
    for name, start in STARTS.items():
        assert dict(deltas.hashes[(HOLDERS, name, start)]) == {
            f"{right}|{use}|{kind}|_unattributed": uses * (MICRO if kind == "w" else 1)
            for right in ("master", "publishing") for kind in ("u", "w")
        }
    assert {kind for kind, _, _ in deltas.hashes} == {HOLDERS}


def test_shares_summing_to_exactly_one_leave_nothing_unclaimed() -> None:
    meta = TrackMeta("lofi", "human",
                     master=(("a", 333_333), ("b", 333_333), ("c", 333_334)),
                     publishing=(("d", 999_999),))
    deltas = CounterDeltas()
    attribute_uses(deltas, (("1m", 60_000),), plan_for(meta), "play", BASE, 7, "trk")
    holders = dict(deltas.hashes[(HOLDERS, "1m", BASE)])
    assert "master|play|w|_unclaimed" not in holders
    assert holders["publishing|play|w|_unclaimed"] == 7
    assert sum(v for f, v in holders.items() if f.startswith("master|play|w|")) == 7_000_000


# -- window expansion ----------------------------------------------------------------------

window_sets = st.sampled_from([
    (("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000)),
    (("5m", 300_000), ("15m", 900_000), ("1h", 3_600_000), ("1d", 86_400_000)),
    (("10s", 10_000), ("1m", 60_000)),
    (("1h", 3_600_000), ("7d", 604_800_000)),
    (("1d", 86_400_000),),
])


@SETTINGS
@given(window_sets, st.integers(min_value=0, max_value=2**47), st.sampled_from(["create", "play"]))
def test_each_configured_window_gets_the_window_containing_the_use(
    windows: tuple[tuple[str, int], ...], t: int, use: str
) -> None:
    base = windows[0][1]
    base_start = t - t % base
    meta = TrackMeta("lofi", "human", master=(("a", MICRO),), publishing=())
    deltas = CounterDeltas()
    count_track_uses(deltas, windows, "trk", use, base_start, 1)
    attribute_uses(deltas, windows, plan_for(meta), use, base_start, 1, "trk")
    attribute_uses(deltas, windows, plan_for(None), use, base_start, 1, "trk")
    by_kind: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for kind, name, start in deltas.hashes:
        assert name not in by_kind[kind], "one window start per size"
        by_kind[kind][name] = start
    assert set(by_kind) == {TRACKS, HOLDERS, GENRES} | ({GENRE_RANKS} if use == "create" else set())
    for kind, starts in by_kind.items():
        assert set(starts) == {name for name, _ in windows}, kind
        for name, size in windows:
            start = starts[name]
            assert start % size == 0
            assert start <= t < start + size  # the event's own time, not just the base start
    if use == "create":
        assert {name: start for name, start in deltas.trending} == by_kind[TRACKS]
    else:
        assert not deltas.trending


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (ms(2024, 12, 31, 23, 59, 59) + 999,
         {"5m": ms(2024, 12, 31, 23, 55), "1h": ms(2024, 12, 31, 23), "1d": ms(2024, 12, 31)}),
        (ms(2025, 1, 1),
         {"5m": ms(2025, 1, 1), "1h": ms(2025, 1, 1), "1d": ms(2025, 1, 1)}),
    ],
)
def test_window_expansion_utc_examples(t: int, expected: dict[str, int]) -> None:
    windows = (("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000))
    deltas = CounterDeltas()
    count_track_uses(deltas, windows, "trk", "play", t - t % 300_000, 1)
    assert {name: start for _, name, start in deltas.hashes} == expected


def test_counter_deltas_merge_adds() -> None:
    one, two = CounterDeltas(), CounterDeltas()
    assert not one
    count_track_uses(one, WINDOWS, "trk", "create", BASE, 2)
    count_track_uses(two, WINDOWS, "trk", "create", BASE, 3)
    count_track_uses(two, WINDOWS, "other", "play", BASE, 1)
    one.merge(two)
    assert one
    hashes, trending = plain(one)
    for name, start in STARTS.items():
        assert hashes[(TRACKS, name, start)] == {"create|trk": 5, "play|other": 1}
        assert trending[(name, start)] == {"trk": 5}


# -- plans: built from cached field names, equal to formatting every field --------------


def _reference_increments(meta: TrackMeta | None, use: str, uses: int) -> tuple[dict, dict]:
    """Holder and genre increments of ``uses`` uses as the field-by-field definition gives
    them (what a plan precomputes)."""
    holders: defaultdict[str, int] = defaultdict(int)
    for right in ("master", "publishing"):
        if meta is None:
            holders[f"{right}|{use}|u|{UNATTRIBUTED}"] += uses
            holders[f"{right}|{use}|w|{UNATTRIBUTED}"] += uses * MICRO
            continue
        claimed = 0
        for holder, micro in meta.holders(right):
            holders[f"{right}|{use}|u|{holder}"] += uses
            holders[f"{right}|{use}|w|{holder}"] += uses * micro
            claimed += micro
        if claimed < MICRO:
            holders[f"{right}|{use}|u|{UNCLAIMED}"] += uses
            holders[f"{right}|{use}|w|{UNCLAIMED}"] += uses * (MICRO - claimed)
    genres = {} if meta is None else {f"{meta.ai_origin}|{use}|{meta.genre}": uses}
    return dict(holders), genres


any_holders = st.lists(
    st.tuples(st.sampled_from(["a", "b", UNCLAIMED, UNATTRIBUTED, "master", "x|y", ""])
              | st.text(max_size=6), st.integers(1, MICRO)), max_size=5,
).map(tuple)
any_metas = metas | st.builds(TrackMeta, genre=st.text(max_size=4),
                              ai_origin=st.sampled_from(["human", "x"]),
                              master=any_holders, publishing=any_holders)


@SETTINGS
@given(meta_list=st.lists(any_metas, min_size=1, max_size=6),
       limit=st.integers(min_value=1, max_value=4),
       use=st.sampled_from(["create", "play"]), uses=st.integers(1, 10**9))
def test_plans_add_what_the_field_by_field_definition_gives(
        meta_list: list[TrackMeta], limit: int, use: str, uses: int) -> None:
    """Whatever the holder names (even the reserved ones) and however often the shared
    field tables fill up and are cleared, a plan adds what formatting each field gives."""
    from streamer.pipeline import attribution

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(attribution, "_FIELDS_LIMIT", limit)
        for meta in [None, *meta_list, *meta_list]:
            holders: dict[str, int] = {}
            genres: dict[str, int] = {}
            add_attribution(holders, genres, plan_for(meta), use, uses)
            assert (holders, genres) == _reference_increments(meta, use, uses)


@SETTINGS
@given(st.lists(any_metas, min_size=2, max_size=2))
def test_equal_plans_attribute_alike_and_equal_metadata_gives_equal_plans(
        pair: list[TrackMeta]) -> None:
    """The processor compares plans to decide whether a new TrackCreated changes how the
    track's earlier uses must be attributed: equal must mean the same increments."""
    one, two = pair
    if one == two:
        assert plan_for(one) == plan_for(two)
    if plan_for(one) == plan_for(two):
        for use in ("create", "play"):
            assert _reference_increments(one, use, 1) == _reference_increments(two, use, 1)
    fresh = TrackMeta(one.genre, one.ai_origin, one.master, one.publishing)
    assert plan_for(fresh) == plan_for(one)


def test_a_flush_over_two_days_gives_each_day_territory_counts_and_its_catalog_entries() -> None:
    """Territory on: one cell per (track, use, base, country); plain fields are the sums
    over countries; every day with attributions of a track carries the track's entry."""
    from streamer.config import Settings
    from streamer.metrics import Metrics
    from streamer.pipeline.attribution import plan_version
    from streamer.pipeline.flusher import Flusher
    from streamer.state.catalog import CatalogCache
    from streamer.state.partition import PartitionState

    day = 86_400_000
    first, second = STARTS["1d"], STARTS["1d"] + day
    meta = TrackMeta("lofi", "human", master=(("a", 600_000),), publishing=())
    flusher = Flusher(Settings(), None, CatalogCache(10), Metrics())  # type: ignore[arg-type]
    state = PartitionState(0, "o", 0, 300_000)
    cells = {("trk", "play", first, "DE"): 2, ("other", "play", first, "DE"): 1,
             ("trk", "play", second, "US"): 3, ("trk", "play", second, "DE"): 1}
    by_base, entries = flusher._aggregate(state, cells, {"trk": plan_for(meta)})
    version, entry = plan_version(plan_for(meta))
    assert entries == {first: {f"trk|{version}": entry}, second: {f"trk|{version}": entry}}
    assert by_base[second]["t"] == {"play|trk": 4}
    assert by_base[second]["tt"] == {"play|US|trk": 3, "play|DE|trk": 1}
    assert by_base[second]["th"] == {"master|play|US|u|a": 3, "master|play|US|w|a": 1_800_000,
                                     "master|play|US|u|_unclaimed": 3,
                                     "master|play|US|w|_unclaimed": 1_200_000,
                                     "publishing|play|US|u|_unclaimed": 3,
                                     "publishing|play|US|w|_unclaimed": 3_000_000,
                                     "master|play|DE|u|a": 1, "master|play|DE|w|a": 600_000,
                                     "master|play|DE|u|_unclaimed": 1,
                                     "master|play|DE|w|_unclaimed": 400_000,
                                     "publishing|play|DE|u|_unclaimed": 1,
                                     "publishing|play|DE|w|_unclaimed": 1_000_000}
    assert by_base[second]["h"]["master|play|w|a"] == 2_400_000
    assert by_base[second]["tg"] == {"human|play|US|lofi": 3, "human|play|DE|lofi": 1}
    assert by_base[second]["a"] == {f"trk|US|play|{version}": 3, f"trk|DE|play|{version}": 1}
    assert state.pending == {"other": {("play", first, "DE"): 1}}


def _reference_plan(meta: TrackMeta) -> tuple[object, ...]:
    """The plan's layout (the module docstring), every field formatted from its parts."""
    from streamer.state.keys import genre_field, holder_field

    names = {name: getattr(meta, name) for name in ("title", "isrc", "artist", "label")
             if getattr(meta, name) is not None}
    plan: list[object] = [genre_field(meta.ai_origin, "create", meta.genre),
                          genre_field(meta.ai_origin, "play", meta.genre),
                          orjson.dumps(names) if names else None]
    for right in ("master", "publishing"):
        holders = list(meta.holders(right))
        claimed = sum(micro for _, micro in holders)
        if claimed < MICRO:
            holders.append((UNCLAIMED, MICRO - claimed))
        for holder, micro in holders:
            plan.append(tuple(holder_field(right, use, kind, holder)
                              for use in ("create", "play") for kind in ("u", "w")))
            plan.append(micro)
    return tuple(plan)


report_names = st.none() | st.text(max_size=5)


@SETTINGS
@given(meta_list=st.lists(st.builds(
    TrackMeta, genre=st.text(max_size=4), ai_origin=st.sampled_from(["human", "x"]),
    master=any_holders, publishing=any_holders, title=report_names, isrc=report_names,
    artist=report_names, label=report_names), min_size=1, max_size=6),
    limit=st.integers(min_value=1, max_value=4))
def test_build_plan_is_the_documented_layout(meta_list: list[TrackMeta], limit: int) -> None:
    """build_plan (shared field tables, holder fields from per-right prefixes, the two
    rights unrolled) against the layout written out field by field, report names
    included, with the tables filling up and being cleared."""
    from streamer.pipeline import attribution

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(attribution, "_FIELDS_LIMIT", limit)
        for meta in [*meta_list, *meta_list]:
            built = attribution.build_plan(meta)
            expected = _reference_plan(meta)
            assert built[:2] == expected[:2] and built[3:] == expected[3:]
            report = built[2]
            assert (orjson.loads(report) if report is not None else None) == (
                orjson.loads(expected[2]) if expected[2] is not None else None)
