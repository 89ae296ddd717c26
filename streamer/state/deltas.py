"""Counter increments collected in memory between two flushes of a partition."""

from __future__ import annotations

from collections import defaultdict

from streamer.state.keys import (
    ATTRIBUTIONS,
    GENRE_COUNTS,
    GENRE_TRENDING,
    HOLDER_COUNTS,
    TERRITORY_GENRE_COUNTS,
    TERRITORY_HOLDER_COUNTS,
    TERRITORY_TRACK_COUNTS,
    TRACK_COUNTS,
)

# Kinds of counter hashes, as used in key names.
TRACKS = TRACK_COUNTS
HOLDERS = HOLDER_COUNTS
GENRES = GENRE_COUNTS
TERRITORY_TRACKS = TERRITORY_TRACK_COUNTS
TERRITORY_HOLDERS = TERRITORY_HOLDER_COUNTS
TERRITORY_GENRES = TERRITORY_GENRE_COUNTS
# Per UTC day start (window "1d"): ``<track>|<country>|<use>|<version>`` -> uses.
LEDGER_ATTRIBUTIONS = ATTRIBUTIONS
# Trending per genre, fields ``<genre>|<track_id>`` (keys.genre_trending_field) -> creates.
GENRE_RANKS = GENRE_TRENDING


class CounterDeltas:
    """Increments per Redis hash (and trending sorted set), merged before they are written.

    Trending per genre travels as a hash of kind ``GENRE_RANKS`` (fields
    ``<genre>|<track_id>``); the flush writes it to one sorted set per genre."""

    __slots__ = ("entries", "hashes", "trending")

    def __init__(self) -> None:
        self.hashes: defaultdict[tuple[str, str, int], defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.trending: defaultdict[tuple[str, int], defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        # Per UTC day start: ``<track>|<version>`` -> catalog entry JSON (set, not added).
        self.entries: defaultdict[int, dict[str, str]] = defaultdict(dict)

    def hash(self, kind: str, window: str, start: int) -> defaultdict[str, int]:
        return self.hashes[(kind, window, start)]

    def __bool__(self) -> bool:
        return bool(self.hashes or self.trending or self.entries)

    def merge(self, other: CounterDeltas) -> None:
        for key, fields in other.hashes.items():
            target = self.hashes[key]
            for name, value in fields.items():
                target[name] += value
        for window, members in other.trending.items():
            ranked = self.trending[window]
            for name, value in members.items():
                ranked[name] += value
        for day, entries in other.entries.items():
            self.entries[day].update(entries)
