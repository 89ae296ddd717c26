"""Duplicates, late and future events, and invalid input, through a real worker process.

Rules 6-8 of the pipeline spec (issue 3): a duplicate event_id within the horizon is not
counted again (also after a crash and restart); late and future events and every kind
of invalid input go to the dead-letter topic with the original bytes (a bad batch
element as its own JSON) and headers ``reason``/``source_topic``/``source_partition``/
``source_offset``; the rest of a batch counts and the worker keeps running.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from support.metrics_text import metric_value
from support.pipeline import (
    MINUTE,
    WINDOWS,
    now_ms,
    past_hour_start,
    right,
    send_single,
    track_event,
    use_event,
)

from streamer.verify import GroundTruth, compare

USES = ("create", "play")




def assert_reconciled(truth: GroundTruth, actual: dict[tuple[Any, ...], int]) -> None:
    result = compare(truth.expected(), actual)
    print(result.summary())
    assert result.ok, str(result)


# ---------------------------------------------------------------------------------------


async def test_duplicates_not_counted_within_horizon_and_across_restart(
        make_pipeline: Any) -> None:
    pipe = await make_pipeline()
    worker = await pipe.start_worker()
    truth = GroundTruth(WINDOWS)
    rng = random.Random(11)
    t0 = past_hour_start(15 * MINUTE) + 2 * MINUTE
    tracks = ["dd-a", "dd-b", "dd-c"]
    async with pipe.producer(batch_events=50, linger_ms=20) as producer:
        for track in tracks:
            event = track_event(track, t0, rights=[right("label-d", "master", "0.4")])
            await producer.send_track(event)
            truth.track_created(event)
    await pipe.drained()

    originals = [use_event(rng.choice(tracks), rng.choice(USES), t0 + rng.randrange(60_000))
                 for _ in range(300)]
    async with pipe.producer(batch_events=50, linger_ms=20) as producer:
        for index, event in enumerate(originals):
            if index % 5 == 0:
                await send_single(producer, event)
            else:
                await producer.send_use(event)
            truth.use(event)
            if index % 10 == 3:  # an immediate duplicate, in the same or the next batch
                await producer.send_use(dict(event))
            if index % 25 == 7:  # a duplicate as its own record
                await send_single(producer, dict(event))
    await pipe.drained()
    assert_reconciled(truth, await pipe.counters())

    # Crash (no graceful flush needed: everything above was flushed), restart, and send
    # the same event ids again: the restarted worker loads the dedupe state from Redis.
    worker.kill()
    worker = await pipe.start_worker("worker-restarted")
    again = rng.sample(originals, 100)
    fresh = [use_event(rng.choice(tracks), rng.choice(USES), t0 + rng.randrange(60_000))
             for _ in range(40)]
    # Same event_id with a different payload is still the same event.
    changed = dict(originals[0], use="play" if originals[0]["use"] == "create" else "create")
    async with pipe.producer(batch_events=50, linger_ms=20) as producer:
        for index, event in enumerate(again):
            if index % 4 == 0:
                await send_single(producer, dict(event))
            else:
                await producer.send_use(dict(event))
        await send_single(producer, changed)
        for event in fresh:
            await producer.send_use(event)
            truth.use(event)
    await pipe.drained()
    assert_reconciled(truth, await pipe.counters())

    status, text = await worker.get("/metrics")
    assert status == 200
    assert metric_value(text, "streamer_duplicates_total") == len(again) + 1
    assert worker.alive


@dataclass
class Expected:
    topic: str
    partition: int
    offset: int
    code: str
    field: str | None
    value: bytes | None = None  # whole record
    element: Any = None  # one batch element, compared as JSON


async def test_late_future_and_invalid_inputs_go_to_dlq(make_pipeline: Any) -> None:
    pipe = await make_pipeline(STREAMER_ALLOWED_LATENESS="10m")
    worker = await pipe.start_worker()
    truth = GroundTruth(WINDOWS, allowed_lateness_ms=10 * MINUTE)
    rng = random.Random(13)
    # At least 15 minutes old whatever the minute of the hour (the "valid" uses reach
    # t0 + 1 minute; the worker refuses uses over 5 minutes ahead as future), with room
    # for the late ones 20 minutes before it in the same hour.
    t0 = past_hour_start(35 * MINUTE) + 20 * MINUTE
    assert t0 + MINUTE <= now_ms() - 14 * MINUTE
    track = "rj-a"
    part = pipe.partition_for(track)
    expected: list[Expected] = []
    uses_topic, tracks_topic = pipe.uses_topic, pipe.tracks_topic

    def good_track(**changes: Any) -> dict[str, Any]:
        event = track_event(track, t0, genre="lofi", rights=[
            right("label-r", "master", "0.5"), right("pub-r", "publishing", 0.25)])
        event.update(changes)
        return event

    def good_use(**changes: Any) -> dict[str, Any]:
        event = use_event(track, rng.choice(USES), t0 + rng.randrange(60_000))
        event.update(changes)
        return event

    async with pipe.raw_producer() as raw:

        async def reject(topic: str, value: bytes | None, code: str, field: str | None) -> None:
            partition, offset = await raw.send(topic, value, key=track, partition=part)
            expected.append(Expected(topic, partition, offset, code, field, value=value))

        async def reject_json(topic: str, obj: Any, code: str, field: str | None) -> None:
            await reject(topic, orjson.dumps(obj), code, field)

        # --- TrackCreated: one valid, the rest rejected -----------------------------
        valid_track = good_track()
        await raw.send_json(tracks_topic, valid_track, key=track, partition=part)
        truth.track_created(valid_track)
        missing_genre = good_track()
        del missing_genre["genre"]
        await reject(tracks_topic, b'{"event_id": "x", ', "not_json", None)
        await reject_json(tracks_topic, missing_genre, "missing_field", "genre")
        await reject_json(tracks_topic, good_track(ai_origin="robot"), "invalid_value",
                          "ai_origin")
        await reject_json(tracks_topic, good_track(rights="all of it"), "wrong_type", "rights")
        await reject_json(tracks_topic, good_track(occurred_at=str(t0)), "wrong_type",
                          "occurred_at")
        await reject_json(tracks_topic, good_track(rights=[
            right("a", "master", "0.6"), right("b", "master", 0.5)]), "bad_share", "rights")
        for share in ("0.1234567", 0.1234567, 0, "0", "-0.5", "1.5", True, "abc"):
            await reject_json(tracks_topic, good_track(rights=[right("a", "master", share)]),
                              "bad_share", "rights[0].share")
        await reject_json(tracks_topic, good_track(rights=[right("a", "mechanical", "0.5")]),
                          "invalid_value", "rights[0].right")
        await reject_json(tracks_topic, good_track(occurred_at=now_ms() + 3_600_000),
                          "future", "occurred_at")

        # --- SoundUsed: valid batches and singles count ------------------------------
        valid = [good_use() for _ in range(200)]
        for start in range(0, 180, 60):
            batch = valid[start:start + 60]
            await raw.send_json(uses_topic, batch, key=track, partition=part)
        for event in valid[180:]:
            await raw.send_json(uses_topic, event, key=track, partition=part)
        for event in valid:
            truth.use(event)

        # --- invalid single-event records -------------------------------------------
        no_country = good_use()
        del no_country["country"]
        await reject(uses_topic, b"not json at all", "not_json", None)
        await reject(uses_topic, b"42", "not_object", None)
        await reject(uses_topic, None, "empty_record", None)
        await reject(uses_topic, b"[]", "empty_batch", None)
        await reject_json(uses_topic, good_use(occurred_at=str(t0)), "wrong_type", "occurred_at")
        await reject_json(uses_topic, good_use(occurred_at=1.5e12), "wrong_type", "occurred_at")
        await reject_json(uses_topic, good_use(user_id=7), "wrong_type", "user_id")
        await reject_json(uses_topic, no_country, "missing_field", "country")
        await reject_json(uses_topic, good_use(use="like"), "invalid_value", "use")
        await reject_json(uses_topic, good_use(country="de"), "invalid_value", "country")
        await reject_json(uses_topic, good_use(event_id="e" * 129), "invalid_value", "event_id")
        await reject_json(uses_topic, good_use(track_id="bad id"), "invalid_value", "track_id")
        await reject_json(uses_topic, good_use(occurred_at=now_ms() + 3_600_000), "future",
                          "occurred_at")

        # --- whole-record limits -----------------------------------------------------
        # 10,001 elements (9,000 of them valid events) in under 1 MiB: none may count.
        over_count: list[dict[str, Any]] = [
            {"event_id": f"b{i}", "track_id": track, "occurred_at": t0 + 1, "user_id": "u",
             "use": "play", "country": "DE"} for i in range(9_000)]
        over_count += [{} for _ in range(1_001)]
        over_count_bytes = orjson.dumps(over_count)
        assert len(over_count_bytes) < 1 << 20
        await reject(uses_topic, over_count_bytes, "batch_too_large", None)

        # --- a batch with some bad elements: only those go to the DLQ ----------------
        ok_1, ok_2, ok_3 = good_use(), good_use(), good_use()
        missing_use = good_use()
        del missing_use["use"]
        bad_elements = [
            (missing_use, "missing_field", "use"),
            (good_use(occurred_at="soon"), "wrong_type", "occurred_at"),
            (good_use(occurred_at=now_ms() + 3_600_000), "future", "occurred_at"),
            ("just a string", "not_object", None),
            (good_use(video_id=""), "invalid_value", "video_id"),
        ]
        mixed = [ok_1, bad_elements[0][0], ok_2, bad_elements[1][0], bad_elements[2][0],
                 bad_elements[3][0], ok_3, dict(ok_1), bad_elements[4][0]]
        partition, offset = await raw.send_json(uses_topic, mixed, key=track, partition=part)
        for element, code, field in bad_elements:
            expected.append(Expected(uses_topic, partition, offset, code, field,
                                     element=element))
        for event in (ok_1, ok_2, ok_3):
            truth.use(event)

    await pipe.drained()

    # --- late events, once the partition's watermark is known -----------------------
    async with pipe.raw_producer() as raw:
        late_single = good_use(occurred_at=t0 - 20 * MINUTE)
        partition, offset = await raw.send_json(uses_topic, late_single, key=track,
                                                partition=part)
        expected.append(Expected(uses_topic, partition, offset, "late", "occurred_at",
                                 value=orjson.dumps(late_single)))
        late_element = good_use(occurred_at=t0 - 11 * MINUTE)
        on_time = good_use(occurred_at=t0 - 9 * MINUTE + 60_000)
        partition, offset = await raw.send_json(uses_topic, [late_element, on_time], key=track,
                                                partition=part)
        expected.append(Expected(uses_topic, partition, offset, "late", "occurred_at",
                                 element=late_element))
        truth.use(on_time)
    await pipe.drained()

    # --- the dead-letter topic holds exactly the rejections ----------------------------
    records = await pipe.dlq()
    problems = []
    unmatched = list(records)
    for want in expected:
        candidates = [r for r in unmatched
                      if r.source == (want.topic, want.partition, want.offset)]
        if want.element is not None:
            candidates = [r for r in candidates if orjson.loads(r.value) == want.element]
        else:
            candidates = [r for r in candidates if r.value == (want.value or b"")]
        if len(candidates) != 1:
            problems.append(f"{want.code}/{want.field} at {want.topic}[{want.partition}]@"
                            f"{want.offset}: {len(candidates)} matching DLQ records")
            continue
        record = candidates[0]
        unmatched.remove(record)
        reason = record.reason
        if not reason.startswith(want.code) or (
                want.field is not None and want.field not in reason):
            problems.append(f"{want.code}/{want.field}: DLQ reason is {reason!r}")
    for record in unmatched:
        problems.append(f"unexpected DLQ record {record.reason!r} from {record.source}")
    reconciliation = compare(truth.expected(), await pipe.counters())
    print(reconciliation.summary())
    assert not problems, "\n".join(problems)
    assert reconciliation.ok, str(reconciliation)
    assert worker.alive
    status, body = await worker.get("/v1/health")
    assert status == 200, body


@pytest.mark.parametrize("case", ["over_1mib", "invalid_near_1mib", "small_dlq_topic"])
async def test_large_rejected_record_reaches_dlq_and_counting_goes_on(
        make_pipeline: Any, case: str) -> None:
    """A rejected record near or over the 1 MiB limit still reaches the DLQ whole.

    ``over_1mib``: the input topics accept 3 MiB records (as a deployment must for the worker
    to ever see one); a 1.6 MiB batch is rejected whole as record_too_large.
    ``invalid_near_1mib``: default input topic settings; a 1,048,400-byte record that is not
    JSON (Kafka accepts it, the worker's size limit too) is rejected as not_json; with the
    DLQ headers the dead letter is larger than the record was. Either way the records around
    it count. In these two the worker creates the dead-letter topic itself, as in a deployment.
    ``small_dlq_topic``: the dead-letter topic exists already and takes at most 100 kB; a
    300 kB invalid record cannot go there whole. It may go there cut short, flagged with a
    ``truncated_from_bytes`` header, but the worker must neither crash nor stall.
    """
    if case == "over_1mib":
        pipe = await make_pipeline(topic_config={"max.message.bytes": str(3 << 20)},
                                   create_dlq=False)
    elif case == "invalid_near_1mib":
        pipe = await make_pipeline(create_dlq=False)
    else:
        pipe = await make_pipeline(dlq_topic_config={"max.message.bytes": "100000"})
    worker = await pipe.start_worker()
    truth = GroundTruth(WINDOWS)
    rng = random.Random(17)
    t0 = past_hour_start(15 * MINUTE) + 3 * MINUTE
    track = "big-a"
    part = pipe.partition_for(track)

    def good_use(**changes: Any) -> dict[str, Any]:
        event = use_event(track, rng.choice(USES), t0 + rng.randrange(60_000))
        event.update(changes)
        return event

    if case == "over_1mib":
        payload = orjson.dumps([good_use(video_id=f"v{i}", user_id="u-" + "x" * 200)
                                for i in range(5_000)])
        assert (1 << 20) < len(payload) < (3 << 20) - 4096
        reason = "record_too_large"
    elif case == "invalid_near_1mib":
        payload = b"x" * 1_048_400
        reason = "not_json"
    else:
        payload = b"{" * 300_000
        reason = "not_json"
    before = [good_use() for _ in range(50)]
    after = [good_use() for _ in range(50)]
    async with pipe.raw_producer() as raw:
        metadata = track_event(track, t0, rights=[right("label-b", "master", "0.5")])
        await raw.send_json(pipe.tracks_topic, metadata, key=track, partition=part)
        truth.track_created(metadata)
        await pipe.drained()
        await raw.send_json(pipe.uses_topic, before, key=track, partition=part)
        source = await raw.send(pipe.uses_topic, payload, key=track, partition=part)
        await raw.send_json(pipe.uses_topic, after, key=track, partition=part)
    for event in before + after:
        truth.use(event)
    await pipe.drained()

    records = await pipe.dlq()
    reconciliation = compare(truth.expected(), await pipe.counters())
    print(reconciliation)
    assert reconciliation.ok, str(reconciliation)
    assert [(r.source, r.reason.split(":")[0]) for r in records] == [
        ((pipe.uses_topic, *source), reason)], (
        "the rejected record is not in the DLQ (the offset moved past it anyway)")
    (record,) = records
    if case == "small_dlq_topic" and record.value != payload:
        assert record.headers.get("truncated_from_bytes") == str(len(payload)), record.headers
        assert payload.startswith(record.value) and record.value
    else:
        assert len(record.value) == len(payload)
        assert record.value == payload
    assert worker.alive
