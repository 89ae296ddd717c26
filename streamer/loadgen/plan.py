"""What a send is asked to do (``SendPlan``) and what it reports back (``LoadResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamer.loadgen.config import LoadConfig
from streamer.loadgen.ticks import ModelStats
from streamer.verify.truth import PartitionedTruth


@dataclass(slots=True)
class SendPlan:
    cfg: LoadConfig
    kafka: dict[str, Any]               # aiokafka connection kwargs
    tracks_topic: str
    uses_topic: str
    partitions: int
    processes: int = 1
    speed: float = 1.0                  # sim seconds per wall second; 0 = flat out
    catalog_ms: int | None = None
    # Wait after the catalog until the parent says go (and gives the start time).
    wait_for_go: bool = False
    keep_truth: bool = True
    # Stop sending after this many wall seconds (None: the whole schedule).
    max_wall_s: float | None = None
    # Build every record before go (needs cfg.start_ms and wait_for_go; see above).
    pregenerate: bool = False


@dataclass(slots=True)
class LoadResult:
    truth: PartitionedTruth | None
    stats: ModelStats
    events: int = 0
    records: int = 0
    bytes: int = 0
    tracks_records: int = 0
    wall_s: float = 0.0            # from go to the last acknowledgement
    catalog_wall_s: float = 0.0
    start_ms: int = 0
    end_ms: int = 0
    cpu_s: float = 0.0             # user+sys of the sending processes
    errors: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events, "records": self.records, "bytes": self.bytes,
            "tracks_records": self.tracks_records, "wall_s": round(self.wall_s, 3),
            "catalog_wall_s": round(self.catalog_wall_s, 3),
            "events_per_s": round(self.events_per_s, 1), "cpu_s": round(self.cpu_s, 2),
            "start_ms": self.start_ms, "end_ms": self.end_ms, "stats": self.stats.to_dict(),
            "errors": self.errors[:5],
        }
