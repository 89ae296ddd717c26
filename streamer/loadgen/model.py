"""A deterministic model of music-usage traffic: catalog, popularity, faults, ground truth.

Time is simulated: the model walks event time in ticks and emits, per tick, the
TrackCreated and SoundUsed events of that slice, already JSON-encoded, grouped by the
Kafka partition their track id maps to (murmur2, as Kafka's default partitioner), so
a sender only has to cut them into records.

Popularity: every use picks a track either from the *base* catalog by a Zipf law over
popularity ranks (exponent ``zipf``; new tracks join at the tail) or from the set of
*trending* tracks: a small share of new tracks (``trend_prob``) bursts, rising over
``trend_rise_s`` to the weight of a Zipf rank drawn log-uniformly between
``trend_rank_min`` and ``trend_rank_max``, then decaying with ``trend_half_life_s``.

Faults (all reproducible, all accounted for in the ground truth):

* duplicates: a valid use is sent again in the next tick, same bytes (not counted again);
* late: a use older than its partition's watermark minus the allowed lateness (DLQ);
  the model tracks each partition's watermark exactly as the worker does, so an event
  is emitted as late only when it is certainly late;
* early: a new track gets a few uses before its TrackCreated, which follows 5-120 s later
  (less when the allowed lateness is short, see ``LoadConfig.early_delay_max_ms``); the
  first at the track's creation, the others spread over the wait; each early use is sent
  in the tick its event time falls in, like every other use, so it is never ahead of the
  clock nor pushes its partition's watermark past the uses sent after it;
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
and base window, one ``GroundTruth`` per partition).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from array import array
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka.partitioner import murmur2

from streamer.loadgen.config import EARLY_DELAY_MIN_MS, TICK_MAX_MS, LoadConfig

if TYPE_CHECKING:
    from streamer.verify.truth import PartitionedTruth

_MASK64 = (1 << 64) - 1
_UNKNOWN = 255

GENRES: tuple[tuple[str, float], ...] = (
    ("pop", 16), ("hip-hop", 13), ("lofi", 10), ("edm", 8), ("latin", 7), ("hyperpop", 6),
    ("ambient", 6), ("rock", 6), ("r-and-b", 5), ("k-pop", 4), ("afrobeats", 4), ("phonk", 4),
    ("country", 3), ("classical", 2), ("jazz", 2), ("soundtrack", 2), ("drill", 2))

COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 20), ("BR", 9), ("IN", 9), ("ID", 7), ("MX", 6), ("GB", 5), ("PH", 4), ("DE", 4),
    ("FR", 4), ("JP", 4), ("TR", 3), ("VN", 3), ("TH", 3), ("ES", 3), ("NG", 2), ("EG", 2),
    ("KR", 2), ("IT", 2), ("CA", 2), ("AU", 2), ("PK", 2), ("SA", 2), ("AR", 2), ("CO", 2),
    ("PL", 1), ("NL", 1), ("ZA", 1), ("SE", 1))

AI_TOOLS = ("studio-gen-3", "melodylab-2.1", "beatsmith-1.4", "voxforge-5")
_TITLE_A = ("midnight", "neon", "paper", "velvet", "lost", "golden", "static", "ocean",
            "broken", "electric", "slow", "summer", "hollow", "cosmic", "quiet")
_TITLE_B = ("drive", "dreams", "hearts", "signals", "rain", "city", "echoes", "skyline",
            "tape", "bloom", "waves", "ghosts", "lights", "fever", "garden")

# Malformed uses: each breaks one named rule. {e}=event id, {t}=track id, {s}=occurred_at,
# {c}=country; the worker sends each to the dead-letter topic.
_INVALID_USES: tuple[tuple[str, str], ...] = (
    ("missing_field:user_id",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":{s},"use":"play","country":"{c}"}}'),
    ("invalid_value:use",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":{s},"user_id":"u1","use":"like",'
     '"country":"{c}"}}'),
    ("invalid_value:country",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":{s},"user_id":"u1","use":"play",'
     '"country":"usa"}}'),
    ("wrong_type:occurred_at",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":"{s}","user_id":"u1","use":"play",'
     '"country":"{c}"}}'),
    ("invalid_value:track_id",
     '{{"event_id":"{e}","track_id":"bad track!","occurred_at":{s},"user_id":"u1",'
     '"use":"play","country":"{c}"}}'),
    ("missing_field:event_id",
     '{{"track_id":"{t}","occurred_at":{s},"user_id":"u1","use":"create","country":"{c}"}}'),
    ("not_object", '[{s}]'),
    ("future",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":{f},"user_id":"u1","use":"play",'
     '"country":"{c}"}}'),
)
# occurred_at of the 'future' invalid uses: 9999-12-31T23:59:59Z, ahead of any wall clock
# (a fixed instant, not one relative to the event, so replaying an old start keeps them
# invalid) and still a valid epoch-ms integer, so the worker rejects them as 'future'.
FUTURE_OCCURRED_AT_MS = 253_402_300_799_000


class SplitMix:
    """SplitMix64: a tiny seeded stream, so each track's metadata is its own."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def random(self) -> float:
        self.state = z = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0)

    def below(self, n: int) -> int:
        return int(self.random() * n)


