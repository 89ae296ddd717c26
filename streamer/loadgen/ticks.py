"""What the traffic model emits per slice of event time, and what it counts while doing so."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class Tick:
    """The events of one slice of event time, for the partitions this model owns."""

    end_ms: int
    # (partition, key, value) TrackCreated records, in send order.
    tracks: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    # partition -> [(track_id, SoundUsed JSON)], in send order.
    uses: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    # (partition, key, value) whole records sent as they are (e.g. not JSON).
    raw: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    # Partitions whose earlier uses must be sent before this tick's TrackCreated (a
    # replacement: the ground truth counts the uses before it with the old metadata).
    cut_before: set[int] = field(default_factory=set)


@dataclass(slots=True)
class ModelStats:
    uses_sent: int = 0          # SoundUsed elements sent (valid or not), owned partitions
    uses_counted: int = 0       # of which the worker must count
    duplicates: int = 0
    late: int = 0
    late_inside: int = 0        # counted uses just inside the lateness edge
    invalid: int = 0            # invalid elements + invalid whole records
    early_uses: int = 0         # counted uses sent before their TrackCreated
    tracks_sent: int = 0        # TrackCreated records sent (valid, duplicate or invalid)
    tracks_created: int = 0     # accepted TrackCreated (catalog + new + replacements)
    tracks_replaced: int = 0    # replacements among them
    tracks_invalid: int = 0
    trending_started: int = 0
    uses_new_tracks: int = 0    # counted uses of tracks created during the run
    uses_trending: int = 0      # counted uses picked from the trending set

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def add(self, other: ModelStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
