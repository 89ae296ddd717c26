"""What each peer should have written to Redis, from the generator's ground truth.

Peers count one-minute windows per (track, use) or per track (``benchmarks/peers/common``
gives the layout). They validate like the worker, but differ from it in documented
ways, and their expected counts allow for exactly those:

* no dedupe: every duplicate the generator sent is counted again, in its original's cell;
* no lateness rule (``lateness="none"``): every late use is counted;
* Quix's windows (``lateness="window"``): a late use is counted or not depending on
  whether its window is still open by Quix's own rule, so each cell may hold anything
  from the in-time count to the in-time count plus its late uses; and with final
  windows the end-of-run markers' own window never closes (nothing comes after them),
  so that window is not compared.

So a peer's cell must lie in ``[low, high]``; for every peer but the windowed Quix app
``low == high``. Counts below ``low`` are lost, above ``high`` double.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from streamer.verify.truth import PartitionedTruth

WINDOW = ("1m", 60_000)
Cell = tuple[int, str]


@dataclass(frozen=True, slots=True)
class PeerRules:
    """What a peer computes, as far as reconciling it goes."""

    per_use: bool = True         # fields are track|use (else track)
    lateness: str = "none"       # "none": counts late uses; "window": Quix's window rule


@dataclass(slots=True)
class PeerTruth:
    """In-time counts, duplicates and late uses of one topic, per cell (computed once)."""

    counted: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    duplicates: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    late: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    marker_window: int | None = None     # start of the end-of-run markers' window

    @classmethod
    def of(cls, truth: PartitionedTruth, marker_at: int | None = None) -> PeerTruth:
        name, size = WINDOW
        out = cls()
        if marker_at is not None:
            out.marker_window = marker_at - marker_at % size
        for part in truth.parts.values():
            for key, value in part.expected().items():
                if key[0] == "track" and key[1] == name:
                    out.counted[(key[2], key[3], key[4])] += value
            for (track, use, at), n in part.duplicates.items():
                out.duplicates[(at - at % size, track, use)] += n
            for track, use, at, _watermark in part.late:
                out.late[(at - at % size, track, use)] += 1
        return out

    def bounds(self, rules: PeerRules) -> tuple[Counter[Cell], Counter[Cell]]:
        low: Counter[Cell] = Counter()
        high: Counter[Cell] = Counter()

        def field_of(track: str, use: str) -> str:
            return f"{track}|{use}" if rules.per_use else track

        for source, to_low in ((self.counted, True), (self.duplicates, True),
                               (self.late, rules.lateness == "none")):
            for (start, track, use), n in source.items():
                cell = (start, field_of(track, use))
                high[cell] += n
                if to_low:
                    low[cell] += n
        return low, high


def reconcile_peer(truth: PeerTruth, rules: PeerRules,
                   actual: dict[Cell, int]) -> dict[str, Any]:
    low, high = truth.bounds(rules)
    if rules.lateness == "window" and truth.marker_window is not None:
        for counts in (low, high):
            for cell in [c for c in counts if c[0] == truth.marker_window]:
                del counts[cell]
        actual = {c: n for c, n in actual.items() if c[0] != truth.marker_window}
    lost = double = mismatched = 0
    examples: list[list[Any]] = []
    for cell in low.keys() | high.keys() | actual.keys():
        got = actual.get(cell, 0)
        if got < low[cell]:
            lost += low[cell] - got
        elif got > high[cell]:
            double += got - high[cell]
        else:
            continue
        mismatched += 1
        if len(examples) < 10:
            examples.append([list(cell), low[cell], high[cell], got])
    total_low, total_high = sum(low.values()), sum(high.values())
    counted = sum(actual.values())
    return {"ok": not (lost or double), "lost": lost, "double": double,
            "mismatched_counters": mismatched, "events_expected_min": total_low,
            "events_expected_max": total_high, "events_counted": counted,
            "late_counted": counted - total_low if rules.lateness == "window" else None,
            "first_mismatches": examples}


async def read_peer_counts(redis_url: str, prefix: str) -> dict[Cell, int]:
    client = Redis.from_url(redis_url, decode_responses=True)
    out: dict[Cell, int] = {}
    try:
        async for key in client.scan_iter(match=f"{prefix}:pc:*", count=1000):
            start = int(str(key).rsplit(":", 1)[1])
            fields = cast(dict[str, str], await client.hgetall(key))  # decoded replies
            for name, value in fields.items():
                out[(start, name)] = int(value)
    finally:
        await client.aclose()
    return out
