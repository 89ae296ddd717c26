"""Date ranges and territories on the usage routes: one answer over many UTC days, read
from the ledger where a day is complete there and from Redis' ``1d`` counters otherwise.

Each (day, partition) is summed from exactly one source: the ledger once that
partition closed the day (Redis drops its territory counters a grace later, even while
other partitions have not closed the day), Redis otherwise; so a range's answer is the
sum of its days' answers whoever serves each day. Redis days are read in one pipeline over every
(day, partition) key. Per-territory counters are hashes whose fields start with the
use (or right) and country, not the key, so a territory read scans the day's hash with
``HSCAN MATCH`` (Redis filters, only the key's fields travel) and checks each field
exactly here; Redis keeps them only for the few days not yet in the ledger plus a grace.
With ``by=territory`` the totals are the sums of the territories of the same read, so
they equal the sum over territories exactly.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from streamer.api.queries import WindowRef
from streamer.events.validation import AI_ORIGINS, RIGHTS, USES
from streamer.ledger.reader import (
    DAY_MS,
    LedgerReader,
    RangeAnswer,
    check_range,
    day_start_ms,
    days_between,
)
from streamer.state.keys import (
    HOLDER_MEASURES,
    USES_MEASURE,
    KeyLayout,
    genre_field,
    holder_field,
    track_field,
)
from streamer.state.store import Redis

Kind = Literal["track", "holder", "genre"]
KEY_NAMES: dict[Kind, str] = {"track": "track_id", "holder": "holder_id", "genre": "genre"}
COUNTS_NAMES: dict[Kind, str] = {"track": "uses", "holder": "rights", "genre": "uses_by_origin"}
RANGE_WINDOW = "1d"
Shard = tuple[WindowRef, int]
"""A window's counters in one input partition."""
_SCAN_COUNT = 5_000
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


@dataclass(frozen=True, slots=True)
class DayRange:
    first: date
    last: date

    def __post_init__(self) -> None:
        check_range(self.first, self.last)

    def days(self) -> list[date]:
        return list(days_between(self.first, self.last))


def zero_counts(kind: Kind) -> dict[str, Any]:
    """The body's counts of ``kind``, all zero: the shape of one territory too."""
    if kind == "track":
        return dict.fromkeys(USES, 0)
    if kind == "holder":
        return {right: {"uses": dict.fromkeys(USES, 0), "weighted_micro": dict.fromkeys(USES, 0)}
                for right in RIGHTS}
    return {origin: dict.fromkeys(USES, 0) for origin in AI_ORIGINS}


def add_into(total: dict[str, Any], part: dict[str, Any]) -> None:
    """``total += part`` over nested dicts of ints (same shapes)."""
    for name, value in part.items():
        if isinstance(value, dict):
            add_into(total[name], value)
        else:
            total[name] += value


def _day_window(day: date) -> WindowRef:
    start = day_start_ms(day)
    return WindowRef(RANGE_WINDOW, start, start + DAY_MS)


