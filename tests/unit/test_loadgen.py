"""The load generator (streamer/loadgen) without Kafka: determinism, ground truth, faults.

Benchmarks and fault tests trust the generator's ground truth to tell lost from double
counts, so it is checked here against an independent re-count: the generated Kafka
records are decoded and counted with the worker's rules written out again in this file
(per-topic event id dedupe, per-partition watermark lateness, the future tolerance,
whole-record rejections, tumbling UTC windows, rights weights with ``_unclaimed`` and
``_unattributed``). Validity of single events is decided by ``streamer.events.validation``,
the worker's own validator, so the invalid inputs the generator claims to produce are
proven to be rejected where it matters.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.config import Settings, load_settings
from streamer.events.validation import Rejected, parse_sound_used, parse_track_created
from streamer.loadgen.cli import START_MARGIN_MS, add_arguments, default_start_ms
from streamer.loadgen.cli import main as load_main
from streamer.loadgen.config import LoadConfig
from streamer.loadgen.model import (
    FUTURE_OCCURRED_AT_MS,
    ModelStats,
    Tick,
    TrafficModel,
    partition_of,
)
from streamer.loadgen.records import TRACKS, USES, Record, RecordBuilder
from streamer.loadgen.sender import KafkaUnreachable, check_kafka
from streamer.verify import PartitionedTruth
from streamer.verify.truth import merge_expected

# Three seconds before midnight UTC: a short run crosses a minute, an hour and a day.
START_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000) - 3_000
PARTITIONS = 6
WORKER: Settings = load_settings({})
MICRO = 1_000_000
RIGHT_NAMES = ("master", "publishing")
CounterKey = tuple[Any, ...]

SMALL = settings(max_examples=8, deadline=None)


def small_config(**changes: Any) -> LoadConfig:
    """A few thousand uses with every kind of fault, crossing window boundaries."""
    base: dict[str, Any] = dict(
        seed=7, start_ms=START_MS, duration_s=6.0, use_rate=600.0, catalog=300,
        track_rate=25.0, initial_trending=5, trend_prob=0.05, duplicate_rate=0.03,
        late_rate=0.02, invalid_rate=0.03, early_rate=0.3, batch_events=40)
    base.update(changes)
    return LoadConfig(**base)


# -- generating -----------------------------------------------------------------------


@dataclass
class Sent:
    """One record as the sender would send it, with its send time and tick number."""

    now_ms: int    # simulated wall clock when sent (speed 1: the tick's end)
    tick: int      # 0: the catalog preamble
    record: Record


@dataclass
class Generated:
    cfg: LoadConfig
    sent: list[Sent]
    truth: PartitionedTruth
    stats: ModelStats

    def raw(self) -> list[tuple[int, int, bytes, bytes]]:
        return [(s.record.topic, s.record.partition, s.record.key, s.record.value)
                for s in self.sent]


def generate(cfg: LoadConfig, *, owned: set[int] | None = None, partitions: int = PARTITIONS,
             max_ticks: int | None = None) -> Generated:
    """Run the model and cut records like ``sender._send_all`` at speed 1.

    ``max_ticks`` stops after that many ticks (the held-back TrackCreated are never sent).
    """
    truth = PartitionedTruth(windows=cfg.windows, allowed_lateness_ms=cfg.allowed_lateness_ms)
    model = TrafficModel(cfg, partitions, owned, truth, catalog_ms=cfg.start_ms)
    builder = RecordBuilder(cfg.batch_events, cfg.linger_ms or None)
    catalog = model.catalog_tick()
    sent = [Sent(catalog.end_ms, 0, r) for r in builder.add(catalog)]
    now, number = catalog.end_ms, 0
    for number, tick in enumerate(model.ticks(cfg.start_ms), start=1):
        now = tick.end_ms
        sent += [Sent(now, number, r) for r in builder.add(tick)]
        if max_ticks is not None and number >= max_ticks:
            break
    sent += [Sent(now, number, r) for r in builder.flush()]
    return Generated(cfg, sent, truth, model.stats)


# -- the independent re-count ----------------------------------------------------------


def share_micro(value: object) -> int:
    """A valid share as millionths, read as a decimal (never through float arithmetic)."""
    exact = Decimal(value) if isinstance(value, str) else Decimal(str(value))
    micro = exact * MICRO
    assert micro == micro.to_integral_value(), value
    return int(micro)


@dataclass(frozen=True)
class Meta:
    genre: str
    ai_origin: str
    rights: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]   # right -> ((holder, micro))


def meta_of(event: dict[str, Any]) -> Meta:
    per_right: dict[str, list[tuple[str, int]]] = {right: [] for right in RIGHT_NAMES}
    for entry in event["rights"]:
        per_right[entry["right"]].append((entry["holder_id"], share_micro(entry["share"])))
    return Meta(event["genre"], event["ai_origin"],
                tuple((right, tuple(per_right[right])) for right in RIGHT_NAMES))


@dataclass
class Recount:
    expected: dict[CounterKey, int]
    counted: int = 0
    duplicates: int = 0
    late: int = 0
    late_margins: list[int] = field(default_factory=list)   # ms past the edge, per late use
    inside_margins: list[int] = field(default_factory=list)  # ms inside it, per counted use
    invalid: int = 0                 # rejected use elements and whole use records
    early: int = 0                   # counted uses sent before their track's TrackCreated
    codes: Counter[str] = field(default_factory=Counter)
    tracks_accepted: int = 0
    tracks_duplicate: int = 0
    tracks_invalid: int = 0
    track_codes: Counter[str] = field(default_factory=Counter)
    metas: dict[str, Meta] = field(default_factory=dict)         # the latest per track
    first_metas: dict[str, Meta] = field(default_factory=dict)   # the first per track
    replaced: set[str] = field(default_factory=set)
    new_tracks: set[str] = field(default_factory=set)     # accepted after the preamble
    early_tracks: set[str] = field(default_factory=set)
    uses: list[tuple[str, str, int]] = field(default_factory=list)   # counted (track, use, ts)
    # per counted use, the metadata known when it was counted (None: none yet)
    use_metas: list[Meta | None] = field(default_factory=list)
    use_partitions: list[int] = field(default_factory=list)   # per counted use


def recount(sent: Iterable[Sent], windows: Iterable[tuple[str, int]],
            lateness_ms: int) -> Recount:
    """Count the records as the worker would, from their bytes alone."""
    future_ms = WORKER.future_tolerance_ms
    out = Recount(expected={})
    seen_tracks: set[str] = set()
    seen_uses: set[str] = set()
    watermark: defaultdict[int, int] = defaultdict(int)
    for item in sent:
        record, now = item.record, item.now_ms
        if record.topic == TRACKS:
            try:
                event = orjson.loads(record.value)
                parse_track_created(event)
                if event["occurred_at"] > now + future_ms:
                    raise Rejected("future", "occurred_at", "ahead of the wall clock")
            except Rejected as exc:
                out.tracks_invalid += 1
                out.track_codes[exc.code] += 1
                continue
            if event["event_id"] in seen_tracks:
                out.tracks_duplicate += 1
                continue
            seen_tracks.add(event["event_id"])
            out.tracks_accepted += 1
            meta = meta_of(event)
            # A newer TrackCreated replaces the metadata for the uses after it.
            if out.first_metas.setdefault(event["track_id"], meta) != meta:
                out.replaced.add(event["track_id"])
            out.metas[event["track_id"]] = meta
            if item.tick > 0:
                out.new_tracks.add(event["track_id"])
            continue
        value = record.value
        if not value or len(value) > WORKER.max_record_bytes:
            out.invalid += 1
            out.codes["empty_or_too_large"] += 1
            continue
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            out.invalid += 1
            out.codes["not_json"] += 1
            continue
        if isinstance(decoded, list):
            if not decoded or len(decoded) > WORKER.max_batch_events:
                out.invalid += 1
                out.codes["empty_batch" if not decoded else "batch_too_large"] += 1
                continue
            events = decoded
        else:
            events = [decoded]
        wm = watermark[record.partition]
        for event in events:
            try:
                _, track_id, ts, use = parse_sound_used(event)
            except Rejected as exc:
                out.invalid += 1
                out.codes[exc.code] += 1
                continue
            if ts < wm - lateness_ms:
                out.late += 1
                out.late_margins.append(wm - lateness_ms - ts)
                continue
            if ts > now + future_ms:
                out.invalid += 1
                out.codes["future"] += 1
                continue
            wm = max(wm, ts)
            if event["event_id"] in seen_uses:
                out.duplicates += 1
                continue
            seen_uses.add(event["event_id"])
            out.counted += 1
            if wm:
                out.inside_margins.append(ts - (wm - lateness_ms))
            out.uses.append((track_id, use, ts))
            out.use_metas.append(out.metas.get(track_id))
            out.use_partitions.append(record.partition)
            if track_id not in out.metas:
                out.early += 1
                out.early_tracks.add(track_id)
        watermark[record.partition] = wm
    out.expected = expand(out.uses, out.first_metas, windows, out.use_metas)
    return out


def expand(uses: Iterable[tuple[str, str, int]], metas: dict[str, Meta],
           windows: Iterable[tuple[str, int]],
           use_metas: Iterable[Meta | None] | None = None) -> dict[CounterKey, int]:
    """Counted uses to counters, per the spec: one cell per window the use falls in.

    A use is attributed with ``use_metas``' entry (the metadata when it was counted), or
    if that is None with ``metas`` (the first TrackCreated that came after it)."""
    counters: defaultdict[CounterKey, int] = defaultdict(int)
    windows = tuple(windows)
    uses = list(uses)
    known = list(use_metas) if use_metas is not None else [None] * len(uses)
    for (track_id, use, ts), when_counted in zip(uses, known, strict=True):
        meta = when_counted or metas.get(track_id)
        if meta is None:   # its TrackCreated never came
            weights = [(right, "_unattributed", MICRO) for right in RIGHT_NAMES]
        else:
            weights = []
            for right, holders in meta.rights:
                weights += [(right, holder, micro) for holder, micro in holders]
                claimed = sum(micro for _, micro in holders)
                assert claimed <= MICRO
                if claimed < MICRO:
                    weights.append((right, "_unclaimed", MICRO - claimed))
        for name, size in windows:
            start = ts - ts % size
            assert start <= ts < start + size
            counters[("track", name, start, track_id, use)] += 1
            if use == "create":
                counters[("trending", name, start, track_id)] += 1
            for right, holder, micro in weights:
                counters[("holder", name, start, holder, right, use, "uses")] += 1
                counters[("holder", name, start, holder, right, use, "weighted_micro")] += micro
            if meta is not None:
                counters[("genre", name, start, meta.genre, meta.ai_origin, use)] += 1
    return dict(counters)


def first_differences(expected: dict[CounterKey, int], actual: dict[CounterKey, int],
                      limit: int = 10) -> list[tuple[CounterKey, int | None, int | None]]:
    keys = sorted(expected.keys() ^ actual.keys() | {
        k for k in expected.keys() & actual.keys() if expected[k] != actual[k]}, key=repr)
    return [(k, expected.get(k), actual.get(k)) for k in keys[:limit]]


def assert_truth_matches(gen: Generated) -> Recount:
    again = recount(gen.sent, gen.cfg.windows, gen.cfg.allowed_lateness_ms)
    truth = gen.truth.expected()
    assert truth == again.expected, first_differences(again.expected, truth)
    # Benchmarks reconcile one partition's Redis shard at a time. A track lives on one
    # partition, so a shard is the recount's uses of that partition, expanded alone.
    for partition in {s.record.partition for s in gen.sent} | gen.truth.parts.keys():
        mine = [i for i, p in enumerate(again.use_partitions) if p == partition]
        shard = expand([again.uses[i] for i in mine], again.first_metas, gen.cfg.windows,
                       [again.use_metas[i] for i in mine])
        assert gen.truth.expected_for(partition) == shard, partition
    # The generator's own bookkeeping agrees with what its records say.
    stats = gen.stats
    assert (again.counted, again.duplicates, again.late, again.invalid) == (
        stats.uses_counted, stats.duplicates, stats.late, stats.invalid)
    # early_uses counts the deliberate early uses only; ordinary picks of a new track
    # can also precede its delayed TrackCreated. In batches, a partly filled batch is
    # cut after the last tick, behind the TrackCreated that tick released.
    if gen.cfg.batch_events == 1:
        assert again.early >= stats.early_uses
    assert (again.tracks_accepted, again.tracks_invalid) == (
        stats.tracks_created, stats.tracks_invalid)
    return again


def within(observed: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    """Binomial count within ``sigmas`` standard deviations of its mean (fixed seeds)."""
    return abs(observed - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p)) + 1


# -- determinism ------------------------------------------------------------------------


@SMALL
@given(seed=st.integers(0, 2**40), batch=st.sampled_from([1, 25, 500]))
def test_same_seed_and_config_give_byte_identical_records(seed: int, batch: int) -> None:
    """Reruns must reproduce a benchmark exactly, so nothing may depend on the clock."""
    cfg = small_config(seed=seed, batch_events=batch, duration_s=2.0)
    first = generate(cfg)
    with mock.patch("time.time", return_value=time.time() + 86_400.0):  # a day later
        second = generate(replace(cfg))
    assert first.raw() == second.raw()
    assert first.truth.expected() == second.truth.expected()
    other = generate(replace(cfg, seed=seed + 1))
    assert other.raw() != first.raw()
    # Not just the event ids: what the tracks are and who uses them differs too.
    assert {k for k in other.truth.expected() if k[0] == "holder"} != {
        k for k in first.truth.expected() if k[0] == "holder"}


@pytest.mark.parametrize("processes", [2, 4])
def test_several_processes_together_send_what_one_sends(processes: int) -> None:
    """LoadRun splits partitions over processes; their union and merged truth must be exact."""
    cfg = small_config(seed=11)
    alone = generate(cfg)
    parts = [generate(replace(cfg), owned={p for p in range(PARTITIONS) if p % processes == i})
             for i in range(processes)]

    def per_partition(gens: Iterable[Generated]) -> dict[tuple[int, int], list[bytes]]:
        out: defaultdict[tuple[int, int], list[bytes]] = defaultdict(list)
        for gen in gens:
            for s in gen.sent:
                out[(s.record.topic, s.record.partition)].append(s.record.value)
        return dict(out)

    assert per_partition(parts) == per_partition([alone])
    assert merge_expected([p.truth.expected() for p in parts]) == alone.truth.expected()
    joined = PartitionedTruth(cfg.windows, cfg.allowed_lateness_ms)
    for part in parts:
        joined.update(part.truth)
    assert joined.expected() == alone.truth.expected()
    assert joined.parts.keys() == alone.truth.parts.keys()
    for partition in alone.truth.parts:
        assert joined.expected_for(partition) == alone.truth.expected_for(partition)
    with pytest.raises(ValueError, match="in both truths"):
        joined.update(parts[0].truth)
    total = ModelStats()
    for part in parts:
        total.add(part.stats)
    assert total.to_dict() == alone.stats.to_dict()


def test_merged_stats_count_each_trending_track_once() -> None:
    """result.json reports the summed stats of all sending processes; each must be exact."""
    cfg = small_config(seed=11, trend_prob=0.3)
    alone = generate(cfg)
    total = ModelStats()
    for i in range(2):
        total.add(generate(replace(cfg), owned={p for p in range(PARTITIONS) if p % 2 == i}).stats)
    assert alone.stats.trending_started > 0
    assert total.trending_started == alone.stats.trending_started


def test_records_go_to_the_partition_of_their_key() -> None:
    """The worker relies on Kafka's partitioner: a track's events all land on one partition."""
    gen = generate(small_config(batch_events=1))
    checked = 0
    for s in gen.sent:
        assert s.record.partition == partition_of(s.record.key.decode(), PARTITIONS)
        if s.record.topic == USES:
            try:
                track_id = parse_sound_used(orjson.loads(s.record.value))[1]
            except (orjson.JSONDecodeError, Rejected):
                continue
            assert track_id.encode() == s.record.key
            checked += 1
    assert checked > 1_000


# -- ground truth -----------------------------------------------------------------------


@pytest.mark.parametrize("batch_events", [1, 40])
def test_ground_truth_equals_an_independent_recount(batch_events: int) -> None:
    """Reconciliation in benchmarks is only as good as this truth: it must be exact."""
    gen = generate(small_config(batch_events=batch_events))
    again = assert_truth_matches(gen)
    # Not vacuous: every rule was exercised by this stream.
    assert again.counted > 3_000 and again.duplicates and again.late and again.invalid
    assert again.early_tracks and again.tracks_duplicate and again.tracks_invalid
    keys = again.expected.keys()
    assert {k[3] for k in keys if k[0] == "holder"} >= {"_unclaimed"}
    assert {k[1:3] for k in keys if k[0] == "track"} >= {  # both sides of every boundary
        (name, START_MS - START_MS % size + size * step)
        for name, size in gen.cfg.windows for step in (0, 1)}
    assert any(k[0] == "trending" for k in keys)


def test_uses_whose_track_never_arrives_are_unattributed() -> None:
    """Stopped mid-run, early tracks have uses but no TrackCreated yet: ``_unattributed``."""
    cfg = small_config(early_rate=0.9, track_rate=60.0)
    gen = generate(cfg, max_ticks=3)   # 3 of 6 simulated seconds
    again = assert_truth_matches(gen)
    waiting = {t for t, _, _ in again.uses} - again.metas.keys()
    assert waiting, "the cut should leave some tracks without TrackCreated"
    unattributed = sum(v for k, v in again.expected.items()
                       if k[0] == "holder" and k[3] == "_unattributed" and k[6] == "uses")
    waiting_uses = sum(1 for t, _, _ in again.uses if t in waiting)
    assert unattributed == waiting_uses * len(cfg.windows) * len(RIGHT_NAMES)


def test_holder_weights_of_every_use_add_up_to_one_whole_right() -> None:
    """Money is split by weighted_micro: per use and right the weights must sum to 1e6."""
    gen = generate(small_config())
    expected = gen.truth.expected()
    uses: defaultdict[tuple[Any, ...], int] = defaultdict(int)
    weighted: defaultdict[tuple[Any, ...], int] = defaultdict(int)
    for key, value in expected.items():
        if key[0] == "track":
            uses[(key[1], key[2], key[4])] += value
        elif key[0] == "holder" and key[6] == "weighted_micro":
            weighted[(key[1], key[2], key[4], key[5])] += value
    assert weighted
    for (window, start, right, use), value in weighted.items():
        assert right in RIGHT_NAMES
        assert value == uses[(window, start, use)] * MICRO


# Each example is a whole generated stream recounted (~0.3 s): 40 cover the mixes of
# fault rates, record shapes, windows and lateness far better than 8 did.
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    batch=st.sampled_from([1, 3, 60]),
    faults=st.tuples(st.floats(0, 0.1), st.floats(0, 0.1), st.floats(0, 0.1),
                     st.floats(0, 1)),
    shares=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    windows=st.sampled_from([
        (("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000)),
        (("10s", 10_000), ("1m", 60_000)),
        (("7s", 7_000), ("1h", 3_600_000)),
    ]),
    lateness=st.sampled_from([60_000, 600_000, 3_600_000]),
    replace=st.floats(0, 0.2),
)
def test_ground_truth_matches_recount_for_any_seed_and_mix(
    seed: int, batch: int, faults: tuple[float, float, float, float],
    shares: tuple[float, float], windows: tuple[tuple[str, int], ...], lateness: int,
    replace: float,
) -> None:
    """Exactness must not hinge on one lucky seed or on the default windows."""
    duplicate, late, invalid, early = faults
    cfg = small_config(seed=seed, batch_events=batch, duration_s=3.0, use_rate=400.0,
                       duplicate_rate=duplicate, late_rate=late, invalid_rate=invalid,
                       early_rate=early, ai_share=shares[0], create_share=shares[1],
                       windows=windows, allowed_lateness_ms=lateness, replace_share=replace)
    assert_truth_matches(generate(cfg))


def test_ground_truth_stays_exact_with_a_one_minute_allowed_lateness() -> None:
    """``streamer load`` passes the worker's lateness on; a 60 s setting must still reconcile."""
    cfg = small_config(allowed_lateness_ms=60_000, early_rate=0.5, late_rate=0.0)
    assert_truth_matches(generate(cfg))


