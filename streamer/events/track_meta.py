"""The catalog entry of a track: what attribution needs to know about it, and the names
reports print (title, ISRC, display artist, label)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from streamer.events.shares import MICRO

REPORT_FIELDS = ("title", "isrc", "artist", "label")
"""Optional TrackCreated fields that reach the ledger and the DSR files, never a counter."""


class _Entry(msgspec.Struct, gc=False, omit_defaults=True):
    """The catalog entry as stored in Redis: one-letter keys, absent names left out (so
    an entry without them is byte for byte what it was before they existed)."""

    g: str
    o: str
    m: tuple[tuple[str, int], ...]
    p: tuple[tuple[str, int], ...]
    t: str | None = None
    i: str | None = None
    a: str | None = None
    l: str | None = None  # noqa: E741 (the stored key)


UNATTRIBUTED_VERSION = "_unattributed"
"""The catalog version of uses whose track never got metadata (its only holder)."""
_UNATTRIBUTED_SHARES = (("_unattributed", MICRO),)


def catalog_version(genre: str | None, ai_origin: str | None, artist: str | None,
                    label: str | None, master: Sequence[tuple[str, int]],
                    publishing: Sequence[tuple[str, int]], title: str | None = None,
                    isrc: str | None = None) -> str:
    """A catalog entry's version (``streamer.ledger.CatalogEntry.version``): 16 hex digits
    of SHA-256 of the entry, so the same entry always gets the same version. Here, where
    the pipeline computes it per new plan without importing the ledger."""
    if genre is None and ai_origin is None and tuple(master) == tuple(publishing) \
            == _UNATTRIBUTED_SHARES:
        return UNATTRIBUTED_VERSION
    fields: list[Any] = [genre, ai_origin, artist, label,
                         [[h, int(m)] for h, m in master],
                         [[h, int(m)] for h, m in publishing]]
    if title is not None or isrc is not None:
        # Only then: an entry without them keeps the version it had before they
        # existed (a day attributed by older code still closes).
        fields += [title, isrc]
    return hashlib.sha256(orjson.dumps(fields)).hexdigest()[:16]


_encode_entry = msgspec.json.Encoder().encode
_decode_entry = msgspec.json.Decoder(_Entry).decode


class TrackMeta(msgspec.Struct, gc=False):
    """What attribution needs to know about a track; stored in the Redis catalog.

    ``title``, ``isrc``, ``artist`` and ``label`` are for reports: absent is None, and
    they change no counter (only which catalog version the ledger records).

    A msgspec struct rather than a frozen dataclass: one is made per TrackCreated, and
    a frozen dataclass' ``__init__`` cost more than the rest of the object's life
    (docs/BENCHMARKS.md). Treat it as immutable; ``plan`` is the only attribute set
    later, and equality leaves it out. No reference cycles (``gc=False``): it holds
    strings, tuples of them and the plan, whose objects never point back to it.
    """

    genre: str
    ai_origin: str
    master: tuple[tuple[str, int], ...]
    publishing: tuple[tuple[str, int], ...]
    title: str | None = None
    isrc: str | None = None
    artist: str | None = None
    label: str | None = None
    # The attribution plan, built once (pipeline/attribution.py); not part of the value.
    plan: object | None = None

    def __eq__(self, other: object) -> bool:
        if type(other) is not TrackMeta:
            return NotImplemented
        return (self.genre == other.genre and self.ai_origin == other.ai_origin
                and self.master == other.master and self.publishing == other.publishing
                and self.title == other.title and self.isrc == other.isrc
                and self.artist == other.artist and self.label == other.label)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        names = "".join(f", {name}={getattr(self, name)!r}" for name in REPORT_FIELDS
                        if getattr(self, name) is not None)
        return (f"TrackMeta(genre={self.genre!r}, ai_origin={self.ai_origin!r}, "
                f"master={self.master!r}, publishing={self.publishing!r}{names})")

    def holders(self, right: str) -> tuple[tuple[str, int], ...]:
        return self.master if right == "master" else self.publishing

    def has_report_fields(self) -> bool:
        return not (self.title is None and self.isrc is None and self.artist is None
                    and self.label is None)

    def report_fields(self) -> dict[str, str]:
        """The report fields present, by their TrackCreated names (empty: none)."""
        found: dict[str, Any] = {"title": self.title, "isrc": self.isrc,
                                 "artist": self.artist, "label": self.label}
        return {name: value for name, value in found.items() if value is not None}

    def to_json(self) -> bytes:
        """The catalog entry (msgspec encodes a struct faster than a dict; measured in
        docs/BENCHMARKS.md)."""
        return _encode_entry(_Entry(self.genre, self.ai_origin, self.master, self.publishing,
                                    self.title, self.isrc, self.artist, self.label))

    @classmethod
    def from_json(cls, data: bytes | str) -> TrackMeta:
        entry = _decode_entry(data)
        return cls(entry.g, entry.o, entry.m, entry.p, entry.t, entry.i, entry.a, entry.l)
