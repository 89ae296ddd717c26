"""The hot path: one Kafka record in, counted cells or named rejections out.

Nothing here awaits: a record is decoded, each event validated, checked against
lateness, the future and the dedupe set, and added to the partition's in-memory
cells. Redis and the dead-letter topic are dealt with by the caller (the agent and
the flusher), batched.

A valid ``sounds.used`` record takes the fast path: msgspec decodes and checks it
whole, and each later step works on the batch with comprehensions rather than one
Python loop per event. A record holding a bad event (or none at all) takes
``_count_checking_each``, which rejects exactly the bad events with their reasons.
A ``tracks.created`` record likewise: ``decode_track_created`` (msgspec) or, when it
declines, orjson and the reference rules, which name the problem.
"""

from __future__ import annotations

from collections import _count_elements  # type: ignore[attr-defined]
from itertools import compress
from typing import Any

import msgspec
import orjson
import xxhash

from streamer.config import Settings
from streamer.events.validation import (
    USES,
    Rejected,
    SoundUsed,
    TrackMeta,
    check_track_id,
    decode_sound_used,
    decode_track_created,
    decode_uses,
    parse_track_created,
    sound_used_of,
)
from streamer.metrics import Metrics
from streamer.pipeline.attribution import (
    Plan,
    attribute_uses,
    count_track_uses,
    known_plan,
    plan_for,
)
from streamer.state.catalog import CatalogCache
from streamer.state.partition import TRACKS_CODE, USES_CODE, PartitionState, Rejection

_hash64 = xxhash.xxh3_64_intdigest

