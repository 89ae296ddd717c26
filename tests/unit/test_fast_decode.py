"""The msgspec fast path accepts exactly what the reference rules accept.

``decode_sound_used`` decodes and checks a whole ``sounds.used`` record in C; when it
declines, the processor checks each event with ``parse_sound_used`` (the reference,
itself pinned to the JSON Schema by test_schema_parity.py). For generated valid and
mutated events, alone and inside batches, the two paths must count the same events
and reject the others with the reference's reasons.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_schema_parity import SOUND_OPTIONAL, SOUND_REQUIRED, mutate, valid_sounds

from streamer.config import Settings
from streamer.events.validation import Rejected, decode_sound_used, sound_used_of
from streamer.metrics import Metrics
from streamer.pipeline.processor import RecordProcessor
from streamer.state.catalog import CatalogCache
from streamer.state.partition import PartitionState

NOW = 1_700_000_000_000


def reference(obj: Any) -> Any:
    """The reference verdict: the SoundUsed, or the rejection code."""
    try:
        return sound_used_of(obj)
    except Rejected as rejected:
        return rejected.code


@settings(max_examples=600, deadline=None)
@given(valid_sounds, st.data())
def test_fast_decode_agrees_with_the_reference_rules(obj: dict[str, Any],
                                                     data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="mutated"):
        obj = mutate(data, obj, SOUND_REQUIRED | SOUND_OPTIONAL)
    if type(obj) is list:
        return  # a record that is an array is a batch: the next test's subject
    value = orjson.dumps(obj)
    expected = reference(orjson.loads(value))
    fast = decode_sound_used(value)
    if isinstance(expected, str):
        assert fast is None  # declined: the slow path names the problem
    elif fast is not None:  # it may decline a valid event (the slow path then counts it)
        assert fast == expected
        assert decode_sound_used(b"[" + value + b"]") == [expected]


def _processor() -> tuple[RecordProcessor, PartitionState]:
    settings_ = Settings()
    processor = RecordProcessor(settings_, CatalogCache(100), Metrics())
    return processor, PartitionState(0, "owner", 0, settings_.dedupe_horizon_ms)


def _use(n: int) -> dict[str, Any]:
    return {"event_id": f"neighbour-{n}", "track_id": "t1", "occurred_at": NOW - 1_000,
            "user_id": "u", "use": "play", "country": "DE"}


@settings(max_examples=300, deadline=None)
@given(st.lists(valid_sounds, min_size=1, max_size=6), st.data())
def test_batch_counts_and_rejects_like_the_reference(events: list[dict[str, Any]],
                                                     data: st.DataObject) -> None:
    """A batch mixing valid and invalid events: the valid ones count (each once), every
    invalid one goes to the DLQ as its own JSON with the reference's reason."""
    batch: list[Any] = [_use(0)]
    for n, obj in enumerate(events):
        obj["event_id"] = f"generated-{n}"  # distinct: duplicates are not the point here
        obj["occurred_at"] = NOW - 2_000 - n
        if data.draw(st.booleans(), label="mutated"):
            obj = mutate(data, obj, SOUND_REQUIRED | SOUND_OPTIONAL)
        batch.append(obj)
    batch.append(_use(1))
    verdicts = [reference(orjson.loads(orjson.dumps(obj))) for obj in batch]
    processor, state = _processor()
    lateness, future = processor.lateness_ms, processor.future_ms
    watermark = 0
    for index, verdict in enumerate(verdicts):  # rule 7, in record order
        if isinstance(verdict, str):
            continue
        if verdict.occurred_at < watermark - lateness:
            verdicts[index] = "late"
        elif verdict.occurred_at > NOW + future:
            verdicts[index] = "future"
        else:
            watermark = max(watermark, verdict.occurred_at)
    carried = processor.handle_uses(state, 0, orjson.dumps(batch), NOW)
    assert carried == len(batch)
    rejected = sorted((r.code, r.value) for r in state.rejections)  # order within a record:
    assert rejected == sorted((verdict, orjson.dumps(obj))           # free
                              for verdict, obj in zip(verdicts, batch, strict=True)
                              if isinstance(verdict, str))
    valid = [verdict for verdict in verdicts if not isinstance(verdict, str)]
    distinct_ids = {event.event_id for event in valid}
    assert state.unflushed_events == len(distinct_ids)
    assert sum(state.cells.values()) == len(distinct_ids)


@pytest.mark.parametrize("value", [
    b'{"event_id":"e","track_id":"t","occurred_at":1,"user_id":"u","use":"play",'
    b'"country":"DE","use":"bogus"}',  # a repeated key: the last one wins in both
    b'{"event_id":"e","track_id":"t","occurred_at":1,"user_id":"u","use":"bogus",'
    b'"country":"DE","use":"play"}',
    b'{"event_id":"e","track_id":"t","occurred_at":1e400,"user_id":"u","use":"play",'
    b'"country":"DE"}',
    b'{"event_id":"e","track_id":"t\\n","occurred_at":1,"user_id":"u","use":"play",'
    b'"country":"DE"}',
    b'{"event_id":"e","track_id":"t","occurred_at":1,"user_id":"u","use":"play",'
    b'"country":"DE\\n"}',
])
def test_edge_cases_agree(value: bytes) -> None:
    try:
        expected = reference(orjson.loads(value))
    except orjson.JSONDecodeError:
        expected = "not_json"
    fast = decode_sound_used(value)
    assert fast in ((None,) if isinstance(expected, str) else (None, expected))
    processor, state = _processor()
    processor.handle_uses(state, 0, value, NOW)
    codes = [r.code for r in state.rejections]
    assert codes == ([expected] if isinstance(expected, str) else [])
    assert state.unflushed_events == (0 if isinstance(expected, str) else 1)


@pytest.mark.parametrize("value", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"[" + orjson.dumps(_use(0)) + b"," + b"[" * 5_000 + b"]" * 5_000 + b"]",
])
def test_deeply_nested_records_are_rejected_not_raised(value: bytes) -> None:
    """The fault suite's fuzzer found it: msgspec raises RecursionError, not DecodeError,
    on deep nesting, which crashed the agent in a loop."""
    processor, state = _processor()
    processor.handle_uses(state, 0, value, NOW)
    assert state.rejections
    assert {r.code for r in state.rejections} <= {"not_json", "not_object", "empty_batch"}
    # Nesting beyond the JSON parsers' depth limit makes the whole record not JSON, as
    # it was before the fast path (orjson's limit is 1024 levels).
    assert state.unflushed_events == 0
