"""The event-id seen-set: duplicates, eviction by event time, persistence round trip."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.state import dedupe_table
from streamer.state.dedupe import Deduper, event_hash
from streamer.state.dedupe_table import MAX_LOAD, MIN_LEVEL, SLOTS, BlockTable

SETTINGS = settings(max_examples=300, deadline=None)
HORIZON = 5 * 60_000  # the default: 5 minutes, buckets of 1 minute


def test_bucket_is_a_fifth_of_the_horizon() -> None:
    assert Deduper(HORIZON).bucket_ms == 60_000
    assert Deduper(10_000).bucket_ms == 2_000
    assert Deduper(3).bucket_ms == 1
    assert Deduper(1).bucket_ms == 1


def test_event_hash_is_64_bit_and_stable() -> None:
    h = event_hash("ev-1")
    assert 0 <= h < 2**64
    assert event_hash("ev-1") == h
    assert event_hash("ev-2") != h
    assert event_hash("\u00e9") != event_hash("e")


def test_add_and_duplicates() -> None:
    d = Deduper(HORIZON)
    assert len(d) == 0
    assert d.add("a", 1_000) is True
    assert d.add("a", 1_000) is False
    # The same id with another time (a producer retry re-stamped) is still a duplicate.
    assert d.add("a", 200_000) is False
    assert d.add("b", 1_000) is True
    assert d.add("A", 1_000) is True
    assert len(d) == 3


def test_eviction_by_watermark_and_horizon() -> None:
    d = Deduper(HORIZON)
    d.add("early", 0)  # bucket 0 = [0, 60000)
    d.add("later", 60_000)  # bucket 1
    # Bucket 0 ends at 60000; it goes once 60000 <= watermark - horizon.
    assert d.evict(359_999) == []
    assert d.add("early", 359_999) is False
    assert d.evict(360_000) == [0]
    assert len(d) == 1
    assert d.add("later", 360_000) is False
    assert d.add("early", 360_000) is True  # forgotten: beyond the horizon
    assert d.evict(420_000) == [1]
    assert d.add("later", 420_000) is True


def test_evict_is_idempotent_and_keeps_recent() -> None:
    d = Deduper(HORIZON)
    for i in range(10):
        d.add(f"e{i}", i * 60_000)
    assert sorted(d.evict(9 * 60_000)) == [0, 1, 2, 3]
    assert d.evict(9 * 60_000) == []
    assert len(d) == 6


@SETTINGS
@given(
    st.integers(min_value=1, max_value=10**7),
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=60),
    st.integers(min_value=0, max_value=10**7),
)
def test_everything_within_the_horizon_survives_eviction(
    horizon: int, times: list[int], advance: int
) -> None:
    d = Deduper(horizon)
    for i, t in enumerate(times):
        assert d.add(f"id-{i}", t)
    watermark = max(times) + advance
    evicted = d.evict(watermark)
    bucket_ms = d.bucket_ms
    for bucket in evicted:
        # Only buckets that end at or before watermark - horizon go.
        assert (bucket + 1) * bucket_ms <= watermark - horizon
    for i, t in enumerate(times):
        if t >= watermark - horizon:
            assert d.add(f"id-{i}", watermark) is False, (t, watermark)
        if (t // bucket_ms + 1) * bucket_ms <= watermark - horizon:
            assert t // bucket_ms in evicted
    # State is bounded: only buckets overlapping [watermark - horizon, watermark] remain,
    # i.e. about horizon / bucket_ms + 1 of them.
    kept = {t // bucket_ms for t in times} - set(evicted)
    assert all(b >= (watermark - horizon) // bucket_ms for b in kept)


def test_take_new_packs_8_bytes_per_hash_and_resets() -> None:
    d = Deduper(HORIZON)
    d.add("a", 10)
    d.add("b", 20)
    d.add("a", 30)  # a duplicate is not new
    d.add("c", 61_000)
    packed = d.take_new()
    assert sorted(packed) == [0, 1]
    assert len(packed[0]) == 16
    assert len(packed[1]) == 8
    assert d.take_new() == {}
    d.add("d", 70_000)
    assert list(d.take_new()) == [1]


@SETTINGS
@given(st.lists(st.tuples(st.text(min_size=1, max_size=40), st.integers(0, 10**8)),
                min_size=1, max_size=80, unique_by=lambda pair: pair[0]))
def test_take_new_round_trips_through_load(events: list[tuple[str, int]]) -> None:
    original = Deduper(HORIZON)
    for event_id, t in events:
        assert original.add(event_id, t)
    packed = original.take_new()
    assert sum(len(blob) for blob in packed.values()) == 8 * len(events)

    restarted = Deduper(HORIZON)  # a new worker that read the buckets back from Redis
    for bucket, blob in packed.items():
        restarted.load(bucket, blob)
    assert len(restarted) == len(events)
    assert restarted.take_new() == {}  # loaded hashes are not new
    for event_id, t in events:
        assert restarted.add(event_id, t) is False
    assert restarted.add("\x00never-seen\x00", 0) is True


def test_load_appends_and_ignores_a_torn_tail() -> None:
    d = Deduper(HORIZON)
    d.add("a", 0)
    d.add("b", 0)
    first = d.take_new()[0]
    d.add("c", 0)
    second = d.take_new()[0]
    restarted = Deduper(HORIZON)
    # Redis APPENDs each flush's hashes to the bucket's string.
    restarted.load(0, first + second + b"\x01\x02\x03")
    assert len(restarted) == 3
    for event_id in ("a", "b", "c"):
        assert restarted.add(event_id, 0) is False
    restarted.load(0, first)  # loading again does not double anything
    assert len(restarted) == 3
    restarted.load(5, b"")
    assert len(restarted) == 3


@pytest.mark.parametrize(
    ("watermark", "expected"),
    [
        (0, range(0, 1)),
        (59_999, range(0, 1)),
        (300_000, range(0, 6)),
        (360_000, range(1, 7)),
        (359_999, range(0, 6)),
    ],
)
def test_live_buckets_examples(watermark: int, expected: range) -> None:
    assert Deduper(HORIZON).live_buckets(watermark) == expected


@SETTINGS
@given(st.integers(min_value=1, max_value=10**8), st.integers(min_value=0, max_value=2**45),
       st.data())
def test_live_buckets_cover_the_horizon(horizon: int, watermark: int, data: st.DataObject) -> None:
    d = Deduper(horizon)
    live = d.live_buckets(watermark)
    t = data.draw(st.integers(min_value=max(0, watermark - horizon), max_value=watermark))
    assert t // d.bucket_ms in live
    # Nothing beyond the watermark, and no more than the horizon needs (plus edges).
    assert live.stop - 1 == watermark // d.bucket_ms
    assert len(live) <= horizon // d.bucket_ms + 2
    # What a restarted worker loads is exactly what eviction would keep.
    for i, bucket in enumerate((live.start - 1, live.start, live.stop - 1)):
        if bucket >= 0:
            d.add(f"b{i}", bucket * d.bucket_ms)
    evicted = set(d.evict(watermark))
    assert live.start not in evicted
    assert live.stop - 1 not in evicted
    if live.start >= 1:
        assert live.start - 1 in evicted


def _crowded(count: int, level: int = 14) -> list[int]:
    """Distinct hashes that share both blocks (two different ones) in every table up to
    2**level blocks: equal low 32 bits, and bits 32-63 whose mix agrees in its low
    ``level`` bits. They fill their two blocks and overflow, or force moves. Both blocks
    are among the first 32, which the first step of each doubling splits, and the mix's
    address bits 10-13 are mixed, so a split moves some words of the second block."""
    highs = np.arange(1, 1 << 22, dtype=np.uint64)
    mixed = dedupe_table._mix(highs) & np.uint64((1 << level) - 1)
    low = mixed & np.uint64(0x3FF)
    upper = mixed >> np.uint64(10)
    target = mixed[(low > 0) & (low < 32) & ((upper == 5) | (upper == 10))][0]
    chosen = highs[mixed == target][:count]
    assert len(chosen) == count
    return [(int(high) << 32) | 0x1234_5003 for high in chosen]


CROWDED = _crowded(24)
# Small loads make a table double after a few dozen words, so the model tests below
# cross doublings and half-split tables (``MIN_LEVEL`` blocks hold 8,192 words).
LOADS = st.sampled_from([MAX_LOAD, 0.01, 0.002])


def _digest(n: int) -> int:
    """Ids below 24 crowd two blocks; the others are spread like real ids."""
    return CROWDED[n] if n < len(CROWDED) else event_hash(f"ev-{n}")


@SETTINGS
@given(st.lists(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 10 * 60_000)),
                         max_size=30), max_size=8),
       LOADS)
def test_add_batch_matches_a_plain_seen_set(records: list[list[tuple[int, int]]],
                                            load: float) -> None:
    """Batches (duplicates inside one batch, against earlier batches, across doublings,
    with blocks overflowing) say "new" exactly where a plain set of ids would, and
    persist the same hashes."""
    d = Deduper(60 * 60_000, max_load=load)  # horizon longer than the times
    seen: set[int] = set()
    persisted: list[int] = []
    for record in records:
        digests = [_digest(n) for n, _ in record]
        expected = []
        for digest in digests:
            expected.append(digest not in seen)
            seen.add(digest)
        assert d.add_batch(digests, [t for _, t in record]) == expected
        persisted += [h for packed in d.take_new().values()
                      for h in memoryview(packed).cast("Q")]
    assert sorted(persisted) == sorted(seen)
    assert len(d) == len(seen)
    assert _stored(d) == seen


@SETTINGS
@given(st.lists(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 90_000)),
                         max_size=25), max_size=12),
       LOADS)
def test_batches_across_buckets_with_eviction_match_a_plain_model(
        records: list[list[tuple[int, int]]], load: float) -> None:
    """With several live buckets, doublings and expiry (which clears the words of the
    buckets dropped), a batch says "new" exactly where a model of the horizon does:
    seen in a bucket not yet expired."""
    d = Deduper(60_000, max_load=load)  # buckets of 12 s
    model: dict[int, int] = {}  # digest -> its bucket
    clock = 0
    for record in records:
        times = [clock + offset for _, offset in record]
        digests = [_digest(n) for n, _ in record]
        expected = []
        for digest, time in zip(digests, times, strict=True):
            expected.append(digest not in model)
            model.setdefault(digest, time // d.bucket_ms)
        assert d.add_batch(digests, times) == expected
        clock += 30_000
        d.advance(clock)
        first_live = (clock - 60_000) // d.bucket_ms
        model = {digest: bucket for digest, bucket in model.items() if bucket >= first_live}
        assert len(d) == len(model)
        assert d._table.entries + len(d._overflow) == len(model)
        assert _stored(d) == set(model)


def _stored(d: Deduper) -> set[int]:
    """The hashes the table's words stand for, decoded from word and block, and the
    overflow's: quotienting loses nothing."""
    table = d._table
    stored = [table.hash_of(block, int(word))
              for block in range(table.blocks) for word in table.words[block] if word]
    assert len(stored) == len(set(stored))  # no hash twice
    return set(stored) | set(d._overflow)


