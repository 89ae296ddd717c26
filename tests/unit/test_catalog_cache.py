"""The catalog cache is bounded by the memory its plans take, not by a count."""

from __future__ import annotations

import sys

from streamer.events.track_meta import TrackMeta
from streamer.pipeline.attribution import build_plan, plan_bytes
from streamer.state.catalog import SLOT_BYTES, CatalogCache


def plan(holders: int, title: str | None = None) -> tuple[object, ...]:
    master = tuple((f"lbl-{n}", 1_000_000 // holders) for n in range(holders))
    return build_plan(TrackMeta("pop", "human", master, (), title=title))


def cost(track_id: str, entry: tuple[object, ...]) -> int:
    """Computed here from the objects themselves: key, tuple, the plan's own title JSON."""
    own = [entry] + [item for item in entry if isinstance(item, bytes) and b"title" in item]
    return sys.getsizeof(track_id) + sum(sys.getsizeof(o) for o in own) + SLOT_BYTES


def test_plans_are_charged_their_own_memory() -> None:
    cache = CatalogCache(10**9, plan_bytes)
    small, large = plan(1), plan(6, title="x" * 300)
    cache.put("a", small)
    cache.put("b", large)
    assert cache.bytes == cost("a", small) + cost("b", large)
    assert cost("b", large) > cost("a", small) + 300
    cache.put("a", large)  # replaced: charged once, for the new plan
    assert cache.bytes == 2 * cost("a", large)


def test_the_oldest_written_go_first_until_a_quarter_is_free() -> None:
    entry = plan(2)
    each = cost("trk-000", entry)
    cache = CatalogCache(100 * each, plan_bytes)
    for n in range(100):
        cache.put(f"trk-{n:03d}", entry)
    assert len(cache) == 100
    cache.put("trk-000", entry)  # written again: now the newest
    cache.put("trk-100", entry)  # over the limit
    assert cache.bytes <= 75 * each
    assert len(cache) == 75
    assert "trk-000" in cache and "trk-100" in cache
    assert "trk-001" not in cache and "trk-026" not in cache and "trk-027" in cache
    assert cache.bytes == sum(cost(t, entry) for t in [f"trk-{n:03d}" for n in range(27, 101)]
                              + ["trk-000"])


def test_a_plan_larger_than_the_cache_is_still_kept_alone() -> None:
    cache = CatalogCache(10, plan_bytes)
    cache.put("a", plan(1))
    cache.put("b", plan(3))
    assert len(cache) == 1 and cache.get("b") == plan(3) and cache.get("a") is None


def test_more_tracks_fit_when_plans_are_smaller() -> None:
    budget = 200_000
    small, large = CatalogCache(budget, plan_bytes), CatalogCache(budget, plan_bytes)
    for n in range(5_000):
        small.put(f"trk-{n}", plan(1))
        large.put(f"trk-{n}", plan(8, title=f"title {n}" * 10))
    assert small.bytes <= budget and large.bytes <= budget
    assert len(small) > 2 * len(large)
