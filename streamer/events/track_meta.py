"""The catalog entry of a track: what attribution needs to know about it."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

import msgspec
import orjson

_encode_json = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class TrackMeta:
    """What attribution needs to know about a track; stored in the Redis catalog."""

    genre: str
    ai_origin: str
    master: tuple[tuple[str, int], ...]
    publishing: tuple[tuple[str, int], ...]
    # The attribution plan, built once (pipeline/attribution.py).
    plan: object | None = dataclass_field(
        default=None, compare=False, repr=False
    )

    def holders(self, right: str) -> tuple[tuple[str, int], ...]:
        return self.master if right == "master" else self.publishing

    def to_json(self) -> bytes:
        """The catalog entry; msgspec writes the same bytes as orjson, faster on tuples.

        Measured in docs/BENCHMARKS.md.
        """
        return _encode_json(
            {"g": self.genre, "o": self.ai_origin, "m": self.master, "p": self.publishing}
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> TrackMeta:
        raw = orjson.loads(data)
        return cls(
            genre=raw["g"],
            ai_origin=raw["o"],
            master=tuple((holder, micro) for holder, micro in raw["m"]),
            publishing=tuple((holder, micro) for holder, micro in raw["p"]),
        )
