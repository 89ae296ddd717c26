"""Where everything lives in Redis (docs/ARCHITECTURE.md has the same table).

All keys written by one atomic flush start with the hash tag of their input
partition, ``{prefix:N}``, so a flush touches one Redis Cluster slot; the catalog
is keyed per track and written idempotently outside the flush, and the flush keeps a
copy of its catalog writes under the partition's tag (``catalog_copy``) to repair
the catalog from when a cluster failover lost one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

# The single-letter codes inside keys and fields, defined here only.
# Input topics, in meta fields (``off:u``) and dedupe keys (``:dd:u:``):
USES_CODE = "u"
TRACKS_CODE = "t"
TOPIC_CODES = {"uses": USES_CODE, "tracks": TRACKS_CODE}
# Kinds of counter keys (``{prefix:N}:<kind>:<window>:<start>``):
TRACK_COUNTS = "t"
HOLDER_COUNTS = "h"
GENRE_COUNTS = "g"
TRENDING = "z"
# Trending per genre: ``{prefix:N}:<kind>:<window>:<start>:<genre>``, one sorted set a genre.
GENRE_TRENDING = "zg"
# Territory counters: the same three families with the use's country in every field.
TERRITORY_TRACK_COUNTS = "tt"
TERRITORY_HOLDER_COUNTS = "th"
TERRITORY_GENRE_COUNTS = "tg"
# What the ledger closes per UTC day (docs/LEDGER.md): uses per attributing catalog
# version, and those versions' entries.
ATTRIBUTIONS = "a"
ATTRIBUTION_ENTRIES = "av"
DAY_WINDOW = "1d"
# Meta field: epoch ms before which every day is closed for the ledger.
CLOSED_BEFORE_FIELD = "cl"
DAY_MS = 86_400_000
# The partition-local copy of its flushes' catalog writes: one hash per 10 minutes of
# the flush's wall clock (``{prefix:N}:cw:<bucket start>``). Small buckets let the copy
# go soon after its writes are on every replica; a claim reads a day's worth (144) in
# one pipeline.
CATALOG_COPY = "cw"
CATALOG_COPY_BUCKET_MS = 600_000
# A holder's two measures (``<right>|<use>|<measure>|<holder>``): uses, uses x micro-share.
USES_MEASURE = "u"
WEIGHT_MEASURE = "w"
HOLDER_MEASURES = (USES_MEASURE, WEIGHT_MEASURE)


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str

    def tag(self, partition: int) -> str:
        return f"{{{self.prefix}:{partition}}}"

    def meta(self, partition: int) -> str:
        """HASH owner, seq, off:<topic>, wm:<topic>, cl: the partition's commit record."""
        return f"{self.tag(partition)}:meta"

    def track_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<use>|<track_id>`` -> uses."""
        return f"{self.tag(partition)}:{TRACK_COUNTS}:{window}:{start}"

    def holder_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<right>|<use>|u|<holder>`` -> uses, ``<right>|<use>|w|<holder>`` -> micro."""
        return f"{self.tag(partition)}:{HOLDER_COUNTS}:{window}:{start}"

    def genre_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<ai_origin>|<use>|<genre>`` -> uses."""
        return f"{self.tag(partition)}:{GENRE_COUNTS}:{window}:{start}"

    def trending(self, partition: int, window: str, start: int) -> str:
        """ZSET track_id -> creates."""
        return f"{self.tag(partition)}:{TRENDING}:{window}:{start}"

    def genre_trending(self, partition: int, window: str, start: int, genre: str) -> str:
        """ZSET track_id -> creates of the tracks attributed to ``genre``."""
        return f"{self.tag(partition)}:{GENRE_TRENDING}:{window}:{start}:{genre}"
    def territory_track_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<use>|<country>|<track_id>`` -> uses."""
        return f"{self.tag(partition)}:{TERRITORY_TRACK_COUNTS}:{window}:{start}"

    def territory_holder_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<right>|<use>|<country>|u|<holder>`` -> uses, ``...|w|<holder>`` -> micro."""
        return f"{self.tag(partition)}:{TERRITORY_HOLDER_COUNTS}:{window}:{start}"

    def territory_genre_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<ai_origin>|<use>|<country>|<genre>`` -> uses."""
        return f"{self.tag(partition)}:{TERRITORY_GENRE_COUNTS}:{window}:{start}"

    def attributions(self, partition: int, day_start: int) -> str:
        """HASH ``<track_id>|<country>|<use>|<catalog version>`` -> uses of one UTC day."""
        return f"{self.tag(partition)}:{ATTRIBUTIONS}:{DAY_WINDOW}:{day_start}"

    def attribution_entries(self, partition: int, day_start: int) -> str:
        """HASH ``<track_id>|<catalog version>`` -> the catalog entry JSON of that version."""
        return f"{self.tag(partition)}:{ATTRIBUTION_ENTRIES}:{DAY_WINDOW}:{day_start}"

    def pending(self, partition: int) -> str:
        """HASH track_id -> JSON ``[[use, base_start, count, country], ...]`` awaiting
        attribution (entries without a country, from before territory: ``ZZ``)."""
        return f"{self.tag(partition)}:pending"

    def dedupe(self, partition: int, topic_code: str, bucket: int) -> str:
        """STRING of packed little-endian uint64 event-id hashes seen in one time bucket."""
        return f"{self.tag(partition)}:dd:{topic_code}:{bucket}"

    def catalog_copy(self, partition: int, bucket_start: int) -> str:
        """HASH track_id -> ``<seq> <entry JSON>``: the catalog entries the partition's
        flushes wrote in the bucket starting at ``bucket_start`` (the writer's wall clock),
        with each flush's ``seq``. Written by the flush script, so it survives exactly
        when the flush's offsets do."""
        return f"{self.tag(partition)}:{CATALOG_COPY}:{bucket_start}"

    def catalog(self, track_id: str) -> str:
        """STRING TrackMeta JSON; one slot per track so the catalog spreads over a cluster."""
        return f"{self.prefix}:cat:{{{track_id}}}"


