"""The flush's aggregation (plain fields once per (track, use, base); territory holder and
genre fields summed with numpy in pipeline/territory.py) against an oracle written here
from the field definitions: every cell attributed on its own, field by field, from its
track's metadata, with nothing shared with the code under test but the catalog version."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.config import Settings
from streamer.events.validation import TrackMeta
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_for, plan_version
from streamer.pipeline.flusher import Flusher
from streamer.state.catalog import CatalogCache
from streamer.state.partition import PartitionState

MICRO = 1_000_000
DAY = 86_400_000
MINUTE = 60_000
START = 1_715_904_000_000  # 2024-05-17 00:00 UTC

# Valid metadata: a right's shares add up to at most MICRO (validation rejects more), and
# exactly MICRO leaves nothing unclaimed.
holders = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "lbl-1", "pub|x"]),
                             st.sampled_from([1, 250_000, 333_333, 500_000, 999_999])),
                   max_size=3, unique_by=lambda h: h[0]).filter(
    lambda shares: sum(micro for _, micro in shares) <= MICRO)
metas = st.builds(TrackMeta, genre=st.sampled_from(["lofi", "ambient"]),
                  ai_origin=st.sampled_from(["human", "ai_generated"]),
                  master=holders.map(tuple), publishing=holders.map(tuple))
cell_keys = st.tuples(st.sampled_from(["t1", "t2", "t3", "t4", "unknown"]),
                      st.sampled_from(["create", "play"]),
                      st.sampled_from([START, START + MINUTE, START + DAY - MINUTE, START + DAY]),
                      st.sampled_from(["DE", "US", "FR", "ZZ"]))


def oracle(cells: dict, metas_of: dict[str, TrackMeta]) -> tuple[dict, dict, dict]:
    """Per base window and kind: the fields; the pending cells; the entries per day."""
    out: defaultdict = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    pending: dict = {}
    entries: defaultdict = defaultdict(dict)
    for (track, use, base, country), uses in cells.items():
        parts = out[base]
        parts["t"][f"{use}|{track}"] += uses
        parts["tt"][f"{use}|{country}|{track}"] += uses
        if use == "create":
            parts["z"][track] += uses
        meta = metas_of.get(track)
        if meta is None:
            pending.setdefault(track, {})[(use, base, country)] = uses
            continue
        parts["g"][f"{meta.ai_origin}|{use}|{meta.genre}"] += uses
        parts["tg"][f"{meta.ai_origin}|{use}|{country}|{meta.genre}"] += uses
        if use == "create":
            parts["zg"][f"{meta.genre}|{track}"] += uses
        for right, shares in (("master", meta.master), ("publishing", meta.publishing)):
            rest = MICRO - sum(micro for _, micro in shares)
            allocation = list(shares) + ([("_unclaimed", rest)] if rest else [])
            for holder, micro in allocation:
                parts["h"][f"{right}|{use}|u|{holder}"] += uses
                parts["h"][f"{right}|{use}|w|{holder}"] += uses * micro
                parts["th"][f"{right}|{use}|{country}|u|{holder}"] += uses
                parts["th"][f"{right}|{use}|{country}|w|{holder}"] += uses * micro
        version, entry = plan_version(plan_for(meta))
        parts["a"][f"{track}|{country}|{use}|{version}"] += uses
        entries[base - base % DAY][f"{track}|{version}"] = entry
    fields = {base: {kind: dict(values) for kind, values in parts.items()}
              for base, parts in out.items()}
    return fields, pending, dict(entries)


def per_day(by_base: dict, kind: str) -> dict:
    """A kind's fields summed per UTC day over the base windows (zeros left out)."""
    days: defaultdict = defaultdict(lambda: defaultdict(int))
    for base, parts in by_base.items():
        for field, value in parts.get(kind, {}).items():
            days[base - base % DAY][field] += value
    return {day: dict(fields) for day, fields in days.items() if fields}


FLUSHERS = {territory: Flusher(Settings() if territory else Settings(territory_windows=()),
                               None, CatalogCache(10), Metrics())  # type: ignore[arg-type]
            for territory in (True, False)}


@settings(max_examples=150, deadline=None)
@given(cells=st.dictionaries(cell_keys, st.integers(1, 10**9), min_size=1, max_size=40),
       track_metas=st.lists(metas, min_size=4, max_size=4), territory=st.booleans())
def test_aggregate_equals_the_cell_by_cell_definition(
        cells: dict, track_metas: list[TrackMeta], territory: bool) -> None:
    metas_of = dict(zip(["t1", "t2", "t3", "t4"], track_metas, strict=True))
    flusher = FLUSHERS[territory]
    assert bool(flusher.territory) == territory
    state = PartitionState(0, "o", 0, 300_000)
    plans = {track: plan_for(meta) for track, meta in metas_of.items()}
    by_base, entries = flusher._aggregate(state, dict(cells), plans)
    expected, pending, expected_entries = oracle(cells, metas_of)
    territory_kinds = {"tt", "th", "tg", "a"}
    for base in expected.keys() | by_base.keys():
        got = {kind: fields for kind, fields in by_base.get(base, {}).items()
               if fields and kind not in territory_kinds}
        want = {kind: fields for kind, fields in expected.get(base, {}).items()
                if kind not in territory_kinds}
        assert got == want, base
    # Territory fields may be set under any base window of their day (the flush sums a
    # day's base windows of the 1d territory window together): compared per day.
    for kind in territory_kinds:
        assert per_day(by_base, kind) == (per_day(expected, kind) if territory else {}), kind
    assert state.pending == pending
    assert entries == (expected_entries if territory else {})


