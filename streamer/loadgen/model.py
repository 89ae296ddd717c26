"""A deterministic model of music-usage traffic: the stream of ticks and its ground truth.

Time is simulated: the model walks event time in ticks and emits, per tick, the
TrackCreated and SoundUsed events of that slice, already JSON-encoded, grouped by the
Kafka partition their track id maps to (murmur2, as Kafka's default partitioner), so
a sender only has to cut them into records. Who the tracks are comes from
``loadgen.catalog``, which tracks the uses pick from ``loadgen.popularity``, the
malformed inputs from ``loadgen.faults``.

Faults and hard cases (all reproducible, all accounted for in the ground truth):

* duplicates: a valid use is sent again, same bytes, anywhere up to
  ``LoadConfig.duplicate_delay_max_ms`` of event time after it (nearly the whole dedupe
  horizon), so the worker must still remember its id (not counted again);
* late: a use older than its partition's watermark minus the allowed lateness (DLQ):
  a third of them far past (a minute to half an hour), a third just past (up to 5 s),
  and as many uses just inside the edge (up to 5 s, counted); the model tracks each
  partition's watermark exactly as the worker does, so an event is emitted as late
  only when it is certainly late, and as just inside only when it certainly is not;
* early: a new track gets a few uses before its TrackCreated, which follows 5-120 s later
  (less when the allowed lateness is short, see ``LoadConfig.early_delay_max_ms``); the
  first at the track's creation, the others spread over the wait; each early use is sent
  in the tick its event time falls in, like every other use, so it is never ahead of the
  clock nor pushes its partition's watermark past the uses sent after it;
* replaced metadata: a share of the catalog gets a second TrackCreated mid-run that
  changes the track's splits (``loadgen.catalog`` says how reconciliation allows for
  the order in which the worker reads the two topics);
* countries: each use's country is drawn from ``loadgen.territories`` (a few large
  markets, a long tail of small ones; ``LoadConfig.countries`` of them) and counted per
  territory in the ground truth as well;
* invalid: malformed uses (a named rule broken, inside a batch or as their own record,
  'future' ones dated in the year 9999 so they stay invalid whatever the start time),
  whole records that are not JSON or are empty batches, and invalid TrackCreated of
  tracks that nothing uses.

Determinism: the main random stream (times, tracks picked, kinds, users, countries) is
drawn identically in every process whatever partitions it owns; track metadata come
from a per-track SplitMix64 stream. So N processes each owning a share of the
partitions together emit exactly the events one process would.

Ground truth: each valid, first-seen, in-time use and each accepted TrackCreated is
fed, with its partition, to ``streamer.verify.PartitionedTruth`` (aggregated per track
and base window, one ``GroundTruth`` per partition); so are the duplicates and late
uses, which peers without dedupe or a lateness rule count.
"""

from __future__ import annotations

import heapq
import random
import time
from array import array
from bisect import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from streamer.loadgen.catalog import (
    SplitMix,
    TrackMaker,
    partition_of,
    track_id_of,
)
from streamer.loadgen.config import EARLY_DELAY_MIN_MS, TICK_MAX_MS, LoadConfig
from streamer.loadgen.faults import FUTURE_OCCURRED_AT_MS, break_track_event, invalid_use
from streamer.loadgen.popularity import UsePicker
from streamer.loadgen.territories import CountryPicker
from streamer.loadgen.ticks import ModelStats, Tick

if TYPE_CHECKING:
    from streamer.verify.truth import PartitionedTruth

__all__ = ["FUTURE_OCCURRED_AT_MS", "ModelStats", "Tick", "TrafficModel", "partition_of",
           "track_id_of"]

_UNKNOWN = 255
# Late uses just past or just inside the lateness edge are at most this far from it.
EDGE_MS = 5_000


# A duplicate waiting to be sent: (due ms, sequence, partition, track, JSON, use, occurred_at)
_Duplicate = tuple[int, int, int, str, str, str, int]


