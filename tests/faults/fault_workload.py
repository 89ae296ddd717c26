"""Deterministic workloads for the fault-injection scenarios, with their expected outcome.

A workload is a list of Kafka records, in sending order, built from a seed:

* ``TrackCreated`` records (one per track, valid, spread over the first 60 % of the
  stream, so some uses arrive before their track and wait for its metadata);
* ``SoundUsed`` events, mostly packed per partition into batch records (JSON arrays of
  ``batch_sizes`` events) and partly sent one per record (``single_ratio``);
* exact duplicates (same event, resent a little later; ``dup_rate``);
* invalid inputs: bad elements inside batches, bad single records and whole-record
  garbage, each with the DLQ entry it must produce (value bytes, reason code, field).

What should be counted is fed to :class:`streamer.verify.GroundTruth` while the records
are built (every distinct valid use once), so the expected counters never depend on
the pipeline's own code. Records are routed with Kafka's default murmur2 partitioner
on the track id, like the producer SDK and any Java/librdkafka producer.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from streamer.verify import GroundTruth, PartitionedTruth

USES = "u"
TRACKS = "t"

COUNTRIES = ("DE", "US", "FR", "BR", "JP", "GB", "IN", "SE", "NG", "MX", "KR", "ES")
GENRES = ("lofi", "hyperpop", "ambient", "techno", "jazz", "drill", "k-pop", "city_pop")
ORIGINS = ("human", "ai_assisted", "ai_generated")
LATENESS_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class ExpectedReject:
    """One dead-letter record the worker must write for an input."""

    value: bytes
    codes: frozenset[str]  # acceptable reason codes (the part before the first ':')
    field: str | None  # the field the reason must name, or None for whole-record rules


@dataclass(slots=True)
class Record:
    topic: str  # USES or TRACKS
    partition: int
    key: bytes | None
    value: bytes | None
    events: int = 0  # elements carried (valid, duplicate or bad)
    rejects: list[ExpectedReject] = field(default_factory=list)
    offset: int = -1  # filled in when Kafka acknowledges it


@dataclass(slots=True)
class BadElement:
    """A SoundUsed element that must be rejected: the element and its expected reason.

    ``single_ok`` is False for elements that would change meaning as a record of their
    own (a JSON array would be read as a batch).
    """

    element: Any
    codes: frozenset[str]
    field: str | None
    single_ok: bool = True
    late: bool = False  # must be placed after valid uses of its partition


@dataclass(slots=True)
class BadRecord:
    """A whole record that must be rejected as a whole (one DLQ entry, its own bytes)."""

    value: bytes | None
    codes: frozenset[str]
    topic: str = USES


@dataclass(slots=True)
class WorkloadStats:
    uses_distinct: int = 0
    duplicates: int = 0
    tracks: int = 0
    bad_elements: int = 0
    bad_records: int = 0
    records: int = 0
    batch_records: int = 0
    single_records: int = 0

    @property
    def events_sent(self) -> int:
        """Every event or input sent: distinct uses, their duplicates, tracks, bad inputs."""
        return (self.uses_distinct + self.duplicates + self.tracks + self.bad_elements
                + self.bad_records)

    @property
    def malformed(self) -> int:
        return self.bad_elements + self.bad_records


@dataclass(slots=True)
class Workload:
    seed: int
    partitions: int
    records: list[Record]
    truth: GroundTruth
    stats: WorkloadStats
    t0_ms: int
    span_ms: int
    # The same truth kept per input partition (territory and ledger reconciliation).
    partitioned: PartitionedTruth = field(default_factory=PartitionedTruth)

    @property
    def expected_rejects(self) -> int:
        return sum(len(record.rejects) for record in self.records)

    @property
    def malformed_records(self) -> int:
        """Records that are invalid as a whole or carry at least one invalid element."""
        return sum(1 for record in self.records if record.rejects)


def _micro_to_share(rng: random.Random, micro: int) -> object:
    """A share as a decimal string, or a JSON number when that is exact and short."""
    text = format(Decimal(micro).scaleb(-6).normalize(), "f")
    if micro == 1_000_000:
        return rng.choice((1, "1", "1.0", 1.0))
    if micro in (500_000, 250_000, 750_000, 125_000) and rng.random() < 0.5:
        return float(text)
    return text


def _split(rng: random.Random, holders: int, claimed: int) -> list[int]:
    """``holders`` positive micro-shares adding up to ``claimed``."""
    if holders == 1:
        return [claimed]
    cuts = sorted(rng.sample(range(1, claimed), holders - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, claimed], strict=True)]


def make_track(rng: random.Random, track_id: str, event_id: str, occurred_at: int,
               holder_pool: int = 400) -> dict[str, Any]:
    rights: list[dict[str, Any]] = []
    for right in ("master", "publishing"):
        holders = rng.choice((0, 1, 1, 2, 2, 3)) if right == "publishing" else rng.choice(
            (1, 1, 2, 3))
        if holders == 0:
            continue
        claimed = 1_000_000 if rng.random() < 0.6 else rng.randrange(holders * 1000, 1_000_000)
        names = rng.sample(range(holder_pool), holders)
        for name, micro in zip(names, _split(rng, holders, claimed), strict=True):
            rights.append({"holder_id": f"{right[0]}-holder-{name}", "right": right,
                           "share": _micro_to_share(rng, micro)})
    event: dict[str, Any] = {
        "event_id": event_id, "track_id": track_id, "occurred_at": occurred_at,
        "creator_id": f"creator-{rng.randrange(5000)}", "genre": rng.choice(GENRES),
        "ai_origin": rng.choice(ORIGINS), "rights": rights,
    }
    if rng.random() < 0.3:
        event["title"] = f"Track {track_id}"
    return event


class WorkloadBuilder:
    """Builds a :class:`Workload`; see the module docstring for what it contains."""

    def __init__(
        self,
        seed: int,
        partitions: int,
        n_uses: int,
        *,
        tag: str,
        now_ms: int,
        n_tracks: int = 1500,
        single_ratio: float = 0.12,
        dup_rate: float = 0.02,
        batch_sizes: tuple[int, int] = (20, 400),
        span_ms: int = 20 * 60_000,
        bad_rate: float = 0.004,
        bad_single_ratio: float = 0.5,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.partitions = partitions
        self.n_uses = n_uses
        self.tag = tag
        self.n_tracks = n_tracks
        self.single_ratio = single_ratio
        self.dup_rate = dup_rate
        self.batch_sizes = batch_sizes
        self.span_ms = span_ms
        self.bad_rate = bad_rate
        self.bad_single_ratio = bad_single_ratio
        # Event time: the stream covers [t0, t0 + span], ending a minute before now, so
        # nothing is in the future and nothing is late (lateness 1 h > span + jitter).
        self.t0_ms = now_ms - span_ms - 60_000
        self._partitioner = DefaultPartitioner()
        self._all = list(range(partitions))
        self.truth = GroundTruth()
        self.partitioned = PartitionedTruth()
        self.stats = WorkloadStats()
        self.records: list[Record] = []
        self._open: dict[int, tuple[list[bytes], list[ExpectedReject], int, bytes]] = {}
        # Partitions that already hold a counted use (a late element needs one before it).
        self._has_use: set[int] = set()
        self.track_ids = [f"trk:{tag}:{k}" for k in range(n_tracks)]
        ranks = list(range(1, n_tracks + 1))
        self.rng.shuffle(ranks)
        self._weights = [1.0 / rank ** 0.9 for rank in ranks]

    def partition_of(self, track_id: str) -> int:
        return self._partitioner(track_id.encode(), self._all, self._all)

    # -- events ---------------------------------------------------------------------

    def use_event(self, i: int) -> dict[str, Any]:
        rng = self.rng
        track_id = rng.choices(self.track_ids, self._weights)[0]
        occurred = self.t0_ms + self.span_ms * i // max(1, self.n_uses) + rng.randint(
            -20_000, 20_000)
        event: dict[str, Any] = {
            "event_id": f"{self.tag}-u{i}", "track_id": track_id,
            "occurred_at": max(self.t0_ms, min(occurred, self.t0_ms + self.span_ms)),
            "user_id": f"user-{rng.randrange(100_000)}",
            "use": "create" if rng.random() < 0.3 else "play",
            "country": rng.choice(COUNTRIES),
        }
        if rng.random() < 0.2:
            event["video_id"] = f"vid-{rng.randrange(10**9)}"
        return event

    # -- emitting -------------------------------------------------------------------

    def _new_batch_target(self) -> int:
        low, high = self.batch_sizes
        return self.rng.randint(low, high)

    def _emit_record(self, record: Record) -> None:
        self.records.append(record)

    def _close_batch(self, partition: int) -> None:
        opened = self._open.pop(partition, None)
        if opened is None:
            return
        parts, rejects, _, key = opened
        value = b"[" + b",".join(parts) + b"]"
        self._emit_record(Record(USES, partition, key, value, len(parts), rejects))
        self.stats.batch_records += 1
        if len(rejects) < len(parts):
            self._has_use.add(partition)

    def _emit_element(self, partition: int, encoded: bytes, key: bytes,
                      reject: ExpectedReject | None, single: bool) -> None:
        if single:
            self._emit_record(Record(USES, partition, key, encoded, 1,
                                     [reject] if reject else []))
            self.stats.single_records += 1
            if reject is None:
                self._has_use.add(partition)
            return
        opened = self._open.get(partition)
        if opened is None:
            opened = self._open[partition] = ([], [], self._new_batch_target(), key)
        parts, rejects, target, _ = opened
        parts.append(encoded)
        if reject is not None:
            rejects.append(reject)
        if len(parts) >= target:
            self._close_batch(partition)

    def _emit_use(self, event: dict[str, Any]) -> None:
        partition = self.partition_of(event["track_id"])
        single = self.rng.random() < self.single_ratio
        self._emit_element(partition, orjson.dumps(event), event["track_id"].encode(), None,
                           single)

    def _emit_bad_element(self, bad: BadElement, partition: int | None = None) -> None:
        if partition is None:
            partition = self.rng.randrange(self.partitions)
        encoded = orjson.dumps(bad.element)
        reject = ExpectedReject(encoded, bad.codes, bad.field)
        single = bad.single_ok and self.rng.random() < self.bad_single_ratio
        self._emit_element(partition, encoded, b"bad", reject, single)
        self.stats.bad_elements += 1

    def _emit_bad_record(self, bad: BadRecord) -> None:
        partition = self.rng.randrange(self.partitions)
        self._emit_record(Record(bad.topic, partition, b"bad", bad.value, 1,
                                 [ExpectedReject(bad.value or b"", bad.codes, None)]))
        self.stats.bad_records += 1
        self.stats.single_records += 1

    def _emit_track(self, k: int, occurred_at: int) -> None:
        track_id = self.track_ids[k]
        event = make_track(self.rng, track_id, f"{self.tag}-t{k}", occurred_at)
        self.truth.track_created(event)
        self.partitioned.track_created(event, self.partition_of(track_id))
        self._emit_record(Record(TRACKS, self.partition_of(track_id), track_id.encode(),
                                 orjson.dumps(event), 1))
        self.stats.tracks += 1

    # -- the whole stream -------------------------------------------------------------

    def build(
        self,
        bad_elements: Iterable[BadElement] = (),
        bad_records: Iterable[BadRecord] = (),
        default_bad: Callable[[random.Random, dict[str, Any], int], BadElement] | None = None,
    ) -> Workload:
        """The records in sending order. ``bad_elements``/``bad_records`` are spread over
        the stream; ``default_bad`` makes extra bad elements at ``bad_rate``."""
        rng = self.rng
        n = self.n_uses
        creates_at: defaultdict[int, list[int]] = defaultdict(list)
        for k in range(self.n_tracks):
            creates_at[rng.randrange(max(1, int(n * 0.6)))].append(k)
        bad_at: defaultdict[int, list[BadElement | BadRecord]] = defaultdict(list)
        for bad in bad_elements:
            low = n // 2 if isinstance(bad, BadElement) and bad.late else 0
            bad_at[rng.randrange(low, n)].append(bad)
        for bad_record in bad_records:
            bad_at[rng.randrange(n)].append(bad_record)
        dups_at: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
        # A duplicate follows its original within a minute of event time (plus the 20 s
        # jitter), well inside the default 5-minute dedupe horizon.
        max_gap = max(1, min(2000, n * 60_000 // self.span_ms))
        for i in range(n):
            for k in creates_at.pop(i, ()):
                self._emit_track(k, self.t0_ms + self.span_ms * i // max(1, n))
            event = self.use_event(i)
            self.truth.use(event)
            self.partitioned.use(event, self.partition_of(event["track_id"]))
            self.stats.uses_distinct += 1
            self._emit_use(event)
            if rng.random() < self.dup_rate:
                dups_at[min(n - 1, i + rng.randint(0, max_gap))].append(event)
            for dup in dups_at.pop(i, ()):
                self._emit_use(dup)
                self.stats.duplicates += 1
            for bad in bad_at.pop(i, ()):
                if isinstance(bad, BadRecord):
                    self._emit_bad_record(bad)
                elif bad.late:
                    # Late only behind a record with a counted use in the same partition.
                    partition = rng.choice(sorted(self._has_use))
                    self._emit_bad_element(bad, partition)
                else:
                    self._emit_bad_element(bad)
            if default_bad is not None and rng.random() < self.bad_rate:
                self._emit_bad_element(default_bad(rng, event, i))
        for i in sorted(dups_at):  # pragma: no cover - min(n - 1, ...) leaves none
            for dup in dups_at[i]:
                self._emit_use(dup)
                self.stats.duplicates += 1
        for partition in list(self._open):
            self._close_batch(partition)
        self.stats.records = len(self.records)
        return Workload(self.seed, self.partitions, self.records, self.truth, self.stats,
                        self.t0_ms, self.span_ms, self.partitioned)


# -- a few simple bad elements, for the scenarios that are not about input fuzzing ------

_SIMPLE_FIELDS = ("event_id", "track_id", "occurred_at", "user_id", "use", "country")


def simple_bad(rng: random.Random, base: dict[str, Any], i: int) -> BadElement:
    """A copy of ``base`` with one field broken, under a fresh event id."""
    event = dict(base)
    event["event_id"] = f"{base['event_id']}-bad"
    name = rng.choice(_SIMPLE_FIELDS)
    kind = rng.randrange(3)
    if kind == 0:
        del event[name]
        return BadElement(event, frozenset({"missing_field"}), name)
    if kind == 1:
        event[name] = [1] if name != "occurred_at" else "yesterday"
        return BadElement(event, frozenset({"wrong_type", "invalid_value"}), name)
    event[name] = {"event_id": "x" * 129, "track_id": "bad track/id", "occurred_at": -5,
                   "user_id": "", "use": "share", "country": "de"}[name]
    return BadElement(event, frozenset({"invalid_value"}), name)
