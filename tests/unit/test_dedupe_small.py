"""The small dict of single-event partitions against a plain model of the horizon.

A ``Deduper`` keeps a partition's hashes in a dict while it has only had single-event
records and few live hashes, in its block table otherwise, and moves them between the
two. Whatever holds them, it must say "new" where the model does, persist the same
hashes per bucket and come back after a crash with exactly what was flushed.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.state.dedupe import SMALL_LIMIT, Deduper, event_hash
from streamer.state.dedupe_table import SLOTS, BlockTable

HORIZON = 60_000  # buckets of 12 s
BUCKET_MS = HORIZON // 5
SETTINGS = settings(max_examples=300, deadline=None)


def _crowded(count: int) -> list[int]:
    """Hashes that all share the same two blocks of a fresh table (overflow and moves)."""
    table = BlockTable()
    places = table.places_one(event_hash("crowd"))
    blocks = {places[0][0], places[1][0]}
    found = []
    rng = random.Random(11)
    while len(found) < count:
        digest = (rng.getrandbits(54) << 10) | places[0][0]
        if {place for place, _ in table.places_one(digest)} == blocks:
            found.append(digest)
    return found


CROWDED = _crowded(3 * SLOTS)


def _digest(n: int) -> int:
    return CROWDED[n] if n < len(CROWDED) else event_hash(f"track-{n}")


IDS = st.one_of(st.integers(0, len(CROWDED) - 1), st.integers(0, 150))
EVENT = st.tuples(IDS, st.integers(-90_000, 20_000))  # id, time - watermark
OPS = st.lists(st.one_of(
    st.tuples(st.just("one"), EVENT),
    st.tuples(st.just("batch"), st.lists(EVENT, max_size=12)),
    st.tuples(st.just("tick"), st.integers(0, 40_000)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("crash")),  # restart from what the last flush wrote
), min_size=20, max_size=80)


class Model:
    """What the dedupe must do, with none of its data structures: id -> first bucket,
    forgotten once its bucket ends at or before ``watermark - horizon``."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.first_live = 0
        self.watermark = 0
        self.unflushed: dict[int, list[int]] = {}  # bucket -> hashes added since a flush

    def add(self, digest: int, occurred_at: int) -> bool:
        if digest in self.seen:
            return False
        bucket = occurred_at // BUCKET_MS
        self.seen[digest] = bucket
        self.unflushed.setdefault(bucket, []).append(digest)
        return True

    def advance(self, watermark: int) -> None:
        self.watermark = max(self.watermark, watermark)
        first_live = (self.watermark - HORIZON) // BUCKET_MS
        if first_live > self.first_live:
            self.first_live = first_live
            self.seen = {d: b for d, b in self.seen.items() if b >= first_live}


def _restart(redis: dict[int, bytes], watermark: int, small_limit: int,
             order: random.Random) -> Deduper:
    """A new owner's claim: the live buckets read back, in any order."""
    restarted = Deduper(HORIZON, small_limit=small_limit)
    buckets = [b for b in restarted.live_buckets(watermark) if b in redis]
    order.shuffle(buckets)
    for bucket in buckets:
        restarted.load(bucket, redis[bucket])
    return restarted


@SETTINGS
@given(OPS, st.sampled_from([1, 4, 9, 30, 80, SMALL_LIMIT]), st.booleans(),
       st.randoms(use_true_random=False))
def test_single_events_batches_flushes_and_crashes_match_the_model(
        ops: list[tuple], small_limit: int, with_batches: bool, order: random.Random) -> None:
    """Half the runs single-event records only (the tracks topic), half mixed."""
    d = Deduper(HORIZON, small_limit=small_limit)
    model = Model()
    redis: dict[int, bytes] = {}  # bucket -> the appended hashes, as the flush writes them
    flushed = (Model(), {})  # the model and Redis as of the last flush
    batched = False
    for op in ops:
        kind = op[0]
        if kind in ("one", "batch"):
            events = [op[1]] if kind == "one" else op[1]
            # Within the horizon: an id older than it is not the dedupe's to remember.
            oldest = max(0, model.first_live * BUCKET_MS)
            times = [max(oldest, model.watermark + offset) for _, offset in events]
            digests = [_digest(n) for n, _ in events]
            expected = [model.add(digest, t) for digest, t in zip(digests, times, strict=True)]
            if kind == "one" or not with_batches:
                for digest, t, new in zip(digests, times, expected, strict=True):
                    assert d.add_digest(digest, t) == new
            else:
                batched = batched or bool(events)
                assert d.add_batch(digests, times) == expected
            if times:
                model.advance(max(times))
                d.advance(model.watermark)
        elif kind == "tick":
            model.advance(model.watermark + op[1])
            d.advance(model.watermark)
        elif kind == "flush":
            packed = d.take_new()
            expired = set(d.evict(model.watermark))
            model.advance(model.watermark)  # evict is an advance too (after a crash: first)
            for bucket, blob in packed.items():
                if bucket not in expired:
                    redis[bucket] = redis.get(bucket, b"") + blob
            for bucket in expired:
                redis.pop(bucket, None)
            model.unflushed = {}
            # Redis holds every remembered hash, once, under the bucket it was first seen in.
            by_bucket: dict[int, list[int]] = {}
            for digest, bucket in model.seen.items():
                by_bucket.setdefault(bucket, []).append(digest)
            assert {b: sorted(memoryview(blob).cast("Q")) for b, blob in redis.items()
                    if blob} == {b: sorted(h) for b, h in by_bucket.items()}
            snapshot = Model()
            snapshot.seen, snapshot.first_live = dict(model.seen), model.first_live
            snapshot.watermark = model.watermark
            flushed = (snapshot, dict(redis))
        else:  # a crash: what was not flushed is lost, and so re-read
            model, redis = flushed[0], dict(flushed[1])
            live = d.live_buckets(model.watermark)
            model.seen = {dg: b for dg, b in model.seen.items() if b in live}
            model.first_live = 0  # a new owner's dedupe starts with no expiry behind it
            fresh = Model()
            fresh.seen, fresh.watermark = dict(model.seen), model.watermark
            flushed = (fresh, dict(redis))
            d = _restart(redis, model.watermark, small_limit, order)
            batched = False
        assert len(d) == len(model.seen)
        if batched:
            assert d.in_table
        elif not d.in_table:
            assert len(d) <= small_limit
    # Whatever holds them, every remembered hash is found and no other.
    for n in range(151):
        digest = _digest(n)
        assert d.add_digest(digest, model.watermark) == (digest not in model.seen)