def catalog_copy_bucket(now_ms: int) -> int:
    """The copy bucket a flush at wall-clock ``now_ms`` writes to."""
    return now_ms - now_ms % CATALOG_COPY_BUCKET_MS


def catalog_copy_value(seq: int, entry: bytes) -> str:
    """A copy's field value: the flush's ``seq`` (the latest write of a track is the one
    with the highest, whatever the writers' clocks said) and the catalog entry JSON."""
    return f"{seq} {entry.decode()}"


def parse_catalog_copy_value(value: bytes) -> tuple[int, bytes]:
    seq, _, entry = value.partition(b" ")
    return int(seq), entry


def catalog_copy_buckets(now_ms: int, retention_ms: int) -> range:
    """Every copy bucket that may still exist at ``now_ms``, oldest first: each expires
    ``retention_ms`` after its last write (at most its end), plus one bucket each way
    for clocks of other workers that run ahead or behind."""
    newest = catalog_copy_bucket(now_ms) + CATALOG_COPY_BUCKET_MS
    oldest = catalog_copy_bucket(now_ms - retention_ms) - 2 * CATALOG_COPY_BUCKET_MS
    return range(oldest, newest + 1, CATALOG_COPY_BUCKET_MS)


def track_field(use: str, track_id: str) -> str:
    return f"{use}|{track_id}"


def holder_field(right: str, use: str, kind: str, holder_id: str) -> str:
    return f"{right}|{use}|{kind}|{holder_id}"


def genre_field(ai_origin: str, use: str, genre: str) -> str:
    return f"{ai_origin}|{use}|{genre}"


def territory_track_field(use: str, country: str, track_id: str) -> str:
    return f"{use}|{country}|{track_id}"


def territory_holder_field(holder_field_name: str, country: str) -> str:
    """``<right>|<use>|<measure>|<holder>`` -> ``<right>|<use>|<country>|<measure>|<holder>``."""
    right, use, rest = holder_field_name.split("|", 2)
    return f"{right}|{use}|{country}|{rest}"


def territory_genre_field(genre_field_name: str, country: str) -> str:
    """``<ai_origin>|<use>|<genre>`` -> ``<ai_origin>|<use>|<country>|<genre>``."""
    ai_origin, use, genre = genre_field_name.split("|", 2)
    return f"{ai_origin}|{use}|{country}|{genre}"


def attribution_field(track_id: str, country: str, use: str, version: str) -> str:
    return f"{track_id}|{country}|{use}|{version}"


def attribution_entry_field(track_id: str, version: str) -> str:
    return f"{track_id}|{version}"


def genre_trending_field(genre: str, track_id: str) -> str:
    """How a flush carries a genre's trending increment before it is written to that
    genre's sorted set: genres and track ids contain no ``|``."""
    return f"{genre}|{track_id}"