@SETTINGS
@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=0, max_value=63))
def test_hashes_one_bit_apart_are_told_apart(digest: int, bit: int) -> None:
    """A word keeps all 64 bits of its hash: words of the top 56 bits took hashes that
    differ only in their low byte for duplicates (n / 2**56 false duplicates)."""
    other = digest ^ (1 << bit)
    d = Deduper(HORIZON)
    assert d.add_batch([digest], [0]) == [True]
    assert d.add_batch([other, digest], [0, 0]) == [True, False]
    single = Deduper(HORIZON)
    assert single.add_digest(digest, 0)
    assert single.add_digest(other, 0)
    assert not single.add_digest(other, 0)


def test_a_table_grown_from_the_smallest_finds_every_hash_and_no_stranger() -> None:
    """300,000 hashes through 6 doublings, in batches and one by one."""
    rng = random.Random(7)
    d = Deduper(60 * 60_000)
    members: list[int] = []
    for _ in range(12):
        batch = [rng.getrandbits(64) for _ in range(25_000)]
        assert all(d.add_batch(batch, [1_000] * len(batch)))
        members += batch
    table = d._table
    assert table.level == MIN_LEVEL + 6
    assert table.entries == len(members) == len(d)
    assert 0.42 <= table.entries / (table.blocks * SLOTS) <= MAX_LOAD
    assert not any(d.add_batch(members[::7], [1_000] * len(members[::7])))
    assert not any(d.add_digest(digest, 1_000) for digest in members[::997])
    strangers = [rng.getrandbits(64) for _ in range(50_000)]
    assert all(d.add_batch(strangers, [2_000] * len(strangers)))
    # Strangers one bit away from members (the low byte: what 56-bit words dropped).
    near = [digest ^ 1 for digest in members[::101]]
    assert all(d.add_batch(near, [2_000] * len(near)))


