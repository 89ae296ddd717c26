"""The catalog entry of a track: what attribution needs to know about it, and the names
reports print (title, ISRC, display artist, label)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

import msgspec
import orjson

_encode_json = msgspec.json.Encoder().encode

REPORT_FIELDS = ("title", "isrc", "artist", "label")
"""Optional TrackCreated fields that reach the ledger and the DSR files, never a counter."""

# Catalog JSON keys of the report fields: one letter each, like the other keys.
_REPORT_KEYS = (("title", "t"), ("isrc", "i"), ("artist", "a"), ("label", "l"))


@dataclass(frozen=True, slots=True)
class TrackMeta:
    """What attribution needs to know about a track; stored in the Redis catalog.

    ``title``, ``isrc``, ``artist`` and ``label`` are for reports: absent is None, and
    they change no counter (only which catalog version the ledger records).
    """

    genre: str
    ai_origin: str
    master: tuple[tuple[str, int], ...]
    publishing: tuple[tuple[str, int], ...]
    title: str | None = None
    isrc: str | None = None
    artist: str | None = None
    label: str | None = None
    # The attribution plan, built once (pipeline/attribution.py).
    plan: object | None = dataclass_field(
        default=None, compare=False, repr=False
    )

    def holders(self, right: str) -> tuple[tuple[str, int], ...]:
        return self.master if right == "master" else self.publishing

    def report_fields(self) -> dict[str, str]:
        """The report fields present, by their TrackCreated names (empty: none)."""
        found = {}
        for name in REPORT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                found[name] = value
        return found

    def to_json(self) -> bytes:
        """The catalog entry; msgspec writes the same bytes as orjson, faster on tuples.

        Absent report fields are left out, so an entry without them is byte for byte
        what it was before they existed. Measured in docs/BENCHMARKS.md.
        """
        entry: dict[str, object] = {"g": self.genre, "o": self.ai_origin, "m": self.master,
                                    "p": self.publishing}
        if (self.title is not None or self.isrc is not None or self.artist is not None
                or self.label is not None):
            for name, key in _REPORT_KEYS:
                value = getattr(self, name)
                if value is not None:
                    entry[key] = value
        return _encode_json(entry)

    @classmethod
    def from_json(cls, data: bytes | str) -> TrackMeta:
        raw = orjson.loads(data)
        return cls(
            genre=raw["g"],
            ai_origin=raw["o"],
            master=tuple((holder, micro) for holder, micro in raw["m"]),
            publishing=tuple((holder, micro) for holder, micro in raw["p"]),
            title=raw.get("t"),
            isrc=raw.get("i"),
            artist=raw.get("a"),
            label=raw.get("l"),
        )