def test_future_events_stay_invalid_when_an_old_start_is_replayed() -> None:
    """--start-ms is documented for byte-identical reruns; a rerun next month must reconcile."""
    now = int(time.time() * 1000)
    cfg = small_config(start_ms=now - 31 * 86_400_000)
    gen = generate(cfg)
    replayed = [Sent(now, s.tick, s.record) for s in gen.sent]   # a backlog sent today
    again = recount(replayed, cfg.windows, cfg.allowed_lateness_ms)
    assert again.expected == gen.truth.expected(), first_differences(
        again.expected, gen.truth.expected(), limit=3)
    assert again.codes["future"] > 0 and again.invalid == gen.stats.invalid


# -- the mix of traffic -----------------------------------------------------------------


def test_configured_fractions_are_honoured() -> None:
    """Benchmarks quote these rates, so the stream must really contain them."""
    cfg = small_config(seed=3, duration_s=20.0, use_rate=2_500.0, catalog=3_000,
                       track_rate=150.0, trend_prob=0.0, initial_trending=0,
                       duplicate_rate=0.03, late_rate=0.02, invalid_rate=0.02,
                       early_rate=0.25, ai_share=0.3, create_share=0.1, batch_events=200)
    gen = generate(cfg)
    again = assert_truth_matches(gen)
    # Every non-early use draws one kind: duplicate, late, invalid or plain.
    picks = again.counted - again.early + again.late + again.invalid
    assert picks > 40_000
    assert within(again.duplicates, picks, cfg.duplicate_rate)
    # A third of the late draws is sent just inside the edge (counted), where possible.
    assert within(again.late + gen.stats.late_inside, picks, cfg.late_rate)
    assert within(again.late, picks, cfg.late_rate * 2 / 3, sigmas=8)
    assert within(again.invalid, picks, cfg.invalid_rate)
    creates = sum(1 for _, use, _ in again.uses if use == "create")
    assert within(creates, again.counted, cfg.create_share)
    origins = Counter(meta.ai_origin for meta in again.metas.values())
    assert within(origins["ai_generated"] + origins["ai_assisted"], len(again.metas),
                  cfg.ai_share)
    new = len(again.new_tracks)
    assert new > 2_000
    assert within(len(again.early_tracks), new, cfg.early_rate)
    assert again.early_tracks <= again.new_tracks        # catalog tracks are never early
    assert within(again.tracks_invalid, new, cfg.invalid_rate)
    assert within(again.tracks_duplicate, new - len(again.early_tracks), cfg.duplicate_rate)


