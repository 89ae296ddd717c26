"""The hot path: one Kafka record in, counted cells or named rejections out.

Nothing here awaits: a record is decoded, each event validated, checked against
lateness, the future and the dedupe set, and added to the partition's in-memory
cells. Redis and the dead-letter topic are dealt with by the caller (the agent and
the flusher), batched.

A valid ``sounds.used`` record takes the fast path: msgspec decodes and checks it
whole, and each later step works on the batch with C iterators (map, zip, compress)
and numpy rather than one Python loop per event. A record holding a bad event (or
none at all) takes the slow path of events/decoding.py, which rejects exactly the bad
events with their reasons. A ``tracks.created`` record likewise:
``decode_track_created`` (msgspec) or, when it declines, orjson and the reference
rules, which name the problem.

The partition's state changes only through its own methods (state/partition.py).
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import attrgetter
from typing import Any

import numpy as np
import xxhash

from streamer.config import Settings
from streamer.events.decoding import (
    RAW_ELEMENTS,
    RejectedRecord,
    batch_size_rejection,
    check_track,
    check_uses,
)
from streamer.events.validation import (
    Rejected,
    SoundUsed,
    decode_track_created,
    decode_uses,
)
from streamer.metrics import Metrics
from streamer.pipeline.attribution import (
    attribute_uses,
    build_plan,
    count_track_uses,
    plan_for,
)
from streamer.state.catalog import CatalogCache, Plan
from streamer.state.deltas import CounterDeltas
from streamer.state.partition import TRACKS_CODE, USES_CODE, PartitionState, Rejection

_hash64 = xxhash.xxh3_64_intdigest
_encode = str.encode
_event_id_of = attrgetter("event_id")
_track_of = attrgetter("track_id")
_time_of = attrgetter("occurred_at")
_use_of = attrgetter("use")
_country_of = attrgetter("country")


class RecordProcessor:
    def __init__(self, settings: Settings, cache: CatalogCache, metrics: Metrics) -> None:
        self.settings = settings
        self.cache = cache
        self.metrics = metrics
        self.windows = settings.windows
        self.territory = settings.territory
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

    def handle_uses(self, state: PartitionState, offset: int, value: bytes | None,
                    now_ms: int) -> int:
        """Count a ``sounds.used`` record; return the number of events it carried."""
        if not state.take_offset(USES_CODE, offset):
            self.metrics.replayed_records.inc()
            return 0
        if not self._size_ok(state, self.settings.uses_topic, offset, value):
            return 0
        assert value is not None
        decoded = decode_uses(value)
        if type(decoded) is list:
            carried = len(decoded)
            if not 0 < carried <= self.max_batch:
                self._reject(state, self.settings.uses_topic, offset, value,
                             batch_size_rejection(carried, self.max_batch))
                return 0
            self._count(state, offset, value, decoded, None, now_ms)
        elif type(decoded) is SoundUsed:
            carried = 1
            self._count_one(state, offset, value, decoded, now_ms)
        else:
            # The position of the first bad event, if the fast path knew it.
            first_bad = decoded if type(decoded) is int else None
            carried = self._count_checking_each(state, offset, value, now_ms, first_bad)
        self.metrics.hot.events_uses += carried
        return carried

    def _count_checking_each(self, state: PartitionState, offset: int, value: bytes,
                             now_ms: int, first_bad: int | None = None) -> int:
        """The slow path (events/decoding.py): reject exactly the bad events, count the
        valid ones around them."""
        checked = check_uses(value, self.max_batch, first_bad)
        topic = self.settings.uses_topic
        for raw, rejected in checked.rejected:
            self._reject(state, topic, offset, raw, rejected)
        if checked.events:
            if checked.single:
                self._count_one(state, offset, value, checked.events[0], now_ms)
            else:
                self._count(state, offset, value, checked.events, checked.raws, now_ms)
        return checked.carried

    def _count(self, state: PartitionState, offset: int, value: bytes,
               events: list[SoundUsed], raws: list[Any] | None, now_ms: int) -> None:
        """Lateness, the future, duplicates, then one cell increment per counted event.

        ``raws``: each event's original JSON, for the DLQ; None means the record is a
        batch of exactly these events (read again only if one is rejected).
        """
        times = list(map(_time_of, events))
        watermark = state.watermark[USES_CODE]
        newest = max(times)
        oldest = min(times)
        # In time if the oldest event is within the lateness of the largest watermark any
        # event of the batch can see; otherwise check event by event, in order.
        if (oldest < max(watermark, newest) - self.lateness_ms
                or newest > now_ms + self.future_ms or oldest < state.closed_before):
            if raws is None:
                raws = RAW_ELEMENTS.decode(value)
            events, times = self._drop_late_and_future(state, offset, events, raws, now_ms)
            if not events:
                return
            newest = max(times)
            oldest = min(times)
        # Each step below is one pass of C iterators over the batch (map, zip,
        # compress): no Python bytecode runs per event.
        dedupe = state.dedupe[USES_CODE]
        fresh = dedupe.add_batch(list(map(_hash64, map(_encode, map(_event_id_of, events)))),
                                 times)
        base_ms = self.base_ms
        if False in fresh:
            events = list(compress(events, fresh))
            times = list(compress(times, fresh))
        counted = len(events)
        if oldest // base_ms == newest // base_ms:
            bases: Any = (oldest - oldest % base_ms,)
            starts: Any = repeat(bases[0], counted)
        else:
            starts = [time - time % base_ms for time in times]
            bases = set(starts)
        if counted:
            state.count_uses(zip(map(_track_of, events), map(_use_of, events), starts,
                                 map(_country_of, events), strict=True),
                             bases, set(map(_country_of, events)), newest, counted)
        else:
            state.advance_watermark(USES_CODE, newest)
        hot = self.metrics.hot
        hot.events_counted += counted
        hot.duplicates += len(fresh) - counted

    def _count_one(self, state: PartitionState, offset: int, value: bytes, event: SoundUsed,
                   now_ms: int) -> None:
        """``_count`` for a single-event record, without a batch's lists and numpy probe."""
        occurred_at = event.occurred_at
        watermark = state.watermark[USES_CODE]
        if (occurred_at < watermark - self.lateness_ms or occurred_at > now_ms + self.future_ms
                or occurred_at < state.closed_before):
            rejected = self._lateness(occurred_at, watermark, state.closed_before, now_ms)
            assert rejected is not None
            self._reject(state, self.settings.uses_topic, offset, value, rejected)
            return
        dedupe = state.dedupe[USES_CODE]
        hot = self.metrics.hot
        if not dedupe.add_digest(_hash64(event.event_id.encode()), occurred_at):
            hot.duplicates += 1
            return
        state.count_use((event.track_id, event.use, occurred_at - occurred_at % self.base_ms,
                         event.country), occurred_at)
        hot.events_counted += 1

    def _drop_late_and_future(
        self, state: PartitionState, offset: int, events: list[SoundUsed], raws: list[Any],
        now_ms: int,
    ) -> tuple[list[SoundUsed], list[int]]:
        """Reject late and future events; the watermark moves as the kept ones pass.

        As if event by event, in order, but in numpy: an event of a closed day or from
        the future never moves the watermark, and a late one cannot (it is below it),
        so the watermark each event sees is the running maximum of the earlier events
        that are neither closed nor future.
        """
        times = np.fromiter(map(_time_of, events), dtype=np.int64, count=len(events))
        closed = times < state.closed_before
        future = times > now_ms + self.future_ms
        moving = np.where(closed | future, np.int64(-1), times)
        seen = np.maximum(np.maximum.accumulate(moving), state.watermark[USES_CODE])
        # The watermark before each event: the running maximum up to the one before.
        before = np.concatenate(([state.watermark[USES_CODE]], seen[:-1]))
        late = times < before - self.lateness_ms
        dropped = closed | late | future
        if not dropped.any():
            return events, times.tolist()
        topic = self.settings.uses_topic
        for position in np.flatnonzero(dropped).tolist():
            rejected = self._lateness(events[position].occurred_at, int(before[position]),
                                      state.closed_before, now_ms)
            assert rejected is not None
            self._reject(state, topic, offset, bytes(raws[position]), rejected)
        kept = ~dropped
        return list(compress(events, kept.tolist())), times[kept].tolist()

    def _lateness(self, occurred_at: int, watermark: int, closed_before: int,
                  now_ms: int) -> Rejected | None:
        """Why an event seeing this watermark is late or from the future, if it is."""
        if occurred_at < closed_before:
            return Rejected("late", "occurred_at", f"{occurred_at} is in a day this "
                            f"partition has closed (before {closed_before})")
        if occurred_at < watermark - self.lateness_ms:
            return Rejected("late", "occurred_at", f"{occurred_at} is older than the "
                            f"watermark {watermark} minus the allowed lateness")
        if occurred_at > now_ms + self.future_ms:
            return Rejected("future", "occurred_at", f"{occurred_at} is more than "
                            f"{self.future_ms} ms ahead of the wall clock {now_ms}")
        return None

    def handle_track(self, state: PartitionState, offset: int, value: bytes | None,
                     now_ms: int) -> int:
        """Apply a ``tracks.created`` record to the catalog; return 1 if it was an event."""
        if not state.take_offset(TRACKS_CODE, offset):
            self.metrics.replayed_records.inc()
            return 0
        if not value or len(value) > self.max_record_bytes:  # _size_ok's cases, inline
            self._size_ok(state, self.settings.tracks_topic, offset, value)
            return 0
        parsed = decode_track_created(value)
        if parsed is None:
            checked = check_track(value)
            if isinstance(checked, RejectedRecord):
                self._reject(state, self.settings.tracks_topic, offset, value, checked.rejected)
                return checked.carried
            parsed = checked
        event_id, track_id, occurred_at, meta = parsed
        if occurred_at > now_ms + self.future_ms:
            self._reject(state, self.settings.tracks_topic, offset, value, Rejected(
                "future", "occurred_at", f"{occurred_at} is more than {self.future_ms} ms "
                f"ahead of the wall clock {now_ms}"))
            return 1
        hot = self.metrics.hot
        hot.events_tracks += 1
        if not state.dedupe[TRACKS_CODE].add_digest(_hash64(event_id.encode()), occurred_at):
            hot.duplicates += 1
            return 1
        state.advance_watermark(TRACKS_CODE, occurred_at)
        cache = self.cache
        # known_plan, inline: a call less per record.
        written = state.catalog_writes.get(track_id)
        previous = plan_for(written) if written is not None else cache.get(track_id)
        plan = meta.plan = build_plan(meta)  # plan_for, inline: a decoded meta has none
        if previous is not None:
            if previous != plan:  # equal plans: the same attribution, nothing to seal
                self._seal(state, track_id, previous)
        elif state.cells:
            # Earlier uses may belong to metadata we no longer cache (restart, eviction):
            # the flusher reads it from Redis before this replacement is written there.
            earlier = state.take_cells_of(track_id)
            if earlier:
                state.wait_for_old_meta(track_id, earlier, meta)
        if state.pending and track_id in state.pending:
            self._resolve(state, track_id, plan)
        cache.put(track_id, plan)
        state.write_catalog(track_id, meta)
        return 1

    def _seal(self, state: PartitionState, track_id: str, previous: Plan) -> None:
        """Attribute this track's unflushed uses with the metadata they were counted under."""
        sealed = CounterDeltas()
        for (_, use, base_start, country), uses in state.take_cells_of(track_id).items():
            count_track_uses(sealed, self.windows, track_id, use, base_start, uses,
                             country=country, territory=self.territory)
            attribute_uses(sealed, self.windows, previous, use, base_start, uses,
                           track_id=track_id, country=country, territory=self.territory)
        state.seal(sealed)

    def _resolve(self, state: PartitionState, track_id: str, plan: Plan) -> None:
        """Attribute uses that waited for this track's metadata (rule 5), at once.

        Not at the next flush: by then the cache may have evicted the metadata, and the
        pending uses would expire to ``_unattributed`` although their track came in time.
        """
        resolved = CounterDeltas()
        for (use, base_start, country), uses in (state.take_pending(track_id) or {}).items():
            attribute_uses(resolved, self.windows, plan, use, base_start, uses,
                           track_id=track_id, country=country, territory=self.territory)
        state.seal(resolved)

    def _reject(self, state: PartitionState, topic: str, offset: int, value: bytes,
                rejected: Rejected) -> None:
        state.reject(
            Rejection(topic, state.partition, offset, value, rejected.reason, rejected.code))
        self.metrics.rejected.labels(reason=rejected.code).inc()