class RangeQueries:
    """Ranges and territories; ``reader`` None serves every day from Redis."""

    def __init__(self, client: Redis, layout: KeyLayout, partitions: int,
                 reader: LedgerReader | None) -> None:
        self.client = client
        self.layout = layout
        self.partitions = partitions
        self.reader = reader

    async def window_by_territory(self, kind: Kind, key: str,
                                  window: WindowRef) -> dict[str, Any]:
        counts, territories = await self._territories(
            kind, key, [(window, p) for p in range(self.partitions)])
        return {KEY_NAMES[kind]: key, **window.as_dict(), COUNTS_NAMES[kind]: counts,
                "territories": territories}

    async def range_usage(self, kind: Kind, key: str, days: DayRange,
                          by_territory: bool) -> dict[str, Any]:
        cells: tuple[tuple[date, int], ...] = ()
        if self.reader is not None:
            read: Callable[..., RangeAnswer] = getattr(self.reader, f"{kind}_usage")
            answer = await asyncio.to_thread(read, key, days.first, days.last, by_territory,
                                             partial=True)
            body, cells = answer.body, answer.cells
        else:
            body = {KEY_NAMES[kind]: key, "from": days.first.isoformat(),
                    "to": days.last.isoformat(), "start_ms": day_start_ms(days.first),
                    "end_ms": day_start_ms(days.last) + DAY_MS, "closed_days": 0,
                    COUNTS_NAMES[kind]: zero_counts(kind)}
            if by_territory:
                body["territories"] = {}
        in_ledger = set(cells)
        shards = [(_day_window(day), p) for day in days.days() for p in range(self.partitions)
                  if (day, p) not in in_ledger]
        if shards:
            if by_territory:
                counts, territories = await self._territories(kind, key, shards)
                merged: dict[str, Any] = body["territories"]
                for country, part in territories.items():
                    add_into(merged.setdefault(country, zero_counts(kind)), part)
                body["territories"] = dict(sorted(merged.items()))
            else:
                counts = await self._plain(kind, key, shards)
            add_into(body[COUNTS_NAMES[kind]], counts)
        return body

    # -- Redis ---------------------------------------------------------------------

    async def _plain(self, kind: Kind, key: str, shards: list[Shard]) -> dict[str, Any]:
        """The plain counters of ``key`` summed over the (window, partition) shards."""
        paths: list[list[str]]
        if kind == "track":
            keys = self._keys(self.layout.track_counts, shards)
            paths = [[use] for use in USES]
            fields = [track_field(use, key) for use in USES]
        elif kind == "holder":
            keys = self._keys(self.layout.holder_counts, shards)
            paths = [[right, measure, use]
                     for right in RIGHTS for measure in HOLDER_MEASURES for use in USES]
            fields = [holder_field(right, use, measure, key) for right, measure, use in paths]
        else:
            keys = self._keys(self.layout.genre_counts, shards)
            paths = [[origin, use] for origin in AI_ORIGINS for use in USES]
            fields = [genre_field(origin, use, key) for origin, use in paths]
        async with self.client.pipeline(transaction=False) as pipe:
            for name in keys:
                pipe.hmget(name, fields)
            rows = await pipe.execute()
        counts = zero_counts(kind)
        for row in rows:
            for path, value in zip(paths, row, strict=True):
                if value is not None:
                    _bump(kind, counts, path, int(value))
        return counts

    async def _territories(self, kind: Kind, key: str, shards: list[Shard]
                           ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Totals and per-country counts of ``key`` over the (window, partition) shards,
        from the territory hashes."""
        layout = {"track": self.layout.territory_track_counts,
                  "holder": self.layout.territory_holder_counts,
                  "genre": self.layout.territory_genre_counts}[kind]
        pattern = "*|" + _GLOB_SPECIAL.sub(r"\\\1", key)
        totals = zero_counts(kind)
        territories: dict[str, Any] = {}
        for field, value in await self._scan(self._keys(layout, shards), pattern):
            parsed = _parse_territory_field(kind, field, key)
            if parsed is None:
                continue
            country, path = parsed
            uses = int(value)
            _bump(kind, totals, path, uses)
            _bump(kind, territories.setdefault(country, zero_counts(kind)), path, uses)
        return totals, dict(sorted(territories.items()))

    async def _scan(self, keys: list[str], pattern: str) -> list[tuple[str, bytes]]:
        """Every (field, value) matching ``pattern`` in ``keys``: HSCAN rounds, each round
        one pipeline over the keys whose scan is not finished."""
        found: list[tuple[str, bytes]] = []
        cursors = dict.fromkeys(keys, 0)
        while cursors:
            async with self.client.pipeline(transaction=False) as pipe:
                for name, cursor in cursors.items():
                    pipe.hscan(name, cursor, match=pattern, count=_SCAN_COUNT)
                replies = await pipe.execute()
            following = {}
            for name, (cursor, items) in zip(cursors, replies, strict=True):
                found.extend((field.decode(), value) for field, value in items.items())
                if int(cursor):
                    following[name] = int(cursor)
            cursors = following
        return found

    @staticmethod
    def _keys(key_of: Callable[[int, str, int], str], shards: Iterable[Shard]) -> list[str]:
        return [key_of(p, w.name, w.start_ms) for w, p in shards]


def _parse_territory_field(kind: Kind, field: str, key: str
                           ) -> tuple[str, list[str]] | None:
    """``(country, path into the counts)`` of a territory field of ``key``, else None
    (a field of another key that the glob let through)."""
    if kind == "track":
        parts = field.split("|", 2)  # use|country|track_id
        if len(parts) != 3 or parts[2] != key or parts[0] not in USES:
            return None
        return parts[1], [parts[0]]
    if kind == "holder":
        parts = field.split("|", 4)  # right|use|country|measure|holder
        if (len(parts) != 5 or parts[4] != key or parts[0] not in RIGHTS
                or parts[1] not in USES or parts[3] not in HOLDER_MEASURES):
            return None
        return parts[2], [parts[0], parts[3], parts[1]]
    parts = field.split("|", 3)  # ai_origin|use|country|genre
    if len(parts) != 4 or parts[3] != key or parts[0] not in AI_ORIGINS or parts[1] not in USES:
        return None
    return parts[2], [parts[0], parts[1]]


def _bump(kind: Kind, counts: dict[str, Any], path: list[str], uses: int) -> None:
    """Add ``uses`` at ``path``: [use] (track), [right, measure, use] (holder, measure
    u or w), [ai_origin, use] (genre)."""
    if kind == "track":
        counts[path[0]] += uses
    elif kind == "holder":
        right, measure, use = path
        counts[right]["uses" if measure == USES_MEASURE else "weighted_micro"][use] += uses
    else:
        counts[path[0]][path[1]] += uses