def test_hard_cases_reach_every_edge_the_worker_has() -> None:
    """Late uses just past and just inside the allowed lateness, duplicates spread over
    the whole dedupe horizon, metadata replaced mid-run: every run reconciles them."""
    cfg = small_config(duration_s=420.0, use_rate=60.0, track_rate=1.0, catalog=200,
                       duplicate_rate=0.05, late_rate=0.05, invalid_rate=0.0,
                       allowed_lateness_ms=120_000,
                       dedupe_horizon_ms=300_000, replace_share=0.05, batch_events=7)
    gen = generate(cfg)
    again = assert_truth_matches(gen)
    assert [m for m in again.late_margins if m <= 5_000], "none just past the edge"
    assert [m for m in again.late_margins if m > 60_000], "none far past the edge"
    assert [m for m in again.inside_margins if 0 < m <= 5_000], "none just inside the edge"
    # Duplicates: sent up to the horizon (here capped by the 120 s lateness) after the
    # original, and spread over it, each recognised (the recount remembers every id).
    sent_at: dict[bytes, list[int]] = defaultdict(list)
    for item in gen.sent:
        if item.record.topic == USES:
            with_ids = orjson.loads(item.record.value)
            for event in with_ids if isinstance(with_ids, list) else [with_ids]:
                if isinstance(event, dict) and "event_id" in event:
                    sent_at[event["event_id"]].append(item.now_ms)
    gaps = sorted(times[1] - times[0] for times in sent_at.values() if len(times) == 2)
    assert len(gaps) > 50
    limit = cfg.duplicate_delay_max_ms
    assert limit > 100_000
    assert gaps[-1] > 0.8 * limit and gaps[len(gaps) // 2] > 0.3 * limit, gaps[::10]
    assert gaps[-1] <= limit + cfg.jitter_ms + 2_000
    # Replacements: the split changed for the uses after it, the old one kept before.
    assert gen.stats.tracks_replaced and again.replaced
    holders = {k[3] for k in again.expected if k[0] == "holder"}
    assert {h for h in holders if h.endswith("-l0")} and {h for h in holders if h.endswith("-l1")}


def test_zero_fault_rates_give_a_clean_stream() -> None:
    """With faults off, every use sent is counted once: no stray faults leak in."""
    cfg = small_config(duplicate_rate=0.0, late_rate=0.0, invalid_rate=0.0, early_rate=0.0)
    again = assert_truth_matches(generate(cfg))
    assert (again.duplicates, again.late, again.invalid, again.early) == (0, 0, 0, 0)
    assert (again.tracks_duplicate, again.tracks_invalid) == (0, 0)


@pytest.mark.parametrize("zipf", [0.9, 1.1, 1.5])
def test_popularity_is_heavy_tailed_like_zipf(zipf: float) -> None:
    """Hot keys drive the worker's cost; popularity must follow the configured power law."""
    cfg = small_config(seed=5, duration_s=20.0, use_rate=2_500.0, catalog=5_000,
                       track_rate=0.0, trend_prob=0.0, initial_trending=0, zipf=zipf,
                       duplicate_rate=0.0, late_rate=0.0, invalid_rate=0.0, early_rate=0.0)
    again = recount(generate(cfg).sent, cfg.windows, cfg.allowed_lateness_ms)
    counts = sorted(Counter(t for t, _, _ in again.uses).values(), reverse=True)
    total = sum(counts)
    top = sum(counts[: cfg.catalog // 100])
    # Top 1 % of the catalog: many times its uniform share, as a Zipf law predicts.
    harmonic = [k ** -zipf for k in range(1, cfg.catalog + 1)]
    zipf_top = sum(harmonic[: cfg.catalog // 100]) / sum(harmonic)
    assert top / total > 0.15
    assert abs(top / total - zipf_top) < 0.12, (top / total, zipf_top)
    # log(frequency) against log(rank) is a straight line of slope -zipf over the head.
    ranks = range(5, 101)
    xs = [math.log(r) for r in ranks]
    ys = [math.log(counts[r - 1]) for r in ranks]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
    assert abs(slope + zipf) < 0.2, slope


# -- invalid inputs ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_events", [1, 50])
def test_invalid_inputs_are_rejected_by_the_worker_rules_and_valid_ones_pass(
    batch_events: int
) -> None:
    """An invalid input that the worker accepted would be counted but not in the truth."""
    cfg = small_config(seed=9, invalid_rate=0.25, duplicate_rate=0.0, late_rate=0.0,
                       track_rate=60.0, batch_events=batch_events)
    gen = generate(cfg)
    again = assert_truth_matches(gen)
    # Every kind of malformed use the generator documents shows up and is rejected.
    assert set(again.codes) == {"missing_field", "invalid_value", "wrong_type", "not_object",
                                "future", "not_json", "empty_batch"}
    assert set(again.track_codes) == {"bad_share", "invalid_value", "missing_field"}
    # Everything else passes validation: no valid use or track is lost to a rejection.
    assert again.counted == gen.stats.uses_counted
    assert again.tracks_accepted + again.tracks_duplicate + again.tracks_invalid == sum(
        1 for s in gen.sent if s.record.topic == TRACKS)
    for s in gen.sent:
        assert len(s.record.value) <= WORKER.max_record_bytes
        assert s.record.events <= WORKER.max_batch_events


def test_each_rejected_element_is_rejected_on_its_own() -> None:
    """One bad event must not take its batch down: the rest of the batch still counts."""
    cfg = small_config(seed=4, invalid_rate=0.2, batch_events=100)
    gen = generate(cfg)
    mixed = 0
    for s in gen.sent:
        if s.record.topic != USES or not s.record.value.startswith(b"[{"):
            continue
        results = []
        for event in orjson.loads(s.record.value):
            try:
                parse_sound_used(event)
                results.append(True)
            except Rejected:
                results.append(False)
        mixed += any(results) and not all(results)
    assert mixed > 0


# -- records ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    uses=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(1, 300)),
                  max_size=300),
    batch=st.integers(1, 40),
    max_bytes=st.integers(64, 4_000),
)
def test_record_builder_keeps_every_event_in_order_within_limits(
    uses: list[tuple[int, int, int]], batch: int, max_bytes: int
) -> None:
    """Batches are cut by count and size; no event may be lost, reordered or oversized."""
    builder = RecordBuilder(batch, linger_sim_ms=None, max_record_bytes=max_bytes)
    tick_uses: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for n, (partition, track, pad) in enumerate(uses):
        text = orjson.dumps({"event_id": f"e{n}", "track_id": f"t{track}", "x": "p" * pad})
        tick_uses[partition].append((f"t{track}", text.decode()))
    records = builder.add(Tick(end_ms=0, uses=dict(tick_uses))) + builder.flush()
    out: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
    longest = max((len(text) for items in tick_uses.values() for _, text in items), default=0)
    for record in records:
        value = orjson.loads(record.value)
        events = value if isinstance(value, list) else [value]
        assert record.events == len(events) >= 1
        assert record.key.decode() == events[0]["track_id"]
        if batch > 1:
            assert isinstance(value, list) and len(value) <= batch
            assert len(record.value) < max_bytes + longest
        out[record.partition].extend(events)
    assert {p: [e["event_id"] for e in events] for p, events in out.items()} == {
        p: [orjson.loads(text)["event_id"] for _, text in items]
        for p, items in tick_uses.items() if items}


# -- configuration ----------------------------------------------------------------------

FRACTIONS = ("duplicate_rate", "late_rate", "early_rate", "invalid_rate", "ai_share",
             "create_share", "trend_prob")


@pytest.mark.parametrize("name", FRACTIONS)
@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan])
def test_config_rejects_fractions_outside_zero_one(name: str, value: float) -> None:
    """A typo such as --duplicates 5 (meaning 5 %) must fail loudly, naming the option."""
    with pytest.raises(ValueError, match=name):
        LoadConfig(**{name: value}).validate()


@pytest.mark.parametrize("changes, message", [
    ({"use_rate": -1.0}, "negative"),
    ({"duration_s": -5.0}, "negative"),
    ({"schedule": [(10.0, 100.0), (5.0, -1.0)]}, "negative"),
    ({"schedule": [(-1.0, 100.0)]}, "negative"),
    ({"batch_events": 0}, "batch_events"),
    ({"batch_events": 10_001}, "batch_events"),
    ({"catalog": 0}, "catalog"),
    ({"zipf": 0.0}, "zipf"),
    ({"duplicate_rate": 0.3, "late_rate": 0.2, "invalid_rate": 0.1}, "at most 0.5"),
])
def test_config_rejects_nonsense_with_a_clear_message(changes: dict[str, Any],
                                                      message: str) -> None:
    """Nonsense must be refused before any traffic is generated, by the model too."""
    cfg = LoadConfig(**changes)
    with pytest.raises(ValueError, match=message):
        cfg.validate()
    with pytest.raises(ValueError, match=message):
        TrafficModel(cfg, PARTITIONS)


def test_default_config_is_valid() -> None:
    """The defaults are what ``streamer load`` sends; they must pass their own checks."""
    LoadConfig().validate()
    assert LoadConfig(use_rate=250.0, duration_s=4.0).expected_uses == 1_000


@pytest.mark.parametrize("changes", [
    {"track_rate": -5.0},            # silently generates no new tracks
    {"use_rate": math.nan},          # passes, then fails deep in the model
    {"trend_half_life_s": 0.0},      # ZeroDivisionError in the first tick
])
def test_config_rejects_unchecked_nonsense(changes: dict[str, Any]) -> None:
    """Knobs that validate() used to let through."""
    try:
        LoadConfig(**changes).validate()
    except ValueError:
        return
    raise AssertionError(f"validate() accepted {changes}")


@pytest.mark.parametrize("name", [
    "use_rate", "duration_s", "track_rate", "jitter_ms", "linger_ms", "allowed_lateness_ms"])
@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, -math.inf])
def test_config_rejects_rates_and_durations_that_are_not_finite_amounts(
    name: str, value: float
) -> None:
    """NaN and infinities would pass a plain ``< 0`` check and fail deep in the model."""
    with pytest.raises(ValueError, match=name):
        LoadConfig(**{name: value}).validate()


