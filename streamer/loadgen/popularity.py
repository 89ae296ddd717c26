"""Which tracks the uses pick: a Zipf law over the catalog plus bursts of trending tracks.

A small share of new tracks (``trend_prob``) bursts, rising over ``trend_rise_s`` to the
weight of a Zipf rank drawn log-uniformly between ``trend_rank_min`` and
``trend_rank_max``, then decaying with ``trend_half_life_s``.
"""

from __future__ import annotations

import heapq
import math
import random
from array import array
from bisect import bisect
from itertools import accumulate

from streamer.loadgen.config import LoadConfig


class Trending:
    """The trending set and its cumulative weights (refreshed once a simulated second)."""

    def __init__(self, cfg: LoadConfig, rng: random.Random) -> None:
        self.cfg = cfg
        self.rng = rng
        self.entries: list[tuple[int, int, float]] = []   # (index, start_ms, peak weight)
        self.indexes: list[int] = []
        self.cumulative: list[float] = []
        self.total = 0.0
        self.refreshed_at = -1

    def peak(self) -> float:
        cfg = self.cfg
        lo, hi = math.log(cfg.trend_rank_min), math.log(cfg.trend_rank_max)
        rank = math.exp(lo + self.rng.random() * (hi - lo))
        return float(rank ** -cfg.zipf)

    def start(self, index: int, started_ms: int) -> None:
        self.entries.append((index, started_ms, self.peak()))
        self.refreshed_at = -1

    def due(self, now: int) -> bool:
        return self.refreshed_at < 0 or now - self.refreshed_at >= 1000

    def refresh(self, now: int) -> None:
        cfg = self.cfg
        rise = cfg.trend_rise_s * 1000
        decay = math.log(2) / (cfg.trend_half_life_s * 1000)
        floor = (cfg.trend_rank_max * 4) ** -cfg.zipf
        keep, indexes, weights = [], [], []
        for entry in self.entries:
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
                indexes.append(index)
                weights.append(weight)
        self.entries = keep
        self.indexes = indexes
        self.cumulative = list(accumulate(weights))
        self.total = self.cumulative[-1] if weights else 0.0
        self.refreshed_at = now


class UsePicker:
    """Which track each use of a tick picks, and when: a Zipf law over the tracks in
    ``order`` (popularity ranks; new tracks join at the tail) or the trending set."""

    def __init__(self, cfg: LoadConfig, rng: random.Random) -> None:
        self.cfg = cfg
        self.rng = rng
        self.order = array("I")
        self.trending = Trending(cfg, rng)
        self._carry = 0.0

    def picks(self, t0: int, t1: int, rate: float,
              early: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
        """(track index, event time, flag) of this tick's uses: flag 0 base catalog,
        1 trending, 2 an early use (popped from the ``early`` heap, its time < t1)."""
        cfg = self.cfg
        rnd = self.rng.random
        span = t1 - t0
        trending = self.trending
        if trending.due(t0):
            trending.refresh(t0)
        n_base = len(self.order)
        base_mass = zipf_mass(n_base, cfg.zipf)
        trend_total = trending.total
        p_trend = trend_total / (trend_total + base_mass) if trend_total else 0.0
        trend_cum, trend_idx = trending.cumulative, trending.indexes
        s = cfg.zipf
        zipf_a = 1.0 - (n_base + 1) ** (1.0 - s) if s != 1.0 else 0.0
        zipf_inv = 1.0 / (1.0 - s) if s != 1.0 else 0.0
        order = self.order
        self._carry += rate * span / 1000
        count = int(self._carry)
        self._carry -= count
        picks: list[tuple[int, int, int]] = []
        while early and early[0][0] < t1:
            at, index = heapq.heappop(early)
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
        return picks


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
    return 1.0 + float((n + 0.5) ** (1.0 - s) - 1.5 ** (1.0 - s)) / (1.0 - s)
