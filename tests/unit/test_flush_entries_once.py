"""A day's catalog entries are written by the first confirmed flush of a partition's state
that attributes them, not by every flush: the same field with the same value changes
nothing in Redis, and a popular track's day rewrote ~200 bytes per flush (27.5 of 187 AOF
bytes per event, docs/BENCHMARKS.md). A new state (a claim) and a refused flush write them
again; the key's TTL is renewed by every flush that attributes the day."""

from __future__ import annotations

import asyncio

import pytest

from streamer.config import Settings
from streamer.events.validation import TrackMeta
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_for, plan_version
from streamer.pipeline.flusher import Flusher
from streamer.state.catalog import CatalogCache
from streamer.state.keys import KeyLayout
from streamer.state.partition import PartitionState
from streamer.state.store import FlushPayload, FlushRefused

DAY = 86_400_000
T0 = 1_715_904_000_000  # 2024-05-17 00:00 UTC
LAYOUT = KeyLayout("t")
ENTRIES_KEY = LAYOUT.attribution_entries(0, T0)


class RecordingStore:
    """The flusher's store: records each flush's payload; refuses when told to."""

    layout = LAYOUT

    def __init__(self) -> None:
        self.payloads: list[FlushPayload] = []
        self.refuse = False

    async def get_catalog(self, track_ids: list[str]) -> dict[str, TrackMeta]:
        return {}

    async def put_catalog(self, entries: dict[str, bytes], ttl_ms: int) -> None:
        return None

    async def flush(self, partition: int, owner: str, seq: int, payload: FlushPayload) -> bool:
        self.payloads.append(payload)
        if self.refuse:
            raise FlushRefused("told to")
        return True


def entries_written(payload: FlushPayload) -> dict[str, str] | None:
    """The entries HSET to the day's entries key (None: the key is not in the payload)."""
    for index, values, *ttl in payload.pending:
        if payload.keys[index - 2] == ENTRIES_KEY:
            assert ttl, "the entries key's TTL is renewed"
            return values
    return None


def test_a_days_entries_are_written_once_per_state_and_again_after_a_claim_or_refusal(
) -> None:
    meta = TrackMeta("lofi", "human", master=(("a", 600_000),), publishing=())
    other = TrackMeta("ambient", "human", master=(), publishing=(("p", 1_000_000),))
    cache = CatalogCache(10**6)
    cache.put("trk", plan_for(meta))
    cache.put("new", plan_for(other))
    store = RecordingStore()
    flusher = Flusher(Settings(), store, cache, Metrics())  # type: ignore[arg-type]
    field = f"trk|{plan_version(plan_for(meta))[0]}"
    new_field = f"new|{plan_version(plan_for(other))[0]}"
    offset = 0

    def flush(state: PartitionState, *tracks: str) -> dict[str, str] | None:
        nonlocal offset
        for track in tracks:
            state.take_offset("u", offset)
            offset += 1
            state.count_use((track, "play", T0 + 60_000, "DE"), T0 + 60_000)
        asyncio.run(flusher.flush(state))
        return entries_written(store.payloads[-1])

    state = PartitionState(0, "o", 0, 300_000)
    assert set(flush(state, "trk") or {}) == {field}
    assert flush(state, "trk") == {}  # written: left out, TTL renewed
    assert set(flush(state, "trk", "new") or {}) == {new_field}
    assert flush(state, "new", "trk") == {}
    claimed = PartitionState(0, "o2", state.seq, 300_000)  # another claim: writes again
    assert set(flush(claimed, "trk") or {}) == {field}
    refused = PartitionState(0, "o3", claimed.seq, 300_000)
    store.refuse = True
    with pytest.raises(FlushRefused):
        flush(refused, "trk")
    store.refuse = False
    assert set(entries_written(store.payloads[-1]) or {}) == {field}
    # Not applied, so not remembered: the next flush writes it again.
    assert set(flush(refused, "trk") or {}) == {field}
    assert flush(refused, "trk") == {}
