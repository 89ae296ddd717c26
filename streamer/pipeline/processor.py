"""The hot path: one Kafka record in, counted cells or named rejections out.

Nothing here awaits: a record is decoded, each event validated, checked against
lateness, the future and the dedupe set, and added to the partition's in-memory
cells. Redis and the dead-letter topic are dealt with by the caller (the agent and
the flusher), batched.
"""

from __future__ import annotations

import orjson
import xxhash

from streamer.config import Settings
from streamer.events.validation import (
    USES,
    Rejected,
    TrackMeta,
    parse_sound_used,
    parse_track_created,
)
from streamer.metrics import Metrics
from streamer.pipeline.attribution import attribute_uses, count_track_uses
from streamer.state.catalog import CatalogCache
from streamer.state.partition import TRACKS_CODE, USES_CODE, PartitionState, Rejection

_hash64 = xxhash.xxh3_64_intdigest

_REJECTED = object()
"""What _decode returns for a record it sent to the DLQ (a JSON null is a value too)."""


class RecordProcessor:
    def __init__(self, settings: Settings, cache: CatalogCache, metrics: Metrics) -> None:
        self.settings = settings
        self.cache = cache
        self.metrics = metrics
        self.windows = settings.windows
        self.base_ms = settings.windows[0][1]
        self.lateness_ms = settings.allowed_lateness_ms
        self.future_ms = settings.future_tolerance_ms
        self.max_record_bytes = settings.max_record_bytes
        self.max_batch = settings.max_batch_events

    # -- records -----------------------------------------------------------------

    def _decode(
        self, state: PartitionState, topic: str, offset: int, value: bytes | None
    ) -> object:
        """The record's JSON, or _REJECTED after rejecting the whole record."""
        if value is None or len(value) == 0:
            self._reject(state, topic, offset, value or b"", Rejected("empty_record", None,
                                                                    "record has no value"))
            return _REJECTED
        if len(value) > self.max_record_bytes:
            self._reject(state, topic, offset, value, Rejected(
                "record_too_large", None,
                f"{len(value)} bytes, the limit is {self.max_record_bytes}"))
            return _REJECTED
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            self._reject(state, topic, offset, value, Rejected("not_json", None, str(exc)[:200]))
            return _REJECTED

    def handle_uses(self, state: PartitionState, offset: int, value: bytes | None,
                    now_ms: int) -> int:
        """Count a ``sounds.used`` record; return the number of events it carried."""
        if offset < state.next_offset[USES_CODE]:
            self.metrics.replayed_records.inc()
            return 0
        state.next_offset[USES_CODE] = offset + 1
        topic = self.settings.uses_topic
        decoded = self._decode(state, topic, offset, value)
        if decoded is _REJECTED:
            return 0
        if type(decoded) is list:
            events = decoded
            if not events:
                self._reject(state, topic, offset, value or b"",
                             Rejected("empty_batch", None, "a batch record needs 1 or more events"))
                return 0
            if len(events) > self.max_batch:
                self._reject(state, topic, offset, value or b"", Rejected(
                    "batch_too_large", None,
                    f"{len(events)} events, the limit is {self.max_batch}"))
                return 0
            single = False
        else:
            events = [decoded]
            single = True

        base_ms = self.base_ms
        cells = state.cells
        bases = state.bases
        last_base = -1
        dedupe = state.dedupe[USES_CODE]
        watermark = state.watermark[USES_CODE]
        late_before = watermark - self.lateness_ms
        future_after = now_ms + self.future_ms
        accepted: list[tuple[str, str, int, str]] = []
        for event in events:
            try:
                parsed = parse_sound_used(event)
                occurred_at = parsed[2]
                if occurred_at < late_before:
                    raise Rejected("late", "occurred_at", f"{occurred_at} is older than the "
                                   f"watermark {watermark} minus the allowed lateness")
                if occurred_at > future_after:
                    raise Rejected("future", "occurred_at", f"{occurred_at} is more than "
                                   f"{self.future_ms} ms ahead of the wall clock {now_ms}")
            except Rejected as rejected:
                raw = value if single else orjson.dumps(event)
                self._reject(state, topic, offset, raw or b"", rejected)
                continue
            accepted.append(parsed)
            if occurred_at > watermark:
                watermark = occurred_at
                late_before = watermark - self.lateness_ms

        fresh = dedupe.add_batch([_hash64(parsed[0].encode()) for parsed in accepted],
                                 [parsed[2] for parsed in accepted])
        counted = duplicates = 0
        for (_, track_id, occurred_at, use), is_new in zip(accepted, fresh, strict=True):
            if not is_new:
                duplicates += 1
                continue
            base = occurred_at - occurred_at % base_ms
            if base != last_base:
                bases.add(base)
                last_base = base
            key = (track_id, use, base)
            cells[key] = cells.get(key, 0) + 1
            counted += 1
        state.watermark[USES_CODE] = watermark
        dedupe.advance(watermark)
        dedupe.compact()
        state.unflushed_events += counted
        hot = self.metrics.hot
        hot.events_uses += len(events)
        hot.events_counted += counted
        hot.duplicates += duplicates
        return len(events)

    def handle_track(self, state: PartitionState, offset: int, value: bytes | None,
                     now_ms: int) -> int:
        """Apply a ``tracks.created`` record to the catalog; return 1 if it was an event."""
        if offset < state.next_offset[TRACKS_CODE]:
            self.metrics.replayed_records.inc()
            return 0
        state.next_offset[TRACKS_CODE] = offset + 1
        topic = self.settings.tracks_topic
        decoded = self._decode(state, topic, offset, value)
        if decoded is _REJECTED:
            return 0
        try:
            event_id, track_id, occurred_at, meta = parse_track_created(decoded)
            if occurred_at > now_ms + self.future_ms:
                raise Rejected("future", "occurred_at", f"{occurred_at} is more than "
                               f"{self.future_ms} ms ahead of the wall clock {now_ms}")
        except Rejected as rejected:
            self._reject(state, topic, offset, value or b"", rejected)
            return 1
        self.metrics.events_consumed_tracks.inc()
        if not state.dedupe[TRACKS_CODE].add(event_id, occurred_at):
            self.metrics.hot.duplicates += 1
            return 1
        state.watermark[TRACKS_CODE] = max(state.watermark[TRACKS_CODE], occurred_at)
        state.dedupe[TRACKS_CODE].advance(state.watermark[TRACKS_CODE])
        previous = self.cache.get(track_id)
        if previous is not None and previous != meta:
            self._seal(state, track_id, previous)
        elif previous is None and track_id not in state.needs_old_meta:
            # Earlier uses may belong to metadata we no longer cache (restart, eviction):
            # the flusher reads it from Redis before this replacement is written there.
            earlier = {key: state.cells.pop(key) for key in self._cells_of(state, track_id)}
            if earlier:
                state.needs_old_meta[track_id] = earlier
        self.cache.put(track_id, meta)
        state.catalog_writes[track_id] = meta.to_json()
        state.unflushed_events += 1
        return 1

    @staticmethod
    def _cells_of(state: PartitionState, track_id: str) -> list[tuple[str, str, int]]:
        cells = state.cells
        return [key for base in state.bases for use in USES
                if (key := (track_id, use, base)) in cells]

    def _seal(self, state: PartitionState, track_id: str, previous: TrackMeta) -> None:
        """Attribute this track's unflushed uses with the metadata they were counted under."""
        for key in self._cells_of(state, track_id):
            _, use, base_start = key
            uses = state.cells.pop(key)
            count_track_uses(state.sealed, self.windows, track_id, use, base_start, uses)
            attribute_uses(state.sealed, self.windows, previous, use, base_start, uses)

    def _reject(self, state: PartitionState, topic: str, offset: int, value: bytes,
                rejected: Rejected) -> None:
        state.rejections.append(
            Rejection(topic, state.partition, offset, value, rejected.reason, rejected.code)
        )
        self.metrics.rejected.labels(reason=rejected.code).inc()