def test_the_dict_moves_to_the_table_past_its_limit_and_back_after_expiry() -> None:
    d = Deduper(HORIZON, small_limit=100)
    early = [event_hash(f"early-{i}") for i in range(80)]
    late = [event_hash(f"late-{i}") for i in range(21)]
    assert all(d.add_digest(digest, 0) for digest in early)
    assert not d.in_table
    assert all(d.add_digest(digest, 50_000) for digest in late)
    assert d.in_table and len(d) == 101 and d.memory_bytes >= d._table.nbytes
    assert not any(d.add_digest(digest, 50_000) for digest in early + late)
    d.advance(HORIZON + BUCKET_MS)  # bucket 0, the early ones, expires: 21 left <= 100 // 4
    assert not d.in_table and len(d) == 21
    assert all(d.add_digest(digest, 72_000) for digest in early)  # forgotten: new again
    assert not any(d.add_digest(digest, 72_000) for digest in late)


def test_back_to_the_dict_with_overflowed_and_second_block_hashes() -> None:
    """Crowded hashes fill both their blocks (some in their second block, some kept
    aside): going back to the dict loses none of them."""
    d = Deduper(HORIZON, small_limit=100)
    others = [event_hash(f"other-{i}") for i in range(90)]
    assert all(d.add_digest(digest, 0) for digest in others)
    assert all(d.add_digest(digest, 50_000) for digest in CROWDED)
    assert d.in_table and d._overflow and len(d) == 90 + len(CROWDED)
    table = d._table
    second = [word for block in range(table.blocks) for word in table.words[block].tolist()
              if word and (word >> 8) & 1]
    assert second
    d.advance(HORIZON + BUCKET_MS)  # the others expire: 24 left <= 100 // 4
    assert not d.in_table and len(d) == len(CROWDED) and d._table.entries == 0
    assert not any(d.add_digest(digest, 72_000) for digest in CROWDED)
    assert all(d.add_digest(digest, 72_000) for digest in others)


def test_contents_decode_every_word_mid_split() -> None:
    rng = random.Random(4)
    d = Deduper(HORIZON)
    hashes = [rng.getrandbits(64) for _ in range(7_200)] + CROWDED
    d.add_batch(hashes, [0] * len(hashes))
    table = d._table
    assert table.split  # some blocks split, some not: both widths of address
    stored, codes = table.contents()
    expected = {table.hash_of(block, word) for block in range(table.blocks)
                for word in table.words[block].tolist() if word}
    assert sorted(stored.tolist()) == sorted(expected)
    assert set(stored.tolist()) | set(d._overflow) == set(hashes)
    assert set(codes.tolist()) == {1}


def test_a_batch_moves_the_dict_to_the_table_for_good() -> None:
    d = Deduper(HORIZON)
    assert d.add_digest(event_hash("single"), 0)
    assert d.add_batch([event_hash("single"), event_hash("batched")], [0, 0]) == [False, True]
    assert d.in_table
    d.advance(10 * HORIZON)  # everything expires; a partition of batches keeps its table
    assert d.in_table and len(d) == 0


def test_a_restart_with_many_hashes_goes_to_the_table() -> None:
    original = Deduper(HORIZON, small_limit=50)
    for i in range(40):
        original.add(f"a-{i}", 0)
    first = original.take_new()
    for i in range(40):
        original.add(f"b-{i}", 13_000)
    second = original.take_new()
    restarted = Deduper(HORIZON, small_limit=50)
    restarted.load(0, first[0])
    assert not restarted.in_table
    restarted.load(1, second[1])
    assert restarted.in_table and len(restarted) == 80
    assert not any(restarted.add(f"{p}-{i}", 20_000) for p in "ab" for i in range(40))
    assert restarted.take_new() == {}