def zipf_index(u: float, n: int, s: float) -> int:
    """0-based rank from a Zipf-like law over ``n`` ranks (bounded continuous power law)."""
    if s == 1.0:
        rank = int((n + 1) ** u)
    else:
        rank = int((1.0 - u * (1.0 - (n + 1) ** (1.0 - s))) ** (1.0 / (1.0 - s)))
    return min(max(rank, 1), n) - 1


def zipf_mass(n: int, s: float) -> float:
    """About sum(k ** -s for k in 1..n): the popularity mass of the base catalog."""
    if s == 1.0:
        return 1.0 + math.log((n + 0.5) / 1.5)
    return 1.0 + ((n + 0.5) ** (1.0 - s) - 1.5 ** (1.0 - s)) / (1.0 - s)


def partition_of(track_id: str, partitions: int) -> int:
    return (murmur2(track_id.encode()) & 0x7FFFFFFF) % partitions


def track_id_of(index: int) -> str:
    return f"trk{index:08x}"


@dataclass(slots=True)
class Tick:
    """The events of one slice of event time, for the partitions this model owns."""

    end_ms: int
    # (partition, key, value) TrackCreated records, in send order.
    tracks: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    # partition -> [(track_id, SoundUsed JSON)], in send order.
    uses: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    # (partition, key, value) whole records sent as they are (e.g. not JSON).
    raw: list[tuple[int, bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class ModelStats:
    uses_sent: int = 0          # SoundUsed elements sent (valid or not), owned partitions
    uses_counted: int = 0       # of which the worker must count
    duplicates: int = 0
    late: int = 0
    invalid: int = 0            # invalid elements + invalid whole records
    early_uses: int = 0         # counted uses sent before their TrackCreated
    tracks_sent: int = 0        # TrackCreated records sent (valid, duplicate or invalid)
    tracks_created: int = 0     # accepted TrackCreated (catalog + new)
    tracks_invalid: int = 0
    trending_started: int = 0
    uses_new_tracks: int = 0    # counted uses of tracks created during the run
    uses_trending: int = 0      # counted uses picked from the trending set

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]

    def add(self, other: ModelStats) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))


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
        self.tag = f"e{cfg.seed:x}-"
        now = int(time.time() * 1000)
        self.catalog_ms = catalog_ms if catalog_ms is not None else (cfg.start_ms or now)
        self.start_ms = cfg.start_ms
        self._part = bytearray()
        self.order = array("I")
        self.n_tracks = 0
        self.catalog_size = cfg.catalog
        self._genre_cum = list(accumulate(w for _, w in GENRES))
        self._country_names = [c for c, _ in COUNTRIES]
        total = sum(w for _, w in COUNTRIES)
        self._country_cum = list(accumulate(w / total for _, w in COUNTRIES))
        self._wm = [0] * partitions           # watermark per partition, as the worker's
        self._dups: dict[int, list[tuple[str, str]]] = {}
        self._announce: list[tuple[int, int]] = []   # heap (announce_ms, track index)
        self._early: list[tuple[int, int]] = []      # heap (occurred_at, track index)
        self._early_delay = cfg.early_delay_max_ms
        self._trending: list[tuple[int, int, float]] = []  # (index, start_ms, peak weight)
        self._trend_idx: list[int] = []
        self._trend_cum: list[float] = []
        self._trend_total = 0.0
        self._trend_at = -1
        self._use_carry = 0.0
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

    def track_event(self, index: int, occurred_at: int) -> dict[str, Any]:
        """The TrackCreated of one track; its metadata depend only on (seed, index)."""
        r = SplitMix(self.cfg.seed * 0x100000001B3 + index * 0x9E3779B97F4A7C15 + 1)
        cfg = self.cfg
        track_id = track_id_of(index)
        genre = GENRES[bisect(self._genre_cum, r.random() * self._genre_cum[-1])][0]
        x = r.random()
        if x < cfg.ai_share:
            origin = "ai_generated" if x < cfg.ai_share * 0.65 else "ai_assisted"
        else:
            origin = "human"
        creator = f"usr{r.below(cfg.users)}"
        rights = self._rights(r, origin, creator)
        event: dict[str, Any] = {
            "event_id": f"{self.tag}c{index:x}",
            "track_id": track_id,
            "occurred_at": occurred_at,
            "creator_id": creator,
            "genre": genre,
            "ai_origin": origin,
            "rights": rights,
            "isrc": (f"QZ{'SKX'[r.below(3)]}{'AB9'[r.below(3)]}{r.below(10)}"
                     f"{index % 10_000_000:07d}"),
            "title": f"{_TITLE_A[r.below(len(_TITLE_A))]} {_TITLE_B[r.below(len(_TITLE_B))]}",
            "duration_ms": 8_000 + r.below(232_000),
        }
        if r.random() < 0.6:
            event["iswc"] = f"T{r.below(10_000_000_000):010d}"
        if origin != "human":
            event["ai_tool"] = AI_TOOLS[r.below(len(AI_TOOLS))]
        return event

    @staticmethod
    def _share(r: SplitMix, micro: int) -> Any:
        """A share as a JSON number or a decimal string (at most 6 decimals)."""
        text = f"{micro // 1_000_000}.{micro % 1_000_000:06d}".rstrip("0").rstrip(".")
        if r.random() < 0.5:
            return text
        return 1 if micro == 1_000_000 else float(text)

    def _rights(self, r: SplitMix, origin: str, creator: str) -> list[dict[str, Any]]:
        """1-4 holders: labels own the master, publishers the composition, with the
        splits seen in practice and often a remainder nobody claimed."""
        label = f"lbl-{zipf_index(r.random(), 2_000, 1.2)}"
        if origin == "ai_generated" and r.random() < 0.5:
            label = creator  # self-released AI track
        x = r.random()
        if x < 0.55:
            master = [(label, 1_000_000)]
        elif x < 0.7:
            master = [(label, (850_000, 900_000, 950_000)[r.below(3)])]
        else:
            second = f"lbl-{zipf_index(r.random(), 2_000, 1.2)}"
            if second == label:
                second = f"dist-{r.below(300)}"
            a = (500_000, 600_000, 700_000, 750_000, 800_000)[r.below(5)]
            b = 1_000_000 - a - (50_000 if r.random() < 0.3 else 0)
            master = [(label, a), (second, b)]
        y = r.random()
        publishers = [f"pub-{zipf_index(r.random(), 5_000, 1.2)}" for _ in range(3)]
        if len(set(publishers)) < 3:
            publishers = [f"{p}-{i}" for i, p in enumerate(publishers)]
        if y < 0.12:
            publishing: list[tuple[str, int]] = []  # composition entirely unclaimed
        elif y < 0.45:
            publishing = [(publishers[0], (1_000_000, 500_000, 750_000)[r.below(3)])]
        elif y < 0.85:
            split = ((500_000, 500_000), (600_000, 400_000), (333_333, 333_333),
                     (500_000, 250_000))[r.below(4)]
            publishing = list(zip(publishers[:2], split, strict=True))
        else:
            split = ((333_333, 333_333, 333_333), (500_000, 250_000, 250_000),
                     (400_000, 300_000, 200_000))[r.below(3)]
            publishing = list(zip(publishers, split, strict=True))
        if len(master) + len(publishing) > 4:
            publishing = publishing[:4 - len(master)]
        rights = [{"holder_id": h, "right": "master", "share": self._share(r, m)}
                  for h, m in master]
        rights += [{"holder_id": h, "right": "publishing", "share": self._share(r, m)}
                   for h, m in publishing]
        return rights

    def _emit_track(self, tick: Tick, index: int, occurred_at: int) -> None:
        partition = self.partition(index)
        if not self._own[partition]:
            return
        event = self.track_event(index, occurred_at)
        value = orjson.dumps(event)
        key = event["track_id"].encode()
        tick.tracks.append((partition, key, value))
        self.stats.tracks_sent += 1
        self.stats.tracks_created += 1
        if self.truth is not None:
            self.truth.track_created(event, partition)

    # -- the stream -----------------------------------------------------------------

    def catalog_tick(self) -> Tick:
        """The preamble: TrackCreated of every track that exists before the run."""
        tick = Tick(end_ms=self.catalog_ms)
        indexes = self._new_track_indexes(self.catalog_size)
        order = list(indexes)
        self.rng.shuffle(order)
        self.order = array("I", order)
        base = self.catalog_ms - 60_000
        for index in indexes:
            jitter = int(SplitMix(index * 0x2545F4914F6CDD1D + self.cfg.seed).random() * 59_000)
            self._emit_track(tick, index, base + jitter)
        for _ in range(min(self.cfg.initial_trending, self.catalog_size)):
            index = order[self.rng.randrange(len(order))]
            age = int(self.rng.random() * 2 * self.cfg.trend_half_life_s * 1000)
            self._trending.append((index, self.catalog_ms - age, self._trend_peak()))
        return tick

    def ticks(self, start_ms: int | None = None) -> Iterator[Tick]:
        """Every tick after the preamble (call ``catalog_tick`` first)."""
        if not self.order:
            raise RuntimeError("catalog_tick() must come first")
        start = start_ms if start_ms is not None else self.start_ms
        if start is None:
            start = int(time.time() * 1000)
        self.start_ms = start
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

    def _trend_peak(self) -> float:
        cfg = self.cfg
        lo, hi = math.log(cfg.trend_rank_min), math.log(cfg.trend_rank_max)
        rank = math.exp(lo + self.rng.random() * (hi - lo))
        return rank ** -cfg.zipf

    def _refresh_trending(self, now: int) -> None:
        cfg = self.cfg
        rise = cfg.trend_rise_s * 1000
        decay = math.log(2) / (cfg.trend_half_life_s * 1000)
        floor = (cfg.trend_rank_max * 4) ** -cfg.zipf
        keep, idx, weights = [], [], []
        for entry in self._trending:
            index, started, peak = entry
            age = now - started
            if age < rise:
                weight = peak * max(age, 0) / rise
            else:
                weight = peak * math.exp(-(age - rise) * decay)
                if weight < floor:
                    continue
            keep.append(entry)
            if weight > 0:
                idx.append(index)
                weights.append(weight)
        self._trending = keep
        self._trend_idx = idx
        self._trend_cum = list(accumulate(weights))
        self._trend_total = self._trend_cum[-1] if weights else 0.0
        self._trend_at = now

    def _tick(self, t0: int, t1: int, rate: float) -> Tick:
        cfg = self.cfg
        rng = self.rng
        rnd = rng.random
        stats = self.stats
        tick = Tick(end_ms=t1)
        uses = tick.uses
        own = self._own
        truth = self.truth
        tev = self._truth_event
        wm = self._wm
        span = t1 - t0

        # Duplicates of the previous tick's uses go first.
        if self._dups:
            for partition, items in self._dups.items():
                uses.setdefault(partition, []).extend(items)
                stats.uses_sent += len(items)
                stats.duplicates += len(items)
            self._dups = {}
        # TrackCreated that were held back behind their first uses.
        announce = self._announce
        while announce and announce[0][0] < t1:
            at, index = heapq.heappop(announce)
            self._emit_track(tick, index, at)

        # New tracks.
        self._track_carry += cfg.track_rate * span / 1000
        new_count = int(self._track_carry)
        self._track_carry -= new_count
        early_heap = self._early
        early_span = self._early_delay - EARLY_DELAY_MIN_MS
        for index in self._new_track_indexes(new_count):
            created = t0 + int(rnd() * span)
            self.order.append(index)
            early = rnd() < cfg.early_rate
            trending = rnd() < cfg.trend_prob
            bad = rnd() < cfg.invalid_rate
            dup = rnd() < cfg.duplicate_rate
            if trending:
                self._trending.append((index, created, self._trend_peak()))
                if own[self.partition(index)]:   # each process counts its own tracks
                    stats.trending_started += 1
                self._trend_at = -1
            if early:
                delay = EARLY_DELAY_MIN_MS + int(rnd() * early_span)
                heapq.heappush(announce, (created + delay, index))
                # The first use comes at once, the others before the TrackCreated, at least
                # a tick before it (so in an earlier tick); each is sent in the tick its
                # event time falls in, never ahead of the clock.
                heapq.heappush(early_heap, (created, index))
                for _ in range(int(rnd() * 3)):
                    heapq.heappush(early_heap, (
                        created + int(rnd() * (delay - TICK_MAX_MS)), index))
            else:
                self._emit_track(tick, index, created)
                if dup and own[self.partition(index)]:
                    tick.tracks.append(tick.tracks[-1])
                    stats.tracks_sent += 1
            if bad:
                self._emit_invalid_track(tick, created)

        # Uses.
        if self._trend_at < 0 or t0 - self._trend_at >= 1000:
            self._refresh_trending(t0)
        n_base = len(self.order)
        base_mass = zipf_mass(n_base, cfg.zipf)
        trend_total = self._trend_total
        p_trend = trend_total / (trend_total + base_mass) if trend_total else 0.0
        trend_cum, trend_idx = self._trend_cum, self._trend_idx
        s = cfg.zipf
        zipf_a = 1.0 - (n_base + 1) ** (1.0 - s) if s != 1.0 else 0.0
        zipf_inv = 1.0 / (1.0 - s) if s != 1.0 else 0.0
        order = self.order
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
        ccum, cnames = self._country_cum, self._country_names
        tag = self.tag
        seq = self._seq

        self._use_carry += rate * span / 1000
        count = int(self._use_carry)
        self._use_carry -= count
        picks: list[tuple[int, int, int]] = []
        while early_heap and early_heap[0][0] < t1:
            at, index = heapq.heappop(early_heap)
            picks.append((index, at, 2))
        for _ in range(count):
            at = t0 + int(rnd() * span)
            if p_trend and rnd() < p_trend:
                picks.append((trend_idx[bisect(trend_cum, rnd() * trend_total)], at, 1))
            else:
                u = rnd()
                rank = (int((n_base + 1) ** u) if s == 1.0 else
                        int((1.0 - u * zipf_a) ** zipf_inv))
                if rank > n_base:
                    rank = n_base
                elif rank < 1:
                    rank = 1
                picks.append((order[rank - 1], at, 0))

        for index, at, flag in picks:
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
                    pass  # counted below, then repeated in the next tick
                elif kind < late_p:
                    late_ts = at - lateness - 60_000 - int(extra * 1_740_000)
                    if late_ts < wm[partition] - lateness:
                        bucket.append((track_id, (
                            f'{{"event_id":"{event_id}","track_id":"{track_id}",'
                            f'"occurred_at":{late_ts},"user_id":"u{user}","use":"{use}",'
                            f'"country":"{country}"}}')))
                        stats.uses_sent += 1
                        stats.late += 1
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
                self._dups.setdefault(partition, []).append((track_id, text))
            if truth is not None:
                tev["track_id"] = track_id
                tev["occurred_at"] = ts
                tev["use"] = use
                truth.use(tev, partition)
        self._seq = seq
        return tick

    def _emit_invalid_use(self, tick: Tick, bucket: list[tuple[str, str]], partition: int,
                          x: float, event_id: str, track_id: str, ts: int, country: str) -> None:
        stats = self.stats
        stats.invalid += 1
        if x < 0.1:
            # A whole record the worker cannot read: not JSON, or an empty batch.
            value = (b"[]" if x < 0.03 else
                     f'{{"event_id":"{event_id}","track_id":"{track_id}","occ'.encode())
            tick.raw.append((partition, track_id.encode(), value))
            stats.uses_sent += 1
            return
        _, template = _INVALID_USES[int((x - 0.1) / 0.9 * len(_INVALID_USES))]
        text = template.format(e=event_id, t=track_id, s=ts, c=country,
                               f=FUTURE_OCCURRED_AT_MS)
        bucket.append((track_id, text))
        stats.uses_sent += 1

    def _emit_invalid_track(self, tick: Tick, occurred_at: int) -> None:
        """A TrackCreated that breaks a rule, for a track id nothing else uses."""
        self._invalid_tracks += 1
        number = self._invalid_tracks
        track_id = f"bad{self.cfg.seed:x}x{number:x}"
        partition = partition_of(track_id, self.partitions)
        if not self._own[partition]:
            return
        event = self.track_event(0, occurred_at)
        event["track_id"] = track_id
        event["event_id"] = f"{self.tag}x{number:x}"
        variant = number % 5
        if variant == 0:
            event["rights"] = [{"holder_id": "lbl-1", "right": "master", "share": "0.7"},
                               {"holder_id": "lbl-2", "right": "master", "share": "0.4"}]
        elif variant == 1:
            event["ai_origin"] = "robot"
        elif variant == 2:
            del event["rights"]
        elif variant == 3:
            event["rights"] = [{"holder_id": "lbl-1", "right": "master", "share": "0.1234567"}]
        else:
            event["genre"] = "Lo-Fi"
        tick.tracks.append((partition, track_id.encode(), orjson.dumps(event)))
        self.stats.tracks_sent += 1
        self.stats.tracks_invalid += 1

    def final_tick(self, t: int) -> Tick:
        """Whatever is still held back: the last duplicates and delayed TrackCreated.

        Early uses dated after ``t`` are dropped (never sent, never counted): sent now,
        they would be ahead of the clock and of the partition's watermark.
        """
        tick = Tick(end_ms=t)
        self._early = []
        for partition, items in self._dups.items():
            tick.uses.setdefault(partition, []).extend(items)
            self.stats.uses_sent += len(items)
            self.stats.duplicates += len(items)
        self._dups = {}
        while self._announce:
            at, index = heapq.heappop(self._announce)
            self._emit_track(tick, index, at)
        return tick
