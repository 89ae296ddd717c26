"""Range answers: the ground truth summed event by event, the sum of the days, and the
same with territories; and the counting invariants on generated input."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.ledger import (
    CatalogEntry,
    DayPartition,
    LedgerLocation,
    LedgerReader,
    LedgerWriter,
    RangeError,
)
from streamer.ledger.model import UNATTRIBUTED, derive_counts
from streamer.ledger.reader import day_start_ms
from tests.ledger.days import COUNTRIES, Day, Event, make_days

D1 = date(2026, 11, 1)
MICRO = 1_000_000


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[LedgerReader, dict[Any, Day]]:
    location = LedgerLocation(str(tmp_path_factory.mktemp("ranges") / "ledger"))
    writer = LedgerWriter(location, {})
    days = make_days(11, D1, 6, 2, 250)
    for key in sorted(days):
        if key != (D1 + timedelta(days=5), 1):  # day 6 stays partial
            writer.close(days[key].closed())
    return LedgerReader(location, 2), days


def _events(days: dict[Any, Day], first: date, last: date) -> list[Event]:
    return [e for (day, _), closed in days.items() if first <= day <= last
            for e in closed.events]


def _add(total: Any, part: Any) -> Any:
    if isinstance(total, dict):
        return {key: _add(total[key], part[key]) for key in total}
    return total + part


def test_track_range_equals_ground_truth_and_the_sum_of_its_days(
        ledger: tuple[LedgerReader, dict[Any, Day]]) -> None:
    reader, days = ledger
    last = D1 + timedelta(days=5)
    for track in ("trk-000", "trk-001", "trk-004", "trk-017"):
        answer = reader.track_usage(track, D1, last, by_territory=True)
        assert answer.closed == tuple(D1 + timedelta(days=n) for n in range(5))
        body = answer.body
        assert body["closed_days"] == 5
        assert (body["from"], body["to"]) == ("2026-11-01", "2026-11-06")
        assert body["start_ms"] == day_start_ms(D1)
        assert body["end_ms"] - body["start_ms"] == 6 * 86_400_000
        truth = Counter(e.use for e in _events(days, D1, last - timedelta(days=1))
                        if e.track_id == track)
        assert body["uses"] == {"create": truth["create"], "play": truth["play"]}
        daily = [reader.track_usage(track, D1 + timedelta(days=n), D1 + timedelta(days=n))
                 .body["uses"] for n in range(6)]
        summed = daily[0]
        for part in daily[1:]:
            summed = _add(summed, part)
        assert summed == body["uses"]
        by_country = {"create": 0, "play": 0}
        for counts in body["territories"].values():
            by_country = _add(by_country, counts)
        assert by_country == body["uses"]


def test_holder_range_equals_ground_truth_by_territory(
        ledger: tuple[LedgerReader, dict[Any, Day]]) -> None:
    reader, days = ledger
    first, last = D1 + timedelta(days=1), D1 + timedelta(days=4)
    truth: dict[tuple[str, str, str, str], list[int]] = {}
    for (day, _), closed in days.items():
        if first <= day <= last:
            for key, (n, w) in closed.holders().items():
                cell = truth.setdefault(key, [0, 0])
                cell[0] += n
                cell[1] += w
    for holder in ("label-a", "pub-y", "_unclaimed", "_unattributed"):
        body = reader.holder_usage(holder, first, last, by_territory=True).body
        assert body["closed_days"] == 4
        for right in ("master", "publishing"):
            for use in ("create", "play"):
                want = [sum(v[i] for (h, r, u, _), v in truth.items()
                            if (h, r, u) == (holder, right, use)) for i in (0, 1)]
                got = body["rights"][right]
                assert [got["uses"][use], got["weighted_micro"][use]] == want
                for country, counts in body["territories"].items():
                    cell = truth.get((holder, right, use, country), [0, 0])
                    assert [counts[right]["uses"][use],
                            counts[right]["weighted_micro"][use]] == cell
        assert sum(body["rights"]["master"]["uses"].values()) > 0


def test_genre_range_and_unknown_keys(ledger: tuple[LedgerReader, dict[Any, Day]]) -> None:
    reader, days = ledger
    last = D1 + timedelta(days=4)
    truth: Counter[tuple[str, str, str, str]] = Counter()
    for (day, _), closed in days.items():
        if day <= last:
            truth.update(closed.genres())
    body = reader.genre_usage("pop", D1, last, by_territory=True).body
    for origin, uses in body["uses_by_origin"].items():
        for use, n in uses.items():
            assert n == sum(v for (g, o, u, _), v in truth.items() if (g, o, u) == ("pop",
                                                                                    origin, use))
    nothing = reader.track_usage("no-such-track", D1, last, by_territory=True).body
    assert nothing["uses"] == {"create": 0, "play": 0} and nothing["territories"] == {}


def test_a_range_with_no_closed_day_answers_zeros(
        ledger: tuple[LedgerReader, dict[Any, Day]]) -> None:
    reader, _ = ledger
    body = reader.holder_usage("label-a", date(2025, 1, 1), date(2025, 1, 31)).body
    assert body["closed_days"] == 0
    assert body["rights"]["master"]["uses"] == {"create": 0, "play": 0}


@pytest.mark.parametrize(("first", "last", "parameter"), [
    (date(2026, 11, 2), date(2026, 11, 1), "to"),
    (date(2025, 1, 1), date(2026, 2, 5), "to"),
])
def test_bad_ranges_name_the_parameter(ledger: tuple[LedgerReader, dict[Any, Day]],
                                       first: date, last: date, parameter: str) -> None:
    reader, _ = ledger
    with pytest.raises(RangeError) as caught:
        reader.track_usage("trk-000", first, last)
    assert caught.value.parameter == parameter


def test_four_hundred_days_is_the_longest_range(
        ledger: tuple[LedgerReader, dict[Any, Day]]) -> None:
    reader, _ = ledger
    body = reader.track_usage("trk-000", D1 - timedelta(days=394), D1 + timedelta(days=5)).body
    assert body["closed_days"] == 5


_shares = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]),
                             st.integers(1, MICRO)), max_size=4).map(
    lambda pairs: tuple(dict(pairs).items())).filter(
    lambda pairs: sum(m for _, m in pairs) <= MICRO)

_entries = st.builds(CatalogEntry, track_id=st.sampled_from(["t1", "t2", "t3"]),
                     genre=st.sampled_from(["pop", "jazz"]),
                     ai_origin=st.sampled_from(["human", "ai_generated"]),
                     master=_shares, publishing=_shares)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_entries, max_size=5),
       uses=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(COUNTRIES[:4]),
                               st.sampled_from(["create", "play"]),
                               st.integers(1, 10**9)), max_size=30))
def test_weights_per_track_country_use_and_right_are_uses_times_a_million(
        entries: list[CatalogEntry], uses: list[tuple[int, str, str, int]]) -> None:
    attributions: Counter[tuple[str, str, str, str]] = Counter()
    for index, country, use, n in uses:
        if index < len(entries):
            entry = entries[index]
            attributions[(entry.track_id, country, use, entry.version)] += n
        else:
            attributions[(f"orphan{index}", country, use, UNATTRIBUTED)] += n
    closed = DayPartition.from_mappings(D1, 3, attributions, entries)
    counts = derive_counts(closed)
    # Per (track, country, use, right) from the ledger's own catalog and attribution rows.
    shares: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for row in closed.catalog.to_pylist():
        shares.setdefault((row["track_id"], row["catalog_version"]), []).append(
            (row["right"], row["holder_id"], row["share_micro"]))
    weights: Counter[tuple[str, str, str, str]] = Counter()
    for row in closed.attributions.to_pylist():
        for right, _, micro in shares[(row["track_id"], row["catalog_version"])]:
            weights[(row["track_id"], row["country"], row["use"], right)] += row["uses"] * micro
    tracks = {(r["track_id"], r["country"], r["use"]): r["uses"]
              for r in counts["tracks"].to_pylist()}
    assert {key: n for key, n in weights.items()} == {
        (t, c, u, right): n * MICRO for (t, c, u), n in tracks.items()
        for right in ("master", "publishing")}
    # And the holder table against the rule applied use by use.
    truth: dict[tuple[str, str, str, str], list[int]] = {}
    by_version = {(e.track_id, e.version): e for e in entries}
    for (track, country, use, version), n in attributions.items():
        for right in ("master", "publishing"):
            if version == UNATTRIBUTED:
                allocation: tuple[tuple[str, int], ...] = (("_unattributed", MICRO),)
            else:
                entry = by_version[(track, version)]
                given_shares = entry.master if right == "master" else entry.publishing
                rest = MICRO - sum(m for _, m in given_shares)
                allocation = given_shares + ((("_unclaimed", rest),) if rest else ())
            for holder, micro in allocation:
                cell = truth.setdefault((holder, right, use, country), [0, 0])
                cell[0] += n
                cell[1] += n * micro
    assert {(r["holder_id"], r["right"], r["use"], r["country"]): [r["uses"],
                                                                   r["weighted_micro"]]
            for r in counts["holders"].to_pylist()} == truth
    assert sum(tracks.values()) == sum(attributions.values())


def test_the_ledger_names_holders_as_the_pipeline_does() -> None:
    from streamer.events.validation import TrackMeta
    from streamer.pipeline import attribution

    assert (attribution.UNCLAIMED, attribution.UNATTRIBUTED) == ("_unclaimed", UNATTRIBUTED)
    meta = TrackMeta("pop", "human", (("a", 400_000),), (("b", 1_000_000),))
    entry = CatalogEntry.from_track_meta("t", meta)
    assert entry.allocation("master") == (("a", 400_000), ("_unclaimed", 600_000))
    assert entry.allocation("publishing") == (("b", 1_000_000),)
    assert entry.version == CatalogEntry("t", "pop", "human", meta.master,
                                         meta.publishing).version
    assert entry.version != CatalogEntry("t", "pop", "human", meta.master, meta.publishing,
                                         artist="Someone").version
