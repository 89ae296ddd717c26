"""Cutting a model's ticks into Kafka records, the way the producer SDK does.

Batch mode (``batch_events`` > 1): per partition, consecutive SoundUsed are packed into
one JSON array record of up to ``batch_events`` elements (key: the first event's track
id, like ``streamer.producer.UsageProducer``); a partly filled batch goes out once it is
``linger_sim_ms`` of event time old. Single mode: one record per SoundUsed, key = its
track id. TrackCreated are always single records; before a tick's replacing TrackCreated
the partition's partly filled batch is cut, so the uses before it are sent before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.loadgen.ticks import Tick

TRACKS = 0
USES = 1


@dataclass(slots=True)
class Record:
    topic: int        # TRACKS or USES
    partition: int
    key: bytes
    value: bytes
    events: int       # SoundUsed elements carried (0 for TrackCreated)


class RecordBuilder:
    def __init__(self, batch_events: int, linger_sim_ms: float | None = None,
                 max_record_bytes: int = 900 * 1024) -> None:
        self.batch_events = batch_events
        self.linger_sim_ms = linger_sim_ms
        self.max_record_bytes = max_record_bytes
        self._parts: dict[int, list[str]] = {}
        self._keys: dict[int, str] = {}
        self._sizes: dict[int, int] = {}
        self._started: dict[int, int] = {}

    def add(self, tick: Tick) -> list[Record]:
        out = [self._cut(partition) for partition in sorted(tick.cut_before)
               if partition in self._parts]
        out += [Record(TRACKS, partition, key, value, 0) for partition, key, value in tick.tracks]
        if self.batch_events <= 1:
            for partition, items in tick.uses.items():
                out.extend(Record(USES, partition, track_id.encode(), text.encode(), 1)
                           for track_id, text in items)
        else:
            limit = self.batch_events
            max_bytes = self.max_record_bytes
            parts, keys, sizes, started = self._parts, self._keys, self._sizes, self._started
            for partition, items in tick.uses.items():
                buffer = parts.get(partition)
                for track_id, text in items:
                    if buffer is None:
                        buffer = parts[partition] = []
                        keys[partition] = track_id
                        sizes[partition] = 2
                        started[partition] = tick.end_ms
                    buffer.append(text)
                    size = sizes[partition] = sizes[partition] + len(text) + 1
                    if len(buffer) >= limit or size >= max_bytes:
                        out.append(self._cut(partition))
                        buffer = None
            linger = self.linger_sim_ms
            if linger is not None:
                for partition in [p for p, at in started.items() if tick.end_ms - at >= linger]:
                    out.append(self._cut(partition))
        out.extend(Record(USES, partition, key, value, 1)
                   for partition, key, value in tick.raw)
        return out

    def _cut(self, partition: int) -> Record:
        buffer = self._parts.pop(partition)
        key = self._keys.pop(partition)
        self._sizes.pop(partition)
        self._started.pop(partition)
        value = ("[" + ",".join(buffer) + "]").encode()
        return Record(USES, partition, key.encode(), value, len(buffer))

    def flush(self) -> list[Record]:
        return [self._cut(partition) for partition in list(self._parts)]