_RAW_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
_ONE_USE = msgspec.json.Decoder(SoundUsed)
_CHUNK = 50  # events decoded together on the slow path
_LOCATED_BAD_EVENTS = 4  # bad events of one record found by position before the chunks

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

    def _size_ok(self, state: PartitionState, topic: str, offset: int,
                 value: bytes | None) -> bool:
        """Reject an empty or oversized record whole, before anything parses it."""
        if value is None or len(value) == 0:
            self._reject(state, topic, offset, value or b"", Rejected("empty_record", None,
                                                                    "record has no value"))
            return False
        if len(value) > self.max_record_bytes:
            self._reject(state, topic, offset, value, Rejected(
                "record_too_large", None,
                f"{len(value)} bytes, the limit is {self.max_record_bytes}"))
            return False
        return True

    def _decode(
        self, state: PartitionState, topic: str, offset: int, value: bytes | None
    ) -> object:
        """The record's JSON, or _REJECTED after rejecting the whole record."""
        if not self._size_ok(state, topic, offset, value):
            return _REJECTED
        try:
            return orjson.loads(value)  # type: ignore[arg-type]
        except orjson.JSONDecodeError as exc:
            self._reject(state, topic, offset, value or b"",
                         Rejected("not_json", None, str(exc)[:200]))
            return _REJECTED

    def handle_uses(self, state: PartitionState, offset: int, value: bytes | None,
                    now_ms: int) -> int:
        """Count a ``sounds.used`` record; return the number of events it carried."""
        if offset < state.next_offset[USES_CODE]:
            self.metrics.replayed_records.inc()
            return 0
        state.next_offset[USES_CODE] = offset + 1
        if not self._size_ok(state, self.settings.uses_topic, offset, value):
            return 0
        assert value is not None
        decoded = decode_uses(value)
        if type(decoded) is list:
            carried = len(decoded)
            if not 0 < carried <= self.max_batch:
                self._reject_batch_size(state, offset, value, carried)
                return 0
            self._count(state, offset, value, decoded, None, now_ms)
        elif type(decoded) is SoundUsed:
            carried = 1
            self._count_one(state, offset, value, decoded, now_ms)
        else:
            carried = self._count_checking_each(state, offset, value, now_ms,
                                                decoded)  # type: ignore[arg-type]
        self.metrics.hot.events_uses += carried
        return carried

    def _reject_batch_size(self, state: PartitionState, offset: int, value: bytes,
                           carried: int) -> None:
        if carried == 0:
            rejected = Rejected("empty_batch", None, "a batch record needs 1 or more events")
        else:
            rejected = Rejected("batch_too_large", None,
                                f"{carried} events, the limit is {self.max_batch}")
        self._reject(state, self.settings.uses_topic, offset, value, rejected)

    def _count_checking_each(self, state: PartitionState, offset: int, value: bytes,
                             now_ms: int, first_bad: int | None = None) -> int:
        """The slow path: a record with an invalid event (or not JSON at all).

        Each bad event of a batch goes to the DLQ as its own original JSON, with the
        reason of its first broken rule; the valid ones around it count as usual.
        ``first_bad``: the position of the first bad event, when the fast path knew it.
        """
        topic = self.settings.uses_topic
        try:
            elements: list[Any] = _RAW_ELEMENTS.decode(value)
        except (msgspec.DecodeError, RecursionError):
            decoded = self._decode(state, topic, offset, value)  # orjson names the problem
            if decoded is _REJECTED:
                return 0
            if type(decoded) is not list:
                event = self._checked(state, offset, decoded, value)
                if event is not None:
                    self._count_one(state, offset, value, event, now_ms)
                return 1
            elements = [orjson.dumps(element) for element in decoded]
            first_bad = None
        if not 0 < len(elements) <= self.max_batch:
            self._reject_batch_size(state, offset, value, len(elements))
            return 0
        events: list[SoundUsed] = []
        raws: list[Any] = []
        resume = self._decode_around_bad(state, offset, elements, first_bad, events, raws)
        for start in range(resume, len(elements), _CHUNK):
            # Most chunks of a record with one bad event are fine: decode them whole.
            chunk = elements[start:start + _CHUNK]
            valid = decode_sound_used(b"[" + b",".join(chunk) + b"]")
            if type(valid) is list:
                events.extend(valid)
                raws.extend(chunk)
                continue
            for element in chunk:
                event = self._one_event(state, offset, bytes(element))
                if event is not None:
                    events.append(event)
                    raws.append(element)
        if events:
            self._count(state, offset, value, events, raws, now_ms)
        return len(elements)

    def _decode_around_bad(self, state: PartitionState, offset: int, elements: list[Any],
                           bad: int | None, events: list[SoundUsed], raws: list[Any]) -> int:
        """Decode whole the runs of events between the bad ones msgspec points at.

        Each run is one decode: the events before the bad one, which msgspec had already
        accepted, then everything after it, until it names no position (then the chunks
        take over from the returned position). A few bad events at most: many of them
        would make this quadratic, the chunks are not.
        """
        position = 0
        for _ in range(_LOCATED_BAD_EVENTS):
            rest = len(elements) - position
            if bad is None or not 0 <= bad < rest:
                return position
            if bad:
                head = elements[position:position + bad]
                valid = decode_sound_used(b"[" + b",".join(head) + b"]")
                if type(valid) is not list:
                    return position
                events.extend(valid)
                raws.extend(head)
            element = elements[position + bad]
            event = self._one_event(state, offset, bytes(element))
            if event is not None:
                events.append(event)
                raws.append(element)
            position += bad + 1
            if position == len(elements):
                return position
            tail = elements[position:]
            decoded = decode_uses(b"[" + b",".join(tail) + b"]")
            if type(decoded) is list:
                events.extend(decoded)
                raws.extend(tail)
                return len(elements)
            bad = decoded if type(decoded) is int else None
        return position

    def _one_event(self, state: PartitionState, offset: int, element: bytes
                   ) -> SoundUsed | None:
        """One element of a batch: the event, or None after rejecting it."""
        try:
            event = _ONE_USE.decode(element)  # no unknown fields (see SoundUsed)
            check_track_id(event.track_id)
            return event
        except (msgspec.DecodeError, RecursionError, Rejected):
            pass
        try:
            obj = orjson.loads(element)
        except orjson.JSONDecodeError as exc:
            self._reject(state, self.settings.uses_topic, offset, element,
                         Rejected("not_json", None, str(exc)[:200]))
            return None
        return self._checked(state, offset, obj, element)

    def _checked(self, state: PartitionState, offset: int, obj: object,
                 raw: bytes) -> SoundUsed | None:
        """``obj`` as a SoundUsed by the reference rules, or None after rejecting it."""
        try:
            return sound_used_of(obj)
        except Rejected as rejected:
            self._reject(state, self.settings.uses_topic, offset, raw, rejected)
            return None

    def _count(self, state: PartitionState, offset: int, value: bytes,
               events: list[SoundUsed], raws: list[Any] | None, now_ms: int) -> None:
        """Lateness, the future, duplicates, then one cell increment per counted event.

        ``raws``: each event's original JSON, for the DLQ; None means the record is a
        batch of exactly these events (read again only if one is rejected).
        """
        times = [event.occurred_at for event in events]
        watermark = state.watermark[USES_CODE]
        newest = max(times)
        oldest = min(times)
        # In time if the oldest event is within the lateness of the largest watermark any
        # event of the batch can see; otherwise check event by event, in order.
        if (oldest < max(watermark, newest) - self.lateness_ms
                or newest > now_ms + self.future_ms):
            if raws is None:
                raws = _RAW_ELEMENTS.decode(value)
            events, times = self._drop_late_and_future(state, offset, events, raws, now_ms)
            if not events:
                return
            newest = max(times)
            oldest = min(times)
        dedupe = state.dedupe[USES_CODE]
        fresh = dedupe.add_batch([_hash64(event.event_id.encode()) for event in events], times)
        counted_events = list(compress(events, fresh))
        base_ms = self.base_ms
        _count_elements(state.cells, [(event.track_id, event.use,
                                       event.occurred_at - event.occurred_at % base_ms)
                                      for event in counted_events])
        if oldest // base_ms == newest // base_ms:
            state.bases.add(oldest - oldest % base_ms)
        else:
            state.bases.update({time - time % base_ms for time in times})
        if newest > watermark:
            state.watermark[USES_CODE] = newest
            dedupe.advance(newest)
        counted = len(counted_events)
        state.unflushed_events += counted
        hot = self.metrics.hot
        hot.events_counted += counted
        hot.duplicates += len(events) - counted

    def _count_one(self, state: PartitionState, offset: int, value: bytes, event: SoundUsed,
                   now_ms: int) -> None:
        """``_count`` for a single-event record, without a batch's lists and numpy probe."""
        occurred_at = event.occurred_at
        watermark = state.watermark[USES_CODE]
        if occurred_at < watermark - self.lateness_ms or occurred_at > now_ms + self.future_ms:
            self._drop_late_and_future(state, offset, [event], [value], now_ms)
            return
        dedupe = state.dedupe[USES_CODE]
        hot = self.metrics.hot
        if not dedupe.add_digest(_hash64(event.event_id.encode()), occurred_at):
            hot.duplicates += 1
            return
        base = occurred_at - occurred_at % self.base_ms
        cells = state.cells
        key = (event.track_id, event.use, base)
        cells[key] = cells.get(key, 0) + 1
        state.bases.add(base)
        if occurred_at > watermark:
            state.watermark[USES_CODE] = occurred_at
            dedupe.advance(occurred_at)
        state.unflushed_events += 1
        hot.events_counted += 1

    def _drop_late_and_future(
        self, state: PartitionState, offset: int, events: list[SoundUsed], raws: list[Any],
        now_ms: int,
    ) -> tuple[list[SoundUsed], list[int]]:
        """Reject late and future events one by one; the watermark moves as they pass."""
        topic = self.settings.uses_topic
        watermark = state.watermark[USES_CODE]
        future_after = now_ms + self.future_ms
        kept: list[SoundUsed] = []
        for event, raw in zip(events, raws, strict=True):
            occurred_at = event.occurred_at
            if occurred_at < watermark - self.lateness_ms:
                rejected = Rejected("late", "occurred_at", f"{occurred_at} is older than the "
                                    f"watermark {watermark} minus the allowed lateness")
            elif occurred_at > future_after:
                rejected = Rejected("future", "occurred_at", f"{occurred_at} is more than "
                                    f"{self.future_ms} ms ahead of the wall clock {now_ms}")
            else:
                kept.append(event)
                watermark = max(watermark, occurred_at)
                continue
            self._reject(state, topic, offset, bytes(raw), rejected)
        return kept, [event.occurred_at for event in kept]

    def handle_track(self, state: PartitionState, offset: int, value: bytes | None,
                     now_ms: int) -> int:
        """Apply a ``tracks.created`` record to the catalog; return 1 if it was an event."""
        if offset < state.next_offset[TRACKS_CODE]:
            self.metrics.replayed_records.inc()
            return 0
        state.next_offset[TRACKS_CODE] = offset + 1
        if not self._size_ok(state, self.settings.tracks_topic, offset, value):
            return 0
        assert value is not None
        parsed = decode_track_created(value)
        if parsed is None:
            checked = self._track_checked(state, offset, value)
            if type(checked) is int:
                return checked
            parsed = checked  # type: ignore[assignment]
        event_id, track_id, occurred_at, meta = parsed
        if occurred_at > now_ms + self.future_ms:
            self._reject(state, self.settings.tracks_topic, offset, value, Rejected(
                "future", "occurred_at", f"{occurred_at} is more than {self.future_ms} ms "
                f"ahead of the wall clock {now_ms}"))
            return 1
        hot = self.metrics.hot
        hot.events_tracks += 1
        dedupe = state.dedupe[TRACKS_CODE]
        if not dedupe.add_digest(_hash64(event_id.encode()), occurred_at):
            hot.duplicates += 1
            return 1
        if occurred_at > state.watermark[TRACKS_CODE]:
            state.watermark[TRACKS_CODE] = occurred_at
            dedupe.advance(occurred_at)
        plan = plan_for(meta)
        previous = known_plan(state.catalog_writes, self.cache, track_id)
        if previous is not None:
            if previous != plan:  # equal plans: the same attribution, nothing to seal
                self._seal(state, track_id, previous)
        elif state.cells:
            # Earlier uses may belong to metadata we no longer cache (restart, eviction):
            # the flusher reads it from Redis before this replacement is written there.
            earlier = {key: state.cells.pop(key) for key in self._cells_of(state, track_id)}
            if earlier:
                state.needs_old_meta[track_id] = (earlier, meta)
        if track_id in state.pending:
            self._resolve(state, track_id, plan)
        self.cache.put(track_id, plan)
        state.catalog_writes[track_id] = meta
        state.unflushed_events += 1
        return 1

    def _track_checked(self, state: PartitionState, offset: int, value: bytes
                       ) -> tuple[str, str, int, TrackMeta] | int:
        """The slow path: orjson and the reference rules name the problem of a record
        the fast path declined. After rejecting it, the number of events it carried:
        0 if it is not JSON, else 1."""
        topic = self.settings.tracks_topic
        decoded = self._decode(state, topic, offset, value)
        if decoded is _REJECTED:
            return 0
        try:
            return parse_track_created(decoded)
        except Rejected as rejected:
            self._reject(state, topic, offset, value, rejected)
            return 1

    @staticmethod
    def _cells_of(state: PartitionState, track_id: str) -> list[tuple[str, str, int]]:
        cells = state.cells
        return [key for base in state.bases for use in USES
                if (key := (track_id, use, base)) in cells]

    def _seal(self, state: PartitionState, track_id: str, previous: Plan) -> None:
        """Attribute this track's unflushed uses with the metadata they were counted under."""
        for key in self._cells_of(state, track_id):
            _, use, base_start = key
            uses = state.cells.pop(key)
            count_track_uses(state.sealed, self.windows, track_id, use, base_start, uses)
            attribute_uses(state.sealed, self.windows, previous, use, base_start, uses)

    def _resolve(self, state: PartitionState, track_id: str, plan: Plan) -> None:
        """Attribute uses that waited for this track's metadata (rule 5), at once.

        Not at the next flush: by then the cache may have evicted the metadata, and the
        pending uses would expire to ``_unattributed`` although their track came in time.
        """
        for (use, base_start), uses in state.pending.pop(track_id).items():
            attribute_uses(state.sealed, self.windows, plan, use, base_start, uses)
        state.pending_dirty.add(track_id)

    def _reject(self, state: PartitionState, topic: str, offset: int, value: bytes,
                rejected: Rejected) -> None:
        state.rejections.append(
            Rejection(topic, state.partition, offset, value, rejected.reason, rejected.code)
        )
        self.metrics.rejected.labels(reason=rejected.code).inc()
