"""Countries in the load generator and the ground truth per territory, without Kafka.

The territory truth (``GroundTruth.expected_territory`` / ``expected_ledger``) is checked
against a re-count from the generated records' bytes (the worker's rules written out
again here), and the country mix against the documented skew.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest
from test_loadgen import MICRO, RIGHT_NAMES, Meta, generate, meta_of, small_config

from streamer.events.validation import Rejected, parse_sound_used
from streamer.loadgen.config import LoadConfig
from streamer.loadgen.records import TRACKS
from streamer.loadgen.territories import ALL_TERRITORIES, CountryPicker, territory_weights
from streamer.verify.ledger_files import summed_over_countries
from streamer.verify.truth import DAY_MS, GroundTruth, fold_replaced_holders

CounterKey = tuple[Any, ...]


def recount_territory(gen: Any) -> dict[CounterKey, int]:
    """Ledger rows (per day and country) from the records, counted as the worker would."""
    lateness = gen.cfg.allowed_lateness_ms
    future = 300_000
    first: dict[str, Meta] = {}
    latest: dict[str, Meta] = {}
    seen: set[str] = set()
    wm: defaultdict[int, int] = defaultdict(int)
    counted: list[tuple[str, str, int, str, Meta | None]] = []
    for item in gen.sent:
        record = item.record
        if record.topic == TRACKS:
            try:
                event = orjson.loads(record.value)
                meta = meta_of(event)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError,
                    AssertionError):
                continue
            if event.get("occurred_at", 0) > item.now_ms + future or not isinstance(
                    event.get("genre"), str) or not str(event["track_id"]).startswith("trk"):
                continue
            first.setdefault(event["track_id"], meta)
            latest[event["track_id"]] = meta
            continue
        try:
            decoded = orjson.loads(record.value) if record.value else None
        except orjson.JSONDecodeError:
            continue
        if not decoded:
            continue
        for event in decoded if isinstance(decoded, list) else [decoded]:
            try:
                _, track_id, ts, use = parse_sound_used(event)
            except Rejected:
                continue
            if ts < wm[record.partition] - lateness or ts > item.now_ms + future:
                continue
            wm[record.partition] = max(wm[record.partition], ts)
            if event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            counted.append((track_id, use, ts, event["country"], latest.get(track_id)))
    rows: Counter[CounterKey] = Counter()
    for track_id, use, ts, country, known in counted:
        meta = known or first.get(track_id)
        day = ts - ts % DAY_MS
        rows[("tracks", day, track_id, country, use)] += 1
        if meta is None:
            weights = [(right, "_unattributed", MICRO) for right in RIGHT_NAMES]
        else:
            weights = []
            for right, holders in meta.rights:
                weights += list((right, h, m) for h, m in holders)
                rest = MICRO - sum(m for _, m in holders)
                if rest:
                    weights.append((right, "_unclaimed", rest))
            rows[("genres", day, meta.genre, meta.ai_origin, use, country)] += 1
        for right, holder, micro in weights:
            rows[("holders", day, holder, right, use, country, "uses")] += 1
            rows[("holders", day, holder, right, use, country, "weighted_micro")] += micro
    return dict(rows)


def test_territory_truth_matches_a_recount_of_the_records() -> None:
    gen = generate(small_config(duration_s=8.0, replace_share=0.05))
    want = recount_territory(gen)
    got = gen.truth.expected_ledger()
    assert got == want
    # The territory windows' counters (default 1d) are the same rows, renamed.
    renamed = {("ttrack" if k[0] == "tracks" else "tholder" if k[0] == "holders" else "tgenre",
                "1d", *k[1:]): v for k, v in want.items()}
    assert gen.truth.expected_territory() == renamed
    # The run crosses midnight: two days, many countries.
    assert len({k[1] for k in want}) == 2
    assert len(gen.truth.countries) > 25


def test_territory_rowssummed_over_countries_are_the_plain_day_counters() -> None:
    gen = generate(small_config(duration_s=8.0, replace_share=0.05))
    plain = {k: v for k, v in gen.truth.expected().items()
             if k[1] == "1d" and k[0] in ("track", "holder", "genre")}
    ledger = gen.truth.expected_ledger()
    summed: dict[CounterKey, int] = {}
    for day in {k[1] for k in ledger}:
        summed.update(summed_over_countries(ledger, day))
    assert summed == plain
    # Folding replaced holders works on every shape alike.
    assert sum(fold_replaced_holders(ledger).values()) <= sum(ledger.values())


def test_replaced_metadata_splits_territory_counts_at_the_replacement() -> None:
    truth = GroundTruth(windows=(("1d", DAY_MS),))
    rights = [{"holder_id": "a", "right": "master", "share": "1"}]
    track = {"track_id": "t", "genre": "pop", "ai_origin": "human", "rights": rights}
    truth.track_created(track)
    truth.use({"track_id": "t", "occurred_at": 5, "use": "play", "country": "DE"})
    truth.track_created({**track, "rights": [{"holder_id": "b", "right": "master",
                                             "share": "0.5"}]})
    truth.use({"track_id": "t", "occurred_at": 6, "use": "play", "country": "DE"})
    truth.use({"track_id": "u", "occurred_at": 7, "use": "create", "country": "IS"})
    rows = truth.expected_ledger()
    assert rows[("holders", 0, "a", "master", "play", "DE", "uses")] == 1
    assert rows[("holders", 0, "b", "master", "play", "DE", "weighted_micro")] == 500_000
    assert rows[("holders", 0, "_unclaimed", "master", "play", "DE", "uses")] == 1
    assert rows[("holders", 0, "_unattributed", "publishing", "create", "IS", "uses")] == 1
    assert rows[("tracks", 0, "t", "DE", "play")] == 2
    assert ("genres", 0, "pop", "human", "play", "DE") in rows


def test_countries_have_a_few_large_markets_and_a_long_tail() -> None:
    weights = territory_weights()
    shares = [share for _, share in weights]
    assert len(weights) == ALL_TERRITORIES == len({code for code, _ in weights})
    assert all(len(code) == 2 and code.isupper() for code, _ in weights)
    assert shares == sorted(shares, reverse=True)
    assert 0.15 < shares[0] < 0.25                      # the largest market
    assert 0.4 < sum(shares[:5]) < 0.55                 # the top five
    assert sum(shares[25:]) == pytest.approx(0.12)      # the long tail
    assert sum(1 for s in shares if s < 0.001) > 100    # many small markets
    assert [c for c, _ in territory_weights(5)] == ["US", "BR", "IN", "ID", "MX"]
    with pytest.raises(ValueError, match="countries"):
        LoadConfig(countries=0).validate()


def test_generated_countries_follow_the_weights_and_the_seed() -> None:
    picker = CountryPicker()
    assert picker.pick(0.0) == "US" and picker.pick(0.999999999) == picker.names[-1]
    one = generate(small_config(countries=12))
    again = generate(small_config(countries=12))
    assert one.truth.countries == again.truth.countries
    assert set(one.truth.countries) <= {code for code, _ in territory_weights(12)}
    counted = one.truth.countries
    total = sum(counted.values())
    assert counted.most_common(1)[0][0] == "US"
    assert abs(counted["US"] / total - dict(territory_weights(12))["US"]) < 0.05


def test_truth_file_round_trips_plain_territory_and_ledger_counters(tmp_path: Any) -> None:
    import argparse

    from streamer.config import load_settings
    from streamer.loadgen.cli import add_arguments, config_from_args, read_truth, write_truth

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--countries", "7"]), load_settings({}))
    assert cfg.countries == 7 and cfg.territory_windows == (("1d", DAY_MS),)
    truth = generate(small_config()).truth
    everything = {**truth.expected(), **truth.expected_territory(), **truth.expected_ledger()}
    path = tmp_path / "truth.jsonl"
    write_truth(str(path), everything)
    back = read_truth(str(path))
    assert back == everything
    assert {key[0] for key in back} >= {"track", "ttrack", "tracks", "tholder", "holders"}