@pytest.mark.parametrize("segment", [(math.nan, 10.0), (10.0, math.inf), (math.inf, 1.0)])
def test_config_rejects_schedule_segments_that_are_not_finite(
    segment: tuple[float, float]
) -> None:
    with pytest.raises(ValueError, match=r"schedule\[1\]"):
        LoadConfig(schedule=[(1.0, 10.0), segment]).validate()


@pytest.mark.parametrize("changes, field", [
    ({"trend_half_life_s": 0.0}, "trend_half_life_s"),
    ({"trend_rise_s": -1.0}, "trend_rise_s"),
    ({"trend_rise_s": math.nan}, "trend_rise_s"),
    ({"trend_rank_min": 0.0}, "trend_rank_min"),
    ({"trend_rank_max": math.inf}, "trend_rank_max"),
    ({"trend_rank_min": 100.0, "trend_rank_max": 10.0}, "trend_rank_max"),
    ({"zipf": math.nan}, "zipf"),
    ({"windows": ()}, "windows"),
    ({"windows": (("1m", 0),)}, "windows"),
    ({"tick_uses": 0}, "tick_uses"),
    ({"users": 0}, "users"),
])
def test_config_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LoadConfig(**changes).validate()


def test_config_requires_a_lateness_that_covers_jitter_tick_and_early_delay() -> None:
    """Less, and the worker rejects valid uses as late or settles early uses as
    ``_unattributed`` before their TrackCreated comes (it expires them after the lateness)."""
    for changes in ({"allowed_lateness_ms": 10_000},
                    {"allowed_lateness_ms": 60_000, "early_delay_ms": 120_000},
                    {"allowed_lateness_ms": 60_000, "jitter_ms": 40_000}):
        with pytest.raises(ValueError, match="allowed_lateness_ms") as error:
            LoadConfig(**changes).validate()
        assert "jitter_ms" in str(error.value) and "early_delay_ms" in str(error.value)
    # Without early tracks only the jitter and the tick have to fit.
    LoadConfig(allowed_lateness_ms=10_000, early_rate=0.0).validate()
    # By default the early delay shrinks to fit a short lateness, down to its 5 s minimum.
    assert LoadConfig().early_delay_max_ms == 120_000
    assert LoadConfig(allowed_lateness_ms=60_000).early_delay_max_ms == 27_000
    assert LoadConfig(allowed_lateness_ms=20_000).early_delay_max_ms == 7_000
    for lateness in (16_000, 60_000, 3_600_000):
        LoadConfig(allowed_lateness_ms=lateness).validate()


