"""Where everything lives in Redis (docs/ARCHITECTURE.md has the same table).

All keys written by one atomic flush start with the hash tag of their input
partition, ``{prefix:N}``, so a flush touches one Redis Cluster slot; the catalog
is keyed per track and written idempotently outside the flush.
"""

from __future__ import annotations

from dataclasses import dataclass

# Short codes used inside keys and fields.
TOPIC_CODES = {"uses": "u", "tracks": "t"}


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str

    def tag(self, partition: int) -> str:
        return f"{{{self.prefix}:{partition}}}"

    def meta(self, partition: int) -> str:
        """HASH owner, seq, off:<topic>, wm:<topic>: the partition's commit record."""
        return f"{self.tag(partition)}:meta"

    def track_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<use>|<track_id>`` -> uses."""
        return f"{self.tag(partition)}:t:{window}:{start}"

    def holder_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<right>|<use>|u|<holder>`` -> uses, ``<right>|<use>|w|<holder>`` -> micro."""
        return f"{self.tag(partition)}:h:{window}:{start}"

    def genre_counts(self, partition: int, window: str, start: int) -> str:
        """HASH ``<ai_origin>|<use>|<genre>`` -> uses."""
        return f"{self.tag(partition)}:g:{window}:{start}"

    def trending(self, partition: int, window: str, start: int) -> str:
        """ZSET track_id -> creates."""
        return f"{self.tag(partition)}:z:{window}:{start}"

    def pending(self, partition: int) -> str:
        """HASH track_id -> JSON ``[[use, base_start, count], ...]`` awaiting attribution."""
        return f"{self.tag(partition)}:pending"

    def dedupe(self, partition: int, topic_code: str, bucket: int) -> str:
        """STRING of packed little-endian uint64 event-id hashes seen in one time bucket."""
        return f"{self.tag(partition)}:dd:{topic_code}:{bucket}"

    def catalog(self, track_id: str) -> str:
        """STRING TrackMeta JSON; one slot per track so the catalog spreads over a cluster."""
        return f"{self.prefix}:cat:{{{track_id}}}"


def track_field(use: str, track_id: str) -> str:
    return f"{use}|{track_id}"


def holder_field(right: str, use: str, kind: str, holder_id: str) -> str:
    return f"{right}|{use}|{kind}|{holder_id}"


def genre_field(ai_origin: str, use: str, genre: str) -> str:
    return f"{ai_origin}|{use}|{genre}"