def test_hashes_with_both_blocks_full_are_kept_aside_found_and_expired(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A table that may not grow: 24 hashes with the same two blocks of 8 slots; 16
    words fit, the rest overflow."""
    monkeypatch.setattr(BlockTable, "grow", lambda self, wanted: None)
    d = Deduper(60_000)  # buckets of 12 s
    early, late = CROWDED[:12], CROWDED[12:]
    assert all(d.add_batch(early, [0] * 12))
    assert all(d.add_digest(digest, 30_000) for digest in late)
    assert d._table.entries == 16 and len(d._overflow) == 8
    assert not any(d.add_batch(early + late, [30_000] * 24))
    assert not any(d.add_digest(digest, 30_000) for digest in early + late)
    d.advance(72_000)  # bucket 0 (the early ones) ends at 12 s: expired
    assert len(d) == 12 == d._table.entries + len(d._overflow)
    assert all(d.add_batch(early, [72_000] * 12))  # forgotten: new again
    assert not any(d.add_batch(late, [72_000] * 12))


def test_a_full_pair_of_blocks_makes_room_by_moving_a_resident() -> None:
    """When both blocks of a hash are full, a resident whose other block has room moves
    there (its word re-keyed for that block, its code kept), and every hash is still
    found."""
    table = BlockTable()
    crowded = CROWDED[:9]
    (block_a, _), (block_b, _) = table.places_one(crowded[0])
    # Fill block A with hashes whose second block is elsewhere, block B with crowded ones.
    residents = []
    rng = random.Random(5)
    while len(residents) < SLOTS:
        digest = (rng.getrandbits(54) << 10) | block_a
        (first, key), (second, _) = table.places_one(digest)
        if first == block_a and second not in (block_a, block_b):
            table._put(block_a, key << 8 | 2)  # code 2: an older bucket
            residents.append(digest)
    for digest in crowded[:SLOTS]:
        assert table.insert_one(digest, 1)
    assert all(table.words[block_a]) and all(table.words[block_b])
    assert table.insert_one(crowded[SLOTS], 1)  # no free slot in A or B: a resident moved
    assert table.entries == 2 * SLOTS + 1
    assert all(table.find_one(digest) for digest in residents + crowded)
    in_a = {table.hash_of(block_a, int(word)) for word in table.words[block_a] if word}
    moved = [digest for digest in residents if digest not in in_a]
    assert len(moved) == 1
    (_, _), (second, _) = table.places_one(moved[0])
    codes = {table.hash_of(second, int(word)): int(word) & 0xFF
             for word in table.words[second] if word}
    assert codes[moved[0]] == 2  # it keeps its bucket's code


def test_a_batch_makes_room_by_moving_residents_without_going_one_by_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch insert's cuckoo step (``_displace_round``, for when many words are left
    after the rounds): a word whose two blocks are full takes a resident's slot, the
    resident moves to its other block with its code, and nothing goes through
    ``insert_one``."""
    table = BlockTable()
    crowded = CROWDED[:9]
    (block_a, _), (block_b, _) = table.places_one(crowded[0])
    residents = []
    rng = random.Random(5)
    while len(residents) < SLOTS:
        digest = (rng.getrandbits(54) << 10) | block_a
        (first, key), (second, _) = table.places_one(digest)
        if first == block_a and second not in (block_a, block_b):
            table._put(block_a, key << 8 | 2)
            residents.append(digest)
    for digest in crowded[:SLOTS]:
        assert table.insert_one(digest, 1)

    def refuse(self: BlockTable, digest: int, code: int) -> bool:
        raise AssertionError("went one by one")

    monkeypatch.setattr(BlockTable, "insert_one", refuse)
    hashes = np.array([crowded[SLOTS]], dtype=np.uint64)
    probe = table.probe(hashes)
    assert not len(table._displace_round(probe, np.array([3], dtype=np.uint64)))
    assert table.entries == 2 * SLOTS + 1
    stored = dict(zip(*(part.tolist() for part in table.contents()), strict=True))
    assert stored == {**dict.fromkeys(residents, 2), **dict.fromkeys(crowded[:SLOTS], 1),
                      crowded[SLOTS]: 3}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([0.9, 0.97, 0.995]),
       st.integers(100, 600))
