"""PartitionState's transitions, one by one (pure unit test: a fake store for the claim).

The processor and flusher tests drive them through records and flushes; these pin
what each transition promises on its own: what it swaps out, what it leaves, and
what marks a pending track for rewriting in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from streamer.state.dedupe import event_hash
from streamer.state.deltas import CounterDeltas
from streamer.state.keys import TRACKS_CODE, USES_CODE
from streamer.state.partition import PartitionState, Rejection

HORIZON = 300_000
T0 = 1_700_000_000_000


def _state() -> PartitionState:
    return PartitionState(partition=4, owner="w:1", seq=7, dedupe_horizon_ms=HORIZON)


def test_an_offset_is_taken_once_and_only_forward() -> None:
    state = _state()
    assert state.take_offset(USES_CODE, 5)
    assert state.next_offset == {USES_CODE: 6, TRACKS_CODE: 0}
    assert not state.take_offset(USES_CODE, 5)  # counted before
    assert not state.take_offset(USES_CODE, 3)
    assert state.next_offset[USES_CODE] == 6
    assert state.take_offset(TRACKS_CODE, 0)
    assert state.next_offset == {USES_CODE: 6, TRACKS_CODE: 1}


def test_counting_adds_cells_bases_events_and_moves_the_watermark_forward_only() -> None:
    state = _state()
    state.count_uses([("trk", "play", T0, "DE"), ("trk", "play", T0, "DE"),
                      ("trk", "create", T0, "FR")], (T0,), ("DE", "FR"), T0 + 10)
    state.count_use(("trk", "play", T0 - 60_000, "DE"), T0 - 59_000)  # older: watermark stays
    assert state.cells == {("trk", "play", T0, "DE"): 2, ("trk", "create", T0, "FR"): 1,
                           ("trk", "play", T0 - 60_000, "DE"): 1}
    assert state.bases == {T0, T0 - 60_000}
    assert state.countries == {"DE", "FR"}
    assert state.unflushed_events == 4
    assert state.watermark[USES_CODE] == T0 + 10
    state.advance_watermark(TRACKS_CODE, T0)
    state.advance_watermark(TRACKS_CODE, T0 - 1)
    assert state.watermark[TRACKS_CODE] == T0


def test_a_tracks_cells_are_taken_out_of_every_base_window() -> None:
    state = _state()
    state.count_uses([("a", "play", T0, "DE"), ("b", "play", T0, "DE"),
                      ("a", "create", T0 + 60_000, "US"), ("a", "play", T0, "US")],
                     (T0, T0 + 60_000), ("DE", "US"), T0 + 60_000)
    assert state.take_cells_of("a") == {("a", "play", T0, "DE"): 1,
                                        ("a", "create", T0 + 60_000, "US"): 1,
                                        ("a", "play", T0, "US"): 1}
    assert state.cells == {("b", "play", T0, "DE"): 1}
    assert state.take_cells_of("a") == {}


def test_pending_uses_resolve_or_expire_and_mark_their_track_for_redis() -> None:
    state = _state()
    state.add_pending("a", "play", T0, "DE", 2)
    state.add_pending("a", "play", T0, "DE", 1)
    state.add_pending("a", "create", T0 + HORIZON, "DE", 1)
    state.add_pending("b", "play", T0, "US", 5)
    assert state.take_pending_changes() == {
        "a": {("play", T0, "DE"): 3, ("create", T0 + HORIZON, "DE"): 1},
        "b": {("play", T0, "US"): 5}}
    assert state.take_pending_changes() == {}  # written: nothing changed since

    assert state.expire_pending("a", T0) == [("play", T0, "DE", 3)]
    assert state.pending == {"a": {("create", T0 + HORIZON, "DE"): 1},
                             "b": {("play", T0, "US"): 5}}
    assert state.expire_pending("a", T0) == []  # nothing more expired: not rewritten
    assert state.resolve_pending("b") == {("play", T0, "US"): 5}
    assert state.take_pending_changes() == {"a": {("create", T0 + HORIZON, "DE"): 1},
                                            "b": None}
    assert state.expire_pending("a", T0 + HORIZON) == [("create", T0 + HORIZON, "DE", 1)]
    assert state.pending == {}
    assert state.take_pending("a") is None
    assert state.take_pending_changes() == {"a": None}


def test_a_flush_takes_the_counts_first_and_closes_the_interval_last() -> None:
    state = _state()
    state.take_offset(USES_CODE, 0)
    state.count_uses([("trk", "play", T0, "DE")], (T0,), ("DE",), T0)
    sealed = CounterDeltas()
    sealed.hash("t", "1m", T0)["play|x"] += 2
    state.seal(sealed)
    state.reject(Rejection("sounds.used", 4, 0, b"{}", "bad", "bad"))
    [rejection] = state.take_rejections()
    state.sent_to_dlq(rejection)

    taken = state.take_counts()
    assert taken.cells == {("trk", "play", T0, "DE"): 1}
    assert dict(taken.sealed.hashes[("t", "1m", T0)]) == {"play|x": 2}
    assert state.cells == {} and state.bases == set() and not state.sealed
    state.count_use(("trk", "play", T0, "DE"), T0)  # the agent counts on meanwhile

    closed = state.close_interval(writes_anything=True)
    assert closed is not None
    assert closed.offsets == {USES_CODE: 1, TRACKS_CODE: 0}
    assert closed.watermarks == {USES_CODE: T0, TRACKS_CODE: 0}
    assert closed.dlq_pending == [rejection] and closed.events == 2
    assert state.dlq_pending == [] and state.unflushed_events == 0
    assert state.cells == {("trk", "play", T0, "DE"): 1}  # counted after the snapshot: kept
    assert state.seq == 7
    state.confirm_flush()
    assert state.seq == 8


def test_an_interval_with_nothing_new_closes_to_none_and_keeps_what_it_holds() -> None:
    state = _state()
    assert state.close_interval(writes_anything=False) is not None  # offsets never flushed
    assert state.close_interval(writes_anything=False) is None
    state.write_catalog("trk", object())  # type: ignore[arg-type]  # any metadata object
    state.sent_to_dlq("pending")
    # Without a new offset these came from no record; an empty flush must not drop them.
    assert state.close_interval(writes_anything=False) is None
    assert state.catalog_writes and state.dlq_pending == ["pending"]
    assert state.close_interval(writes_anything=True) is not None  # e.g. pending expired


@dataclass
class Claimed:
    seq: int
    offsets: dict[str, int]
    watermarks: dict[str, int]
    closed_before: int = 0


class FakeStore:
    def __init__(self, hashes: list[int]) -> None:
        self.packed = b"".join(h.to_bytes(8, "little") for h in hashes)
        self.claims: list[tuple[int, str]] = []
        self.dedupe_reads: list[tuple[str, range]] = []

    async def claim(self, partition: int, owner: str) -> Claimed:
        self.claims.append((partition, owner))
        return Claimed(3, {USES_CODE: 40}, {USES_CODE: T0, TRACKS_CODE: T0 - 5})

    async def load_pending(self, partition: int) -> dict[bytes, bytes]:
        return {b"trk": orjson.dumps([["play", T0, 2]])}

    async def load_dedupe(self, partition: int, code: str, buckets: range) -> dict[int, bytes]:
        self.dedupe_reads.append((code, buckets))
        return {buckets[-1]: self.packed} if code == USES_CODE else {}


async def test_load_restores_a_claimed_partition_as_redis_holds_it() -> None:
    seen = event_hash("ev-1")
    store = FakeStore([seen])
    state = await PartitionState.load(store, 4, "w:2", HORIZON)  # type: ignore[arg-type]
    assert store.claims == [(4, "w:2")]
    assert (state.partition, state.owner, state.seq) == (4, "w:2", 3)
    assert state.next_offset == {USES_CODE: 40, TRACKS_CODE: 0}
    assert state.watermark == {USES_CODE: T0, TRACKS_CODE: T0 - 5}
    # Pending uses persisted before cells had a country load as "ZZ" (unknown).
    assert state.pending == {"trk": {("play", T0, "ZZ"): 2}}
    assert not state.dedupe[USES_CODE].add_digest(seen, T0)  # a duplicate after the claim
    assert state.dedupe[USES_CODE].add_digest(event_hash("ev-2"), T0)
    assert [code for code, _ in store.dedupe_reads] == [USES_CODE, TRACKS_CODE]
    assert state.close_interval(writes_anything=False) is None  # as flushed: nothing new


DAY_MS = 86_400_000
LATENESS = 3_600_000


def test_a_day_closes_when_both_clocks_are_past_its_end_plus_the_lateness() -> None:
    state = _state()
    day = T0 - T0 % DAY_MS
    state.note_uses_caught_up(False)
    state.note_tracks_caught_up(False)
    state.advance_watermark(USES_CODE, day + DAY_MS + LATENESS + 1)
    state.advance_watermark(TRACKS_CODE, day + DAY_MS + LATENESS - 1)
    # The tracks topic lags: its watermark holds the day open, whatever the wall clock.
    assert state.closable_before(LATENESS, day + 10 * DAY_MS) == day
    state.advance_watermark(TRACKS_CODE, day + DAY_MS + LATENESS)
    assert state.closable_before(LATENESS, 0) == day + DAY_MS
    # A use of the day still waiting for its TrackCreated holds it open.
    state.add_pending("trk", "play", day + 5_000, "DE", 1)
    assert state.closable_before(LATENESS, 0) == day
    state.resolve_pending("trk")
    state.seal_days_before(day + DAY_MS)
    assert state.closed_before == day + DAY_MS
    state.seal_days_before(day)  # never moves back
    assert state.closed_before == day + DAY_MS


def test_an_idle_partition_closes_by_the_wall_clock_and_never_early() -> None:
    state = _state()
    day = T0 - T0 % DAY_MS
    state.advance_watermark(USES_CODE, day + 1_000)
    state.note_uses_caught_up(True)
    state.note_tracks_caught_up(True)
    assert state.closable_before(LATENESS, day + DAY_MS + LATENESS - 1) < day + DAY_MS
    assert state.closable_before(LATENESS, day + DAY_MS + LATENESS) == day + DAY_MS
    state.note_uses_caught_up(False)  # lag again: its own watermark counts
    assert state.closable_before(LATENESS, day + DAY_MS + LATENESS) < day + DAY_MS
