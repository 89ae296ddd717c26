"""Synthetic closed days for the ledger tests, with their ground truth computed event by
event in plain Python (independently of the ledger's DuckDB derivations)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

from streamer.ledger import CatalogEntry, DayPartition
from streamer.ledger.model import UNATTRIBUTED

MICRO = 1_000_000
COUNTRIES = ("US", "DE", "GB", "FR", "BR", "JP", "IN", "MX", "SE", "NG", "IS", "LU")
COUNTRY_WEIGHTS = (30, 12, 10, 8, 7, 6, 5, 4, 2, 1, 0.5, 0.5)
GENRES = ("pop", "rock", "hip-hop", "ambient")
ORIGINS = ("human", "ai_assisted", "ai_generated")
HOLDERS = ("label-a", "label-b", "pub-x", "pub-y", "pub-z", "indie")


def random_entry(rng: random.Random, track_id: str) -> CatalogEntry:
    def shares() -> tuple[tuple[str, int], ...]:
        holders = rng.sample(HOLDERS, rng.randint(0, 3))
        left = MICRO
        out = []
        for holder in holders:
            if left <= 1:
                break
            micro = rng.randint(1, left if rng.random() < 0.3 else max(1, left // 2))
            out.append((holder, micro))
            left -= micro
        return tuple(out)
    return CatalogEntry(track_id, rng.choice(GENRES), rng.choice(ORIGINS), shares(), shares(),
                        artist=rng.choice([None, "Artist"]), label=rng.choice([None, "Label"]))


@dataclass
class Event:
    track_id: str
    country: str
    use: str
    entry: CatalogEntry | None  # None: never got metadata (unattributed)


@dataclass
class Day:
    day: date
    partition: int
    events: list[Event] = field(default_factory=list)

    def closed(self) -> DayPartition:
        attributions: Counter[tuple[str, str, str, str]] = Counter()
        entries = []
        for event in self.events:
            version = event.entry.version if event.entry else UNATTRIBUTED
            attributions[(event.track_id, event.country, event.use, version)] += 1
            if event.entry:
                entries.append(event.entry)
        return DayPartition.from_mappings(self.day, self.partition, attributions, entries)

    # Ground truth, one event at a time.
    def tracks(self) -> Counter[tuple[str, str, str]]:
        return Counter((e.track_id, e.country, e.use) for e in self.events)

    def holders(self) -> dict[tuple[str, str, str, str], list[int]]:
        truth: dict[tuple[str, str, str, str], list[int]] = {}
        for e in self.events:
            for right in ("master", "publishing"):
                if e.entry is None:
                    allocation: tuple[tuple[str, int], ...] = (("_unattributed", MICRO),)
                else:
                    shares = e.entry.master if right == "master" else e.entry.publishing
                    rest = MICRO - sum(m for _, m in shares)
                    allocation = shares + ((("_unclaimed", rest),) if rest else ())
                for holder, micro in allocation:
                    cell = truth.setdefault((holder, right, e.use, e.country), [0, 0])
                    cell[0] += 1
                    cell[1] += micro
        return truth

    def genres(self) -> Counter[tuple[str, str, str, str]]:
        return Counter((e.entry.genre or "", e.entry.ai_origin or "", e.use, e.country)
                       for e in self.events if e.entry is not None)


def make_days(seed: int, first: date, days: int, partitions: int, events_per_day: int,
              tracks: int = 40) -> dict[tuple[date, int], Day]:
    """Days of events over a few tracks (Zipf-like popularity, skewed countries); a track's
    metadata can change mid-day (a second catalog version); some tracks never get any."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(tracks)]
    versions: dict[str, list[CatalogEntry | None]] = {}
    for index in range(tracks):
        track_id = f"trk-{index:03d}"
        versions[track_id] = ([None] if index % 9 == 4 else
                              [random_entry(rng, track_id) for _ in range(rng.choice((1, 1, 2)))])
    out = {}
    for offset in range(days):
        day = first + timedelta(days=offset)
        for partition in range(partitions):
            closed = Day(day, partition)
            ids = [t for i, t in enumerate(versions) if i % partitions == partition]
            chosen = rng.choices(ids, weights=[weights[int(t[4:])] for t in ids],
                                 k=rng.randint(0, events_per_day) if offset % 4 == 3
                                 else events_per_day)
            for track_id in chosen:
                closed.events.append(Event(
                    track_id, rng.choices(COUNTRIES, weights=COUNTRY_WEIGHTS)[0],
                    "create" if rng.random() < 0.15 else "play",
                    rng.choice(versions[track_id])))
            out[(day, partition)] = closed
    return out