# -- event time against the clock --------------------------------------------------------


def valid_uses(record: Record) -> list[tuple[str, int]]:
    """(track_id, occurred_at) of the uses in a record that pass validation and are not
    the deliberate 'future' ones."""
    try:
        decoded = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return []
    uses = []
    for event in decoded if isinstance(decoded, list) else [decoded]:
        try:
            _, track_id, ts, _ = parse_sound_used(event)
        except Rejected:
            continue
        if ts < FUTURE_OCCURRED_AT_MS:
            uses.append((track_id, ts))
    return uses


@pytest.mark.parametrize("lateness", [60_000, 3_600_000])
def test_no_use_is_sent_before_its_event_time(lateness: int) -> None:
    """At speed 1 a tick is sent when the clock reaches its end; a use dated later would
    be ahead of the clock and push its partition's watermark past the uses that follow."""
    cfg = small_config(early_rate=0.8, track_rate=60.0, allowed_lateness_ms=lateness)
    gen = generate(cfg)
    early_seen = 0
    created: dict[str, int] = {}
    first_use: dict[str, int] = {}
    for s in gen.sent:
        if s.record.topic == TRACKS:
            event = orjson.loads(s.record.value)
            created.setdefault(event["track_id"], event["occurred_at"])
            continue
        for track_id, ts in valid_uses(s.record):
            assert ts <= s.now_ms
            if track_id not in created:
                early_seen += 1
                first_use.setdefault(track_id, ts)
    assert early_seen >= gen.stats.early_uses > 0
    # The TrackCreated of an early track follows its first use within the early delay,
    # which fits the allowed lateness.
    waits = [created[t] - ts for t, ts in first_use.items() if t in created]
    assert waits and 0 < max(waits) <= cfg.early_delay_max_ms
    assert cfg.early_delay_max_ms <= lateness // 2


