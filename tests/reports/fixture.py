"""A small month of usage, closed into a real ledger, with its ground truth kept event by
event in plain Python (independently of the ledger's and the reports' queries)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from streamer.ledger import CatalogEntry, DayPartition, LedgerLocation, LedgerWriter
from streamer.ledger.model import UNATTRIBUTED

MICRO = 1_000_000
COUNTRIES = ("US", "DE", "GB", "FR", "BR", "IS")
COUNTRY_WEIGHTS = (30, 12, 10, 8, 7, 1)
ORIGINS = ("human", "ai_assisted", "ai_generated")
HOLDERS = ("label-a", "label-b", "pub-x", "pub-y", "indie", "mystery\tholder")
TRICKY_TITLE = "Tab\there | pipe \\ backslash"


@dataclass(frozen=True)
class Event:
    day: date
    partition: int
    track_id: str
    country: str
    use: str
    entry: CatalogEntry | None


@dataclass
class Month:
    first: date
    days: int
    partitions: int
    events: list[Event] = field(default_factory=list)

    def allocation(self, entry: CatalogEntry | None, right: str) -> list[tuple[str, int]]:
        if entry is None:
            return [("_unattributed", MICRO)]
        shares = list(entry.master if right == "master" else entry.publishing)
        rest = MICRO - sum(m for _, m in shares)
        return shares + ([("_unclaimed", rest)] if rest else [])

    def holder_lines(self) -> dict[tuple[str, str, str, str, str, str], list[int]]:
        """(holder, track, country, use, right, version) -> [uses, weighted_micro]."""
        truth: dict[tuple[str, str, str, str, str, str], list[int]] = {}
        for e in self.events:
            version = e.entry.version if e.entry else UNATTRIBUTED
            for right in ("master", "publishing"):
                for holder, micro in self.allocation(e.entry, right):
                    cell = truth.setdefault((holder, e.track_id, e.country, e.use, right,
                                             version), [0, 0])
                    cell[0] += 1
                    cell[1] += micro
        return truth

    def track_uses(self) -> Counter[tuple[str, str, str]]:
        return Counter((e.track_id, e.country, e.use) for e in self.events)

    def close_into(self, location: LedgerLocation, through: date | None = None,
                   skip: set[tuple[date, int]] | None = None) -> None:
        writer = LedgerWriter(location, {"test": True}, code_version="test")
        for offset in range(self.days):
            day = self.first + timedelta(days=offset)
            if through is not None and day > through:
                break
            for partition in range(self.partitions):
                if skip and (day, partition) in skip:
                    continue
                attributions: Counter[tuple[str, str, str, str]] = Counter()
                entries = []
                for e in self.events:
                    if e.day == day and e.partition == partition:
                        version = e.entry.version if e.entry else UNATTRIBUTED
                        attributions[(e.track_id, e.country, e.use, version)] += 1
                        if e.entry:
                            entries.append(e.entry)
                writer.close(DayPartition.from_mappings(day, partition, attributions, entries))


def random_entry(rng: random.Random, track_id: str) -> CatalogEntry:
    def shares() -> tuple[tuple[str, int], ...]:
        out = []
        left = MICRO
        for holder in rng.sample(HOLDERS, rng.randint(0, 3)):
            if left <= 1:
                break
            micro = rng.choice([left, left // 2, left // 3, rng.randint(1, left)])
            micro = max(1, min(micro, left))
            out.append((holder, micro))
            left -= micro
        return tuple(out)
    # Title and ISRC from the track's number (the rng draws stay as they were): some
    # tracks have none, one a title that needs escaping in a DSR.
    number = int(track_id[4:])
    title = (None if number % 5 == 0 else TRICKY_TITLE if number % 5 == 1
             else f"Song {number}")
    return CatalogEntry(track_id, "pop", rng.choice(ORIGINS), shares(), shares(),
                        artist=rng.choice([None, "Artist | One", "Back\\slash"]),
                        label=rng.choice([None, "Label"]), title=title,
                        isrc=None if number % 3 == 0 else f"QZABC26{number:05d}")


def make_month(seed: int, first: date = date(2026, 11, 1), days: int = 30,
               partitions: int = 2, events_per_day: int = 60, tracks: int = 24) -> Month:
    rng = random.Random(seed)
    versions: dict[str, list[CatalogEntry | None]] = {}
    for index in range(tracks):
        track_id = f"trk-{index:03d}"
        versions[track_id] = ([None] if index % 7 == 3 else
                              [random_entry(rng, track_id) for _ in range(rng.choice((1, 1, 2)))])
        if len(versions[track_id]) == 2 and index % 2:  # renamed in the second version
            second = versions[track_id][1]
            assert second is not None
            renamed = f"{second.title or track_id} (remix)"
            versions[track_id][1] = replace(second, title=renamed)
    ids = list(versions)
    weights = [1 / (rank + 1) for rank in range(tracks)]
    month = Month(first, days, partitions)
    for offset in range(days):
        day = first + timedelta(days=offset)
        for track_id in rng.choices(ids, weights=weights, k=events_per_day):
            partition = int(track_id[4:]) % partitions
            # A second catalog version takes over from the middle of the month.
            options = versions[track_id]
            entry = options[0] if offset < days // 2 or len(options) == 1 else options[1]
            month.events.append(Event(day, partition, track_id,
                                      rng.choices(COUNTRIES, weights=COUNTRY_WEIGHTS)[0],
                                      "create" if rng.random() < 0.2 else "play", entry))
    return month
