"""The use-event hot path against a plain, event-by-event model of its rules.

``RecordProcessor.handle_uses`` works on whole batches (msgspec, C iterators, numpy
lateness, the dedupe table's vectorised probe). This model reads each record with
orjson, checks each event with the reference rules (``parse_sound_used``), then walks
the valid ones in order: a closed day, then the watermark minus the allowed lateness,
then the future tolerance (the watermark moving as in-time events pass), then a plain
set of event ids, then one count per (track, use, base window, country). Records mix
valid, invalid, duplicate, late, closed-day and future events, as batches and single
events; counts, rejections (bytes, code and reason, in order) and the watermark must
agree.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.config import Settings
from streamer.events.schema_rules import Rejected, parse_sound_used
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_bytes
from streamer.pipeline.processor import RecordProcessor
from streamer.state.catalog import CatalogCache
from streamer.state.partition import USES_CODE, PartitionState

NOW = 1_700_000_000_000
MINUTE = 60_000
START_WATERMARK = NOW - MINUTE
CLOSED_BEFORE = NOW - 90_000  # a "closed day" ending inside the in-time range

# Event times: in time (within the dedupe horizon of every watermark reached), in the
# closed day, far behind the watermark, and beyond the future tolerance.
TIMES = st.one_of(
    st.integers(NOW - 2 * MINUTE, NOW + MINUTE),
    st.integers(NOW - 2 * MINUTE, CLOSED_BEFORE - 1),
    st.integers(NOW - 5 * 3_600_000, NOW - 2 * 3_600_000),
    st.integers(NOW + 6 * MINUTE, NOW + 60 * MINUTE),
)

BREAKAGES: list[tuple[str, Any]] = [
    ("country", "de"), ("country", "DEU"), ("country", "D1"), ("country", 5),
    ("country", None), ("country", "É1"), ("track_id", "bad id!"), ("track_id", 7),
    ("use", "skip"), ("occurred_at", -1), ("occurred_at", "x"), ("event_id", ""),
    ("user_id", None), ("video_id", ""), ("app", {"v": [1, 2.5]}),  # the last: valid
]


@st.composite
def events(draw: st.DrawFn) -> object:
    event: dict[str, Any] = {
        "event_id": f"e{draw(st.integers(0, 40))}",  # a small pool: duplicates
        "track_id": f"trk-{draw(st.integers(0, 5))}",
        "occurred_at": draw(TIMES),
        "user_id": "u1",
        "use": draw(st.sampled_from(["play", "create"])),
        "country": draw(st.sampled_from(["DE", "FR", "US"])),
    }
    if draw(st.booleans()):
        event["video_id"] = "v1"
    kind = draw(st.integers(0, 9))
    if kind == 0:
        field, value = draw(st.sampled_from(BREAKAGES))
        if value is None:
            event.pop(field, None)
        else:
            event[field] = value
    elif kind == 1 and draw(st.booleans()):
        return draw(st.sampled_from([7, "x", [1]]))  # not an object
    return event


RECORDS = st.lists(st.tuples(st.booleans(), st.lists(events(), min_size=1, max_size=14)),
                   min_size=1, max_size=6)


class Model:
    """The rules event by event, with nothing of the hot path's code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watermark = START_WATERMARK
        self.seen: set[str] = set()
        self.cells: dict[tuple[str, str, int, str], int] = {}
        self.rejections: list[tuple[int, bytes, str, str]] = []

    def reject(self, offset: int, raw: bytes, code: str, detail: str) -> None:
        rejected = Rejected(code, "occurred_at", detail)
        self.rejections.append((offset, raw, rejected.code, rejected.reason))

    def record(self, offset: int, elements: list[tuple[object, bytes]]) -> None:
        valid = []
        for obj, raw in elements:
            try:
                event_id, track_id, occurred_at, use = parse_sound_used(obj)
            except Rejected as rejected:
                self.rejections.append((offset, raw, rejected.code, rejected.reason))
                continue
            assert isinstance(obj, dict)
            valid.append((event_id, track_id, occurred_at, use, obj["country"], raw))
        lateness = self.settings.allowed_lateness_ms
        future_ms = self.settings.future_tolerance_ms
        for event_id, track_id, occurred_at, use, country, raw in valid:
            if occurred_at < CLOSED_BEFORE:
                self.reject(offset, raw, "late", f"{occurred_at} is in a day this partition "
                            f"has closed (before {CLOSED_BEFORE})")
            elif occurred_at < self.watermark - lateness:
                self.reject(offset, raw, "late", f"{occurred_at} is older than the watermark "
                            f"{self.watermark} minus the allowed lateness")
            elif occurred_at > NOW + future_ms:
                self.reject(offset, raw, "future", f"{occurred_at} is more than {future_ms} "
                            f"ms ahead of the wall clock {NOW}")
            else:
                self.watermark = max(self.watermark, occurred_at)
                if event_id in self.seen:
                    continue
                self.seen.add(event_id)
                base = occurred_at - occurred_at % self.settings.windows[0][1]
                key = (track_id, use, base, country)
                self.cells[key] = self.cells.get(key, 0) + 1


@settings(max_examples=400, deadline=None)
@given(RECORDS)
def test_handle_uses_matches_the_event_by_event_rules(
        records: list[tuple[bool, list[object]]]) -> None:
    config = Settings()
    processor = RecordProcessor(config, CatalogCache(400_000, plan_bytes), Metrics())
    state = PartitionState(partition=0, owner="w", seq=0,
                           dedupe_horizon_ms=config.dedupe_horizon_ms)
    state.advance_watermark(USES_CODE, START_WATERMARK)
    state.seal_days_before(CLOSED_BEFORE)
    model = Model(config)
    for offset, (single, objs) in enumerate(records):
        raws = [orjson.dumps(obj) for obj in objs]
        if single and not isinstance(objs[0], list):  # a list would be a batch
            value = raws[0]
            model.record(offset, [(objs[0], value)])
        else:
            value = b"[" + b",".join(raws) + b"]"
            model.record(offset, list(zip(objs, raws, strict=True)))
        processor.handle_uses(state, offset, value, NOW)
    got = [(r.offset, r.value, r.code, r.reason) for r in state.take_rejections()]
    assert got == model.rejections
    assert state.cells == model.cells
    assert state.watermark[USES_CODE] == model.watermark
    assert state.unflushed_events == sum(model.cells.values())