def test_future_uses_are_dated_far_ahead_of_any_clock() -> None:
    """A fixed instant, not one relative to the stream: 9999-12-31T23:59:59Z."""
    cfg = small_config(seed=9, invalid_rate=0.25, duplicate_rate=0.0, late_rate=0.0)
    stamps: set[int] = set()
    for s in generate(cfg).sent:
        if s.record.topic != USES:
            continue
        try:
            decoded = orjson.loads(s.record.value)
        except orjson.JSONDecodeError:
            continue
        for event in decoded if isinstance(decoded, list) else [decoded]:
            ts = event.get("occurred_at") if isinstance(event, dict) else None
            if isinstance(ts, int) and ts > START_MS + 86_400_000:
                stamps.add(ts)
    assert stamps == {FUTURE_OCCURRED_AT_MS} == {253_402_300_799_000}


@pytest.mark.parametrize("speed", [0.0, 0.5, 1.0, 1.5, 4.0, 100.0])
@pytest.mark.parametrize("total_s", [0.5, 60.0, 86_400.0])
def test_default_start_keeps_every_event_behind_the_wall_clock(speed: float,
                                                               total_s: float) -> None:
    """``streamer load --speed N``: a tick at event time e is sent at wall time
    go + (e - start) / speed (flat out: at once); no event may be ahead of that."""
    now = 1_767_225_600_000
    start = default_start_ms(total_s, speed, now)
    if 0 < speed <= 1:
        assert start is None   # starts when sending starts: event time never gains
        return
    assert start is not None
    total_ms = total_s * 1000
    for fraction in (0.0, 0.25, 0.5, 0.99, 1.0):
        event_ms = start + fraction * total_ms
        sent_at = now if speed == 0 else now + (event_ms - start) / speed
        assert event_ms <= sent_at - START_MARGIN_MS + 1
    if speed > 1:   # and it does not start needlessly early
        assert now - start <= total_ms * (1 - 1 / speed) + START_MARGIN_MS + 1