class TrafficModel:
    def __init__(self, cfg: LoadConfig, partitions: int, owned: set[int] | None = None,
                 truth: PartitionedTruth | None = None, catalog_ms: int | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.partitions = partitions
        self.owned = set(range(partitions)) if owned is None else set(owned)
        self._own = bytearray(1 if p in self.owned else 0 for p in range(partitions))
        self.truth = truth
        self.stats = ModelStats()
        self.rng = random.Random(cfg.seed)
        self.maker = TrackMaker(cfg)
        self.tag = self.maker.tag
        now = int(time.time() * 1000)
        self.catalog_ms = catalog_ms if catalog_ms is not None else (cfg.start_ms or now)
        self.start_ms = cfg.start_ms
        self._part = bytearray()
        self.picker = UsePicker(cfg, self.rng)
        self.n_tracks = 0
        self.catalog_size = cfg.catalog
        countries = CountryPicker(cfg.countries)   # a few large markets, a long tail
        self._country_names = countries.names
        self._country_cum = countries.cumulative
        self._wm = [0] * partitions           # watermark per partition, as the worker's
        self._dups: list[_Duplicate] = []            # heap by due time
        self._announce: list[tuple[int, int]] = []   # heap (announce_ms, track index)
        self._early: list[tuple[int, int]] = []      # heap (occurred_at, track index)
        self._replace: list[tuple[int, int]] = []    # heap (replaced at, track index)
        self._early_delay = cfg.early_delay_max_ms
        self.trending = self.picker.trending
        self._track_carry = 0.0
        self._seq = 0
        self._invalid_tracks = 0
        self._truth_event: dict[str, Any] = {}

    # -- tracks ---------------------------------------------------------------------

    def partition(self, index: int) -> int:
        part = self._part[index]
        if part == _UNKNOWN:
            part = self._part[index] = partition_of(track_id_of(index), self.partitions)
        return part

    def _new_track_indexes(self, count: int) -> range:
        first = self.n_tracks
        self.n_tracks += count
        self._part.extend(b"\xff" * count)
        return range(first, first + count)

    def _emit_track(self, tick: Tick, index: int, occurred_at: int,
                    replacement: bool = False) -> None:
        partition = self.partition(index)
        if not self._own[partition]:
            return
        event = (self.maker.replacement_event(index, occurred_at) if replacement
                 else self.maker.track_event(index, occurred_at))
        value = orjson.dumps(event)
        key = event["track_id"].encode()
        tick.tracks.append((partition, key, value))
        if replacement:
            tick.cut_before.add(partition)
        self.stats.tracks_sent += 1
        self.stats.tracks_created += 1
        self.stats.tracks_replaced += replacement
        if self.truth is not None:
            self.truth.track_created(event, partition)

    # -- the stream -----------------------------------------------------------------

    def catalog_tick(self) -> Tick:
        """The preamble: TrackCreated of every track that exists before the run."""
        tick = Tick(end_ms=self.catalog_ms)
        indexes = self._new_track_indexes(self.catalog_size)
        order = list(indexes)
        self.rng.shuffle(order)
        self.picker.order = array("I", order)
        base = self.catalog_ms - 60_000
        for index in indexes:
            jitter = int(SplitMix(index * 0x2545F4914F6CDD1D + self.cfg.seed).random() * 59_000)
            self._emit_track(tick, index, base + jitter)
        for _ in range(min(self.cfg.initial_trending, self.catalog_size)):
            index = order[self.rng.randrange(len(order))]
            age = int(self.rng.random() * 2 * self.cfg.trend_half_life_s * 1000)
            self.trending.entries.append((index, self.catalog_ms - age, self.trending.peak()))
        return tick

    def ticks(self, start_ms: int | None = None) -> Iterator[Tick]:
        """Every tick after the preamble (call ``catalog_tick`` first)."""
        if not self.picker.order:
            raise RuntimeError("catalog_tick() must come first")
        start = start_ms if start_ms is not None else self.start_ms
        if start is None:
            start = int(time.time() * 1000)
        self.start_ms = start
        self._schedule_replacements(start)
        t = start
        for duration_s, rate in self.cfg.segments():
            end = t + int(duration_s * 1000)
            dt = TICK_MAX_MS if rate <= 0 else min(
                TICK_MAX_MS, max(5, int(self.cfg.tick_uses / rate * 1000)))
            while t < end:
                t1 = min(t + dt, end)
                yield self._tick(t, t1, rate)
                t = t1
        yield self.final_tick(t)

    def _schedule_replacements(self, start: int) -> None:
        """Each replaced catalog track gets its second TrackCreated between 10 % and 90 %
        of the run (a function of its index, not of the main random stream)."""
        span = self.cfg.total_sim_s * 1000
        for index in range(self.catalog_size):
            if self.maker.replaced(index):
                fraction = SplitMix(index * 0x61C8864680B583EB + self.cfg.seed).random()
                heapq.heappush(self._replace, (start + int((0.1 + 0.8 * fraction) * span),
                                               index))

    def _send_due(self, tick: Tick, t1: int) -> None:
        """What is due before this tick's new events: duplicates whose time came (their
        original went out in an earlier tick), held-back and replacing TrackCreated."""
        dups = self._dups
        while dups and dups[0][0] < t1:
            _, _, partition, track_id, text, use, ts = heapq.heappop(dups)
            tick.uses.setdefault(partition, []).append((track_id, text))
            self.stats.uses_sent += 1
            self.stats.duplicates += 1
            if self.truth is not None:
                self.truth.duplicate({"track_id": track_id, "use": use, "occurred_at": ts},
                                     partition)
        for heap, replacement in ((self._announce, False), (self._replace, True)):
            while heap and heap[0][0] < t1:
                at, index = heapq.heappop(heap)
                self._emit_track(tick, index, at, replacement)

    def _new_tracks(self, tick: Tick, t0: int, span: int) -> None:
        cfg = self.cfg
        rnd = self.rng.random
        own = self._own
        self._track_carry += cfg.track_rate * span / 1000
        new_count = int(self._track_carry)
        self._track_carry -= new_count
        early_span = self._early_delay - EARLY_DELAY_MIN_MS
        for index in self._new_track_indexes(new_count):
            created = t0 + int(rnd() * span)
            self.picker.order.append(index)
            early = rnd() < cfg.early_rate
            trending = rnd() < cfg.trend_prob
            bad = rnd() < cfg.invalid_rate
            dup = rnd() < cfg.duplicate_rate
            if trending:
                self.trending.start(index, created)
                if own[self.partition(index)]:   # each process counts its own tracks
                    self.stats.trending_started += 1
            if early:
                delay = EARLY_DELAY_MIN_MS + int(rnd() * early_span)
                heapq.heappush(self._announce, (created + delay, index))
                # The first use comes at once, the others before the TrackCreated, at least
                # a tick before it (so in an earlier tick); each is sent in the tick its
                # event time falls in, never ahead of the clock.
                heapq.heappush(self._early, (created, index))
                for _ in range(int(rnd() * 3)):
                    heapq.heappush(self._early, (
                        created + int(rnd() * (delay - TICK_MAX_MS)), index))
            else:
                self._emit_track(tick, index, created)
                if dup and own[self.partition(index)]:
                    tick.tracks.append(tick.tracks[-1])
                    self.stats.tracks_sent += 1
            if bad:
                self._emit_invalid_track(tick, created)

    def _tick(self, t0: int, t1: int, rate: float) -> Tick:
        cfg = self.cfg
        rnd = self.rng.random
        stats = self.stats
        tick = Tick(end_ms=t1)
        uses = tick.uses
        own = self._own
        truth = self.truth
        tev = self._truth_event
        wm = self._wm
        self._send_due(tick, t1)
        self._new_tracks(tick, t0, t1 - t0)
        part = self._part
        n_parts = self.partitions
        first_new = self.catalog_size
        dup_p = cfg.duplicate_rate
        late_p = dup_p + cfg.late_rate
        bad_p = late_p + cfg.invalid_rate
        create_p = cfg.create_share
        users = cfg.users
        jitter = cfg.jitter_ms
        lateness = cfg.allowed_lateness_ms
        dup_delay = cfg.duplicate_delay_max_ms
        ccum, cnames = self._country_cum, self._country_names
        tag = self.tag
        seq = self._seq
        for index, at, flag in self.picker.picks(t0, t1, rate, self._early):
            is_early = flag == 2
            kind = rnd()
            user = int(rnd() * users)
            country = cnames[bisect(ccum, rnd())]
            use = "create" if rnd() < create_p else "play"
            ts = at - int(rnd() * jitter) if not is_early else at
            extra = rnd()
            seq += 1
            partition = part[index]
            if partition == _UNKNOWN:
                partition = part[index] = partition_of(track_id_of(index), n_parts)
            if not own[partition]:
                continue
            track_id = f"trk{index:08x}"
            event_id = f"{tag}{seq:x}"
            bucket = uses.get(partition)
            if bucket is None:
                bucket = uses[partition] = []
            if kind < bad_p and not is_early:
                if kind < dup_p:
                    pass  # counted below, then repeated later
                elif kind < late_p:
                    edge = wm[partition] - lateness   # older than this is late
                    late_ts = -1
                    if extra < 1 / 3:      # far past the edge
                        late_ts = at - lateness - 60_000 - int(extra * 3 * 1_740_000)
                    elif extra < 2 / 3:    # just past it
                        late_ts = edge - 1 - int((extra - 1 / 3) * 3 * EDGE_MS)
                    elif wm[partition] and index < first_new:
                        # Just inside (counted): only for catalog tracks, whose metadata
                        # is known, so the worker never settles it as unattributed.
                        ts = edge + 1 + int((extra - 2 / 3) * 3 * EDGE_MS)
                        stats.late_inside += 1
                    if 0 <= late_ts < edge:
                        bucket.append((track_id, (
                            f'{{"event_id":"{event_id}","track_id":"{track_id}",'
                            f'"occurred_at":{late_ts},"user_id":"u{user}","use":"{use}",'
                            f'"country":"{country}"}}')))
                        stats.uses_sent += 1
                        stats.late += 1
                        if truth is not None:
                            truth.late({"track_id": track_id, "use": use,
                                        "occurred_at": late_ts}, partition, wm[partition])
                        continue
                    # Not certainly late on this partition yet: send it as a valid use.
                else:
                    self._emit_invalid_use(tick, bucket, partition, extra, event_id,
                                           track_id, ts, country)
                    continue
            if use == "create":
                text = (f'{{"event_id":"{event_id}","track_id":"{track_id}","occurred_at":{ts},'
                        f'"user_id":"u{user}","use":"create","country":"{country}",'
                        f'"video_id":"v{seq:x}"}}')
            else:
                text = (f'{{"event_id":"{event_id}","track_id":"{track_id}","occurred_at":{ts},'
                        f'"user_id":"u{user}","use":"play","country":"{country}"}}')
            bucket.append((track_id, text))
            stats.uses_sent += 1
            stats.uses_counted += 1
            if flag:
                if is_early:
                    stats.early_uses += 1
                else:
                    stats.uses_trending += 1
            if index >= first_new:
                stats.uses_new_tracks += 1
            if ts > wm[partition]:
                wm[partition] = ts
            if kind < dup_p and not is_early:
                # Due within the horizon; sent in a later tick whatever the delay.
                heapq.heappush(self._dups, (max(ts + int(extra * dup_delay), t1), seq,
                                            partition, track_id, text, use, ts))
            if truth is not None:
                tev["track_id"] = track_id
                tev["occurred_at"] = ts
                tev["use"] = use
                tev["country"] = country
                truth.use(tev, partition)
        self._seq = seq
        return tick

    def _emit_invalid_use(self, tick: Tick, bucket: list[tuple[str, str]], partition: int,
                          x: float, event_id: str, track_id: str, ts: int, country: str) -> None:
        self.stats.invalid += 1
        self.stats.uses_sent += 1
        record, text = invalid_use(x, event_id, track_id, ts, country)
        if record is not None:
            tick.raw.append((partition, track_id.encode(), record))
        elif text is not None:
            bucket.append((track_id, text))

    def _emit_invalid_track(self, tick: Tick, occurred_at: int) -> None:
        """A TrackCreated that breaks a rule, for a track id nothing else uses."""
        self._invalid_tracks += 1
        number = self._invalid_tracks
        track_id = f"bad{self.cfg.seed:x}x{number:x}"
        partition = partition_of(track_id, self.partitions)
        if not self._own[partition]:
            return
        event = self.maker.track_event(0, occurred_at)
        event["track_id"] = track_id
        event["event_id"] = f"{self.tag}x{number:x}"
        break_track_event(event, number)
        tick.tracks.append((partition, track_id.encode(), orjson.dumps(event)))
        self.stats.tracks_sent += 1
        self.stats.tracks_invalid += 1

    def final_tick(self, t: int) -> Tick:
        """Whatever is still held back: the last duplicates, delayed and replacing
        TrackCreated.

        Early uses dated after ``t`` are dropped (never sent, never counted): sent now,
        they would be ahead of the clock and of the partition's watermark.
        """
        tick = Tick(end_ms=t)
        self._early = []
        self._send_due(tick, 1 << 62)
        return tick