def test_batches_into_a_nearly_full_table_keep_every_hash_and_code(
        seed: int, load: float, batch: int) -> None:
    """Batches into tables loaded until blocks fill (the rounds, the moves and the
    one-by-one rest all at work): every hash is stored once with its code, found by
    the batch probe and by ``find_one``, and no stranger is."""
    rng = random.Random(seed)
    table = BlockTable(MIN_LEVEL, load)
    expected: dict[int, int] = {}
    aside: dict[int, int] = {}
    while len(expected) < int(load * SLOTS * (1 << MIN_LEVEL)) - batch:
        digests = list({rng.getrandbits(64) for _ in range(batch)} - set(expected))
        code = rng.randrange(1, 256)
        hashes = np.array(digests, dtype=np.uint64)
        table.grow(table.entries + len(hashes))
        probe = table.probe(hashes)
        failed = table.insert(probe, np.full(len(hashes), code, dtype=np.uint64), hashes,
                              table.rows(probe.block1), table.rows(probe.block2))
        aside.update((digests[position], code) for position in failed)
        expected.update(dict.fromkeys(digests, code))
    hashes, codes = table.contents()
    assert table.entries == len(hashes) == len(expected) - len(aside)
    assert dict(zip(hashes.tolist(), codes.tolist(), strict=True)) == {
        digest: code for digest, code in expected.items() if digest not in aside}
    probed = np.array(list(expected), dtype=np.uint64)
    probe = table.probe(probed)
    held = (BlockTable.holds(table.rows(probe.block1), probe.key1)
            | BlockTable.holds(table.rows(probe.block2), probe.key2))
    assert held.tolist() == [digest not in aside for digest in expected]
    strangers = [rng.getrandbits(64) for _ in range(200)]
    assert not any(table.find_one(digest) for digest in strangers if digest not in expected)


def test_a_large_table_doubles_in_place() -> None:
    """From 2**14 blocks the table's array is reserved ahead: a doubling copies
    nothing, so it never holds an old and a new table at once."""
    table = BlockTable(level=12)
    assert len(table.words) == 2 << 12  # small tables are exact
    table.grow(int(MAX_LOAD * SLOTS * (1 << 12)) + 1)
    while table.split:
        table.grow(table.entries)
    assert table.level == 13
    reserved = table.words.__array_interface__["data"][0]
    assert len(table.words) > 2 << 13
    for _ in range(3):
        table.grow(int(MAX_LOAD * SLOTS * (1 << table.level)) + 1)
        while table.split:
            table.grow(table.entries)
    assert table.level == 16
    assert table.words.__array_interface__["data"][0] == reserved


def test_strict_overcommit_reserves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedupe_table, "_CAN_RESERVE", False)
    table = BlockTable(level=13)
    assert len(table.words) == 2 << 13