def test_streamer_load_refuses_nan_with_one_clear_line(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before Kafka is contacted: no traceback, one line naming the option."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for argv in (["--rate", "nan"], ["--duration", "inf"], ["--speed", "nan"]):
        args = parser.parse_args([*argv, "--no-progress"])
        with mock.patch("streamer.loadgen.sender.check_kafka",
                        side_effect=AssertionError("Kafka contacted")):
            assert load_main(load_settings({}), args) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert len(err.splitlines()) == 1 and err.startswith("streamer: "), err
        assert argv[0] in err


async def test_check_kafka_keeps_aiokafka_quiet_while_probing(
    caplog: pytest.LogCaptureFixture
) -> None:
    """The caller prints one clear line; aiokafka's own 'Unable connect' must not precede it."""
    aiokafka_log = logging.getLogger("aiokafka")
    before = aiokafka_log.level
    with caplog.at_level(logging.DEBUG), pytest.raises(KafkaUnreachable, match=r"127\.0\.0\.1:1"):
        await check_kafka({"bootstrap_servers": "127.0.0.1:1"}, timeout_s=5.0)
    assert not [r for r in caplog.records if r.name.startswith("aiokafka")], caplog.text
    assert aiokafka_log.level == before


def test_benchmark_truth_follows_the_worker_settings(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness's load config must count with the windows and lateness the worker
    runs with: its --worker-env and the environment the worker inherits."""
    from benchmarks.__main__ import parse
    from benchmarks.common import BenchRun, Stack
    from benchmarks.scenarios import base_config, worker_settings

    monkeypatch.setenv("STREAMER_ALLOWED_LATENESS", "2m")
    opts = parse(["smoke", "--worker-env", "STREAMER_WINDOWS=1m,1h"])
    run = BenchRun(Stack("127.0.0.1:1", "redis://127.0.0.1:1/0"), "t", tmp_path,
                   worker_env=opts.worker_env)
    for worker in (run.settings, worker_settings(opts)):
        cfg = base_config(opts, worker, duration_s=1.0)
        assert cfg.windows == (("1m", 60_000), ("1h", 3_600_000))
        assert cfg.allowed_lateness_ms == 120_000


# -- pre-generation ---------------------------------------------------------------------


class _CapturingProducer:
    """Stands in for aiokafka's producer in ``_send_all``: keeps what was sent, in order."""

    def __init__(self, sent: list[tuple[str, int | None, bytes | None, bytes]]) -> None:
        self.sent = sent

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[None]:
        self.sent.append((topic, partition, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.parametrize("pregenerate", [False, True])
def test_pregenerated_records_are_the_live_ones_and_all_built_before_go(
        pregenerate: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same events, truth and order either way; pre-generated, every record exists
    before go (during the run the process only sends)."""
    from streamer.loadgen import sender as sender_module

    cfg = small_config(duration_s=3.0)
    sent: list[tuple[str, int | None, bytes | None, bytes]] = []
    monkeypatch.setattr(sender_module, "make_producer",
                        lambda kafka, single: _CapturingProducer(sent))
    built = {"ticks": 0, "at_go": -1}
    add = RecordBuilder.add

    def counting_add(self: RecordBuilder, tick: Tick) -> list[Record]:
        built["ticks"] += 1
        return add(self, tick)

    monkeypatch.setattr(RecordBuilder, "add", counting_add)

    class Go:
        def is_set(self) -> bool:
            if built["at_go"] < 0:
                built["at_go"] = built["ticks"]
            return True

    plan = sender_module.SendPlan(
        cfg=cfg, kafka={}, tracks_topic="t", uses_topic="u", partitions=PARTITIONS,
        speed=0.0, wait_for_go=True, catalog_ms=cfg.start_ms, pregenerate=pregenerate)
    start_value = type("V", (), {"value": float(cfg.start_ms)})()
    progress = sender_module._Progress(None, 0)
    model, _, _, _, errors = asyncio.run(
        sender_module._send_all(plan, 0, progress, Go(), None, start_value))

    assert built["at_go"] == (built["ticks"] if pregenerate else 1), built
    assert built["ticks"] > 3
    expected = generate(cfg)
    assert not errors
    assert [(1 if topic == "u" else 0, partition, key, value)
            for topic, partition, key, value in sent] == expected.raw()
    assert model.truth is not None and model.truth.expected() == expected.truth.expected()