HOUR = 3_600_000


@pytest.fixture
def monkeypatch_limits() -> Iterator[None]:
    """Restores territory.py's table limits after a test lowered them."""
    from streamer.pipeline import territory

    saved = territory._NAMES_LIMIT, territory._PLANS_LIMIT
    yield
    territory._NAMES_LIMIT, territory._PLANS_LIMIT = saved
    territory._tables = territory._Tables()
FLUSHER_1H_1D = Flusher(Settings(territory_windows=("1h", "1d")), None, CatalogCache(10),
                        Metrics())  # type: ignore[arg-type]


def per_window(by_base: dict, kind: str, size: int) -> dict:
    """A kind's fields summed per window of ``size`` over the base windows."""
    windows: defaultdict = defaultdict(lambda: defaultdict(int))
    for base, parts in by_base.items():
        for field, value in parts.get(kind, {}).items():
            windows[base - base % size][field] += value
    return {start: dict(fields) for start, fields in windows.items() if fields}


# The parity test's base windows, one moved into the next hour (1h and 1d windows).
TO_HOURS = {START: START, START + MINUTE: START + MINUTE, START + DAY - MINUTE: START + HOUR,
            START + DAY: START + DAY}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flushes=st.lists(st.dictionaries(cell_keys, st.integers(1, 10**6), min_size=1,
                                        max_size=30), min_size=1, max_size=4),
       track_metas=st.lists(metas, min_size=4, max_size=4),
       names_limit=st.integers(0, 40), plans_limit=st.integers(0, 3))
def test_successive_flushes_agree_with_the_definition_while_the_tables_are_replaced(
        monkeypatch_limits: None, flushes: list[dict], track_metas: list[TrackMeta],
        names_limit: int, plans_limit: int) -> None:
    """territory.py keeps holder, genre and country ids, field names and per-plan infos
    between flushes and replaces them when full: with tiny limits every few flushes (and
    plans rebuilt, as after a cache eviction), each flush still equals the definition,
    with 1h and 1d territory windows (base windows summed per hour, the finer one)."""
    from streamer.pipeline import territory

    territory._NAMES_LIMIT, territory._PLANS_LIMIT = names_limit, plans_limit
    metas_of = dict(zip(["t1", "t2", "t3", "t4"], track_metas, strict=True))
    for number, cells in enumerate(flushes):
        cells = {(track, use, TO_HOURS[base], country): uses
                 for (track, use, base, country), uses in cells.items()}
        state = PartitionState(0, "o", 0, 300_000)
        fresh = {track: TrackMeta(m.genre, m.ai_origin, m.master, m.publishing)
                 for track, m in metas_of.items()} if number % 2 else metas_of
        plans = {track: plan_for(meta) for track, meta in fresh.items()}
        by_base, entries = FLUSHER_1H_1D._aggregate(state, dict(cells), plans)
        expected, pending, expected_entries = oracle(cells, metas_of)
        for kind in ("tt", "th", "tg", "a"):
            assert per_window(by_base, kind, HOUR) == per_window(expected, kind, HOUR), kind
        assert state.pending == pending
        assert entries == expected_entries


def test_a_plans_territory_version_is_the_ledgers() -> None:
    """The version and entry territory.py makes per plan (without the ledger's
    CatalogEntry) are plan_version's, and CatalogEntry's for the same metadata, with and
    without report names and for the unattributed plan."""
    from streamer.ledger.model import CatalogEntry
    from streamer.pipeline.attribution import UNATTRIBUTED_PLAN
    from streamer.pipeline.territory import TerritoryCells

    named = TrackMeta("lofi", "human", (("a", 250_000), ("b", 1)), (("p", MICRO),),
                      title="Ümlaut \"quoted\"", isrc="QZ0000000001", artist="A", label=None)
    plain = TrackMeta("ambient", "ai_generated", (), (("p", 999_999),))
    cells = TerritoryCells((DAY,))
    for track, meta in (("n", named), ("p", plain)):
        plan = plan_for(meta)
        _, version, entry = cells.track(plan)
        assert (version, entry) == plan_version(plan)
        assert version == CatalogEntry.from_track_meta(track, meta).version
        assert CatalogEntry.from_json(track, entry) == CatalogEntry.from_track_meta(track, meta)
    assert cells.track(UNATTRIBUTED_PLAN)[1] == "_unattributed" == \
        CatalogEntry.unattributed("x").version
