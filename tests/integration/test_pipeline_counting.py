"""Counting and attribution through real Kafka, a real worker process and real Redis.

Each test runs ``streamer worker`` subprocesses against its own topics and Redis prefix,
sends events, waits until Redis has counted every record, and checks the counters
against ``GroundTruth`` (computed independently of the pipeline) both in Redis and
through the HTTP query API. Rules of the pipeline spec (issue 3) covered here:
counting rules 1-5, metadata replacement, the query API's shapes, errors and zeros.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest
from support.pipeline import (
    HOUR,
    MINUTE,
    WINDOWS,
    Pipeline,
    http_expectations,
    past_hour_start,
    right,
    send_single,
    track_event,
    use_event,
)

from streamer.verify import GroundTruth, compare
from streamer.verify.worker_process import WorkerProcess

USES = ("create", "play")
RIGHTS = ("master", "publishing")
ORIGINS = ("human", "ai_assisted", "ai_generated")




async def send_uses(pipe: Pipeline, truth: GroundTruth | None, events: list[dict[str, Any]],
                    rng: random.Random, single_share: float = 0.2) -> None:
    """Send through UsageProducer: most in batch records, some as single-event records."""
    async with pipe.producer(batch_events=100, linger_ms=20) as producer:
        for event in events:
            if rng.random() < single_share:
                await send_single(producer, event)
            else:
                await producer.send_use(event)
            if truth is not None:
                truth.use(event)


async def send_tracks(pipe: Pipeline, truth: GroundTruth | None,
                      events: list[dict[str, Any]]) -> None:
    async with pipe.producer() as producer:
        for event in events:
            await producer.send_track(event)
            if truth is not None:
                truth.track_created(event)


def assert_reconciled(expected: dict[tuple[Any, ...], int],
                      actual: dict[tuple[Any, ...], int]) -> None:
    result = compare(expected, actual)
    print(result.summary())
    assert result.ok, str(result)


def assert_weights_add_up(actual: dict[tuple[Any, ...], int]) -> None:
    """Per window, right and use, the holders' weights add up to uses x 1,000,000."""
    uses: defaultdict[tuple[Any, ...], int] = defaultdict(int)
    weights: defaultdict[tuple[Any, ...], int] = defaultdict(int)
    for key, value in actual.items():
        if key[0] == "track":
            _, window, start, _, use = key
            for right_name in RIGHTS:
                uses[(window, start, right_name, use)] += value
        elif key[0] == "holder" and key[6] == "weighted_micro":
            _, window, start, _, right_name, use, _ = key
            weights[(window, start, right_name, use)] += value
    assert uses, "no track counters"
    assert {k: v * 1_000_000 for k, v in uses.items()} == dict(weights)


# ---------------------------------------------------------------------------------------


async def test_counting_attribution_and_query_api(make_pipeline: Any) -> None:
    """Rules 1-4: per track, per holder (exact weights, _unclaimed), per genre, trending
    with ai_share; batch and single-event records mixed; then a newer TrackCreated
    replaces a track's metadata for the uses after it."""
    pipe = await make_pipeline()
    worker = await pipe.start_worker()
    truth = GroundTruth(WINDOWS)
    rng = random.Random(3)
    hour = past_hour_start(15 * MINUTE)
    t0 = hour - 45_000  # uses span [hour - 45 s, hour + 45 s): two hours, several minutes
    tracks = [
        # master 0.75 claimed (float and string shares), publishing 0.333333 claimed
        track_event("ct-a", t0 - MINUTE, genre="lofi", ai_origin="human", rights=[
            right("label-1", "master", 0.5), right("label-2", "master", "0.25"),
            right("pub-1", "publishing", 0.333333)]),
        # fully claimed: integer share 1, two halves
        track_event("ct-b", t0 - MINUTE, genre="hyperpop", ai_origin="ai_generated", rights=[
            right("label-1", "master", 1), right("pub-1", "publishing", "0.5"),
            right("pub-2", "publishing", 0.5)]),
        # one micro-share; no publishing holder at all -> publishing wholly _unclaimed
        track_event("ct-c", t0 - MINUTE, genre="ambient", ai_origin="ai_assisted", rights=[
            right("label-3", "master", "0.000001")]),
        # 0.1 + 0.2 + 0.3 as JSON floats must stay exactly 600000; holder id with a '|'
        track_event("ct-d", t0 - MINUTE, genre="lofi", ai_origin="ai_generated", rights=[
            right("label|4", "master", 0.1), right("label-5", "master", 0.2),
            right("label-6", "master", 0.3), right("pub-3", "publishing", "0.7")]),
    ]
    await send_tracks(pipe, truth, tracks)
    await pipe.drained()  # metadata first, so every use below is attributed at once

    track_ids = ["ct-a", "ct-b", "ct-c", "ct-d"]
    weights = [5, 3, 2, 1]
    events = [use_event(rng.choices(track_ids, weights)[0], rng.choice(USES),
                        t0 + rng.randrange(90_000), user_id=f"u{rng.randrange(50)}")
              for _ in range(1500)]
    await send_uses(pipe, truth, events, rng)
    await pipe.drained()

    actual = await pipe.counters()
    assert_reconciled(truth.expected(), actual)
    assert_weights_add_up(actual)
    expected = truth.expected()
    exp = http_expectations(expected)

    # --- the query API, for windows on both sides of the hour boundary ---------------
    for at in (t0, hour + 30_000):
        for window, size in WINDOWS:
            start = at - at % size
            bounds = {"window": window, "start_ms": start, "end_ms": start + size}
            for track in ("ct-a", "ct-b", "ct-c", "ct-d"):
                status, body = await worker.get(f"/v1/tracks/{track}/usage",
                                                {"window": window, "at": at})
                assert status == 200, body
                assert body == {"track_id": track, **bounds, "uses": {
                    use: exp("track", window, start, track, use) for use in USES}}
            holders = ("label-1", "label-2", "label-3", "label|4", "label-5", "label-6",
                       "pub-1", "pub-2", "pub-3", "_unclaimed")
            for holder in holders:
                status, body = await worker.get(f"/v1/holders/{holder}/usage",
                                                {"window": window, "at": at})
                assert status == 200, body
                assert body == {"holder_id": holder, **bounds, "rights": {
                    right_name: {measure: {use: exp("holder", window, start, holder, right_name,
                                                    use, measure) for use in USES}
                                 for measure in ("uses", "weighted_micro")}
                    for right_name in RIGHTS}}
            for genre in ("lofi", "hyperpop", "ambient"):
                status, body = await worker.get(f"/v1/genres/{genre}/usage",
                                                {"window": window, "at": at})
                assert status == 200, body
                assert body == {"genre": genre, **bounds, "uses_by_origin": {
                    origin: {use: exp("genre", window, start, genre, origin, use)
                             for use in USES} for origin in ORIGINS}}
            meta = {"ct-a": ("lofi", "human"), "ct-b": ("hyperpop", "ai_generated"),
                    "ct-c": ("ambient", "ai_assisted"), "ct-d": ("lofi", "ai_generated")}
            creates = sorted((-exp("trending", window, start, t), t) for t in track_ids
                              if exp("trending", window, start, t))
            for limit in (2, 100):
                status, body = await worker.get("/v1/trending",
                                                {"window": window, "at": at, "limit": limit})
                assert status == 200, body
                listed = creates[:limit]
                items = [{"track_id": t, "creates": -c, "genre": meta[t][0],
                          "ai_origin": meta[t][1]} for c, t in listed]
                total = sum(-c for c, _ in listed)
                ai = sum(-c for c, t in listed if meta[t][1] in ("ai_assisted", "ai_generated"))
                assert body["items"] == items
                assert body["ai_share"] == pytest.approx(ai / total if total else 0.0)
                assert {k: v for k, v in body.items() if k not in ("items", "ai_share")} == bounds

    # A weighted_micro spot check written out by hand: label-5 holds 0.2 of ct-d's master.
    ct_d_plays = exp("track", "1d", t0 - t0 % 86_400_000, "ct-d", "play")
    assert exp("holder", "1d", t0 - t0 % 86_400_000, "label-5", "master", "play",
               "weighted_micro") == ct_d_plays * 200_000

    # --- a newer TrackCreated replaces ct-a's metadata for the uses after it ------------
    replacement = track_event("ct-a", t0, genre="ambient", ai_origin="ai_assisted", rights=[
        right("label-7", "master", "0.6"), right("pub-4", "publishing", "1")])
    await send_tracks(pipe, truth, [replacement])
    await pipe.drained()
    more = [use_event("ct-a", rng.choice(USES), t0 + rng.randrange(90_000)) for _ in range(300)]
    await send_uses(pipe, truth, more, rng)
    await pipe.drained()
    actual = await pipe.counters()
    assert_reconciled(truth.expected(), actual)
    day = t0 - t0 % 86_400_000
    after = http_expectations(truth.expected())
    # The uses span t0 + 90 s, which crosses midnight when the hour is 00:00 UTC.
    label_7_uses = 0
    for day_number in {t0 // 86_400_000, (t0 + 89_999) // 86_400_000}:
        status, body = await worker.get("/v1/holders/label-7/usage",
                                        {"window": "1d", "at": day_number * 86_400_000})
        assert status == 200
        label_7_uses += sum(body["rights"]["master"]["uses"].values())
    assert label_7_uses == 300
    assert after("holder", "1d", day, "label-1", "master", "play", "uses") == exp(
        "holder", "1d", day, "label-1", "master", "play", "uses")
    assert worker.alive


async def test_uses_before_track_created_pending_then_unattributed(make_pipeline: Any) -> None:
    """Rule 5: uses of a track without metadata count per track at once; holders and
    genre wait for the TrackCreated (also across a worker restart); without one within
    the allowed lateness they go to _unattributed and stay out of the genre counters;
    trending shows such tracks as _unknown / unknown."""
    pipe = await make_pipeline(STREAMER_ALLOWED_LATENESS="2m")
    worker = await pipe.start_worker()
    truth = GroundTruth(WINDOWS, allowed_lateness_ms=2 * MINUTE)
    rng = random.Random(5)
    t0 = past_hour_start(20 * MINUTE) + 5_000
    never = pipe.track_in_partition(0, "pb-never")
    push = pipe.track_in_partition(0, "pb-push")
    late = pipe.track_in_partition(1, "pb-late")
    known = pipe.track_in_partition(1, "pb-known")

    await send_tracks(pipe, truth, [
        track_event(push, t0, genre="lofi", rights=[right("label-p", "master", "1")]),
        track_event(known, t0, genre="lofi", ai_origin="ai_generated",
                    rights=[right("label-k", "master", "0.5")])])
    await pipe.drained()
    plan = [(never, 40), (late, 30), (known, 20), (push, 10)]
    events = [use_event(track, rng.choice(USES), t0 + rng.randrange(50_000))
              for track, n in plan for _ in range(n)]
    rng.shuffle(events)
    await send_uses(pipe, truth, events, rng)
    await pipe.drained()

    def without_unattributed(counters: dict[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int]:
        return {k: v for k, v in counters.items()
                if not (k[0] == "holder" and k[3] == "_unattributed")}

    # Per track and trending at once; no holder or genre counters yet for never / late.
    actual = await pipe.counters()
    assert_reconciled(without_unattributed(truth.expected()), actual)
    assert not any(k[0] == "holder" and k[3] == "_unattributed" for k in actual)
    status, body = await worker.get("/v1/trending", {"window": "1h", "at": t0, "limit": 10})
    assert status == 200
    # Four tracks, limit 10: every track with a create in the hour is on the list.
    creates = {track: sum(1 for e in events if e["track_id"] == track and e["use"] == "create")
               for track in (never, late)}
    assert all(creates.values()), creates
    shown = {item["track_id"]: (item["genre"], item["ai_origin"]) for item in body["items"]}
    assert shown[never] == shown[late] == ("_unknown", "unknown")

    # The pending attributions are in Redis: a new worker process picks them up.
    worker.kill()
    worker = await pipe.start_worker("worker-2")

    await send_tracks(pipe, truth, [track_event(late, t0 + 55_000, genre="hyperpop",
                                                ai_origin="ai_assisted",
                                                rights=[right("label-l", "master", "0.25"),
                                                        right("pub-l", "publishing", "1")])])
    await pipe.drained()
    actual = await pipe.counters()
    assert_reconciled(without_unattributed(truth.expected()), actual)
    hour_start = t0 - t0 % HOUR
    status, body = await worker.get("/v1/holders/label-l/usage", {"window": "1h", "at": t0})
    assert sum(body["rights"]["master"]["uses"].values()) == 30

    # Push partition 0's watermark past never's uses + the allowed lateness.
    push_event = use_event(push, "play", t0 + 4 * MINUTE)
    await send_uses(pipe, truth, [push_event], rng, single_share=1.0)
    await pipe.drained()
    truth.finish()
    actual = await pipe.counters()
    assert_reconciled(truth.expected(), actual)
    assert_weights_add_up(actual)
    status, body = await worker.get("/v1/holders/_unattributed/usage",
                                    {"window": "1h", "at": t0})
    assert status == 200
    for right_name in RIGHTS:
        assert sum(body["rights"][right_name]["uses"].values()) == 40
        assert sum(body["rights"][right_name]["weighted_micro"].values()) == 40_000_000
    genre_total = sum(v for k, v in actual.items()
                      if k[0] == "genre" and k[1] == "1h" and k[2] == hour_start)
    assert genre_total == 30 + 20 + 10 + 1  # late, known, push: never is in no genre
    status, body = await worker.get("/v1/trending", {"window": "1h", "at": t0, "limit": 10})
    shown = {item["track_id"]: (item["genre"], item["ai_origin"]) for item in body["items"]}
    assert shown[never] == ("_unknown", "unknown")
    assert shown[late] == ("hyperpop", "ai_assisted")

    # A TrackCreated after the lateness changes nothing already attributed; nothing is lost.
    await send_tracks(pipe, truth, [track_event(never, t0 + 5 * MINUTE, genre="ambient")])
    await pipe.drained()
    assert_reconciled(truth.expected(), await pipe.counters())
    assert worker.alive


async def test_query_api_errors_zeros_and_health(make_pipeline: Any) -> None:
    """Unknown window, bad ``at`` or ``limit``: 400 with a JSON error; no data: zeros
    with 200; health 200 with per-partition status while consuming."""
    pipe = await make_pipeline()
    worker: WorkerProcess = await pipe.start_worker()

    status, body = await worker.get("/v1/health")
    assert status == 200, body
    assert body["status"] == "ok"
    assert sorted(body["partitions"]) == [str(p) for p in range(pipe.partitions)]

    bad_requests = [
        ("/v1/tracks/t1/usage", {"window": "2h"}),
        ("/v1/tracks/t1/usage", {"window": ""}),
        ("/v1/tracks/t1/usage", {"window": "1h", "at": "abc"}),
        ("/v1/tracks/t1/usage", {"window": "1h", "at": "-5"}),
        ("/v1/tracks/t1/usage", {"window": "1h", "at": "1.5"}),
        ("/v1/tracks/t1/usage", {"window": "1h", "at": "9" * 20}),
        ("/v1/holders/h1/usage", {"window": "1w"}),
        ("/v1/holders/h1/usage", {"at": "yesterday"}),
        ("/v1/genres/lofi/usage", {"window": "1M"}),
        ("/v1/genres/lofi/usage", {"at": "1e12"}),
        ("/v1/trending", {"window": "5m"}),
        ("/v1/trending", {"limit": "0"}),
        ("/v1/trending", {"limit": "101"}),
        ("/v1/trending", {"limit": "ten"}),
        ("/v1/trending", {"limit": "-1"}),
        ("/v1/trending", {"at": "now"}),
        ("/v1/tracks/bad id/usage", {}),
    ]
    for path, params in bad_requests:
        status, body = await worker.get(path, params)
        assert status == 400, (path, params, status, body)
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
            path, params, body)

    at = 1_700_000_123_456
    zero_uses = {"create": 0, "play": 0}
    status, body = await worker.get("/v1/tracks/nobody/usage", {"window": "1h", "at": at})
    assert status == 200
    assert body == {"track_id": "nobody", "window": "1h", "start_ms": 1_699_999_200_000,
                    "end_ms": 1_700_002_800_000, "uses": zero_uses}
    status, body = await worker.get("/v1/holders/nobody/usage", {"window": "1d", "at": at})
    assert status == 200
    assert body["rights"] == {r: {"uses": zero_uses, "weighted_micro": zero_uses}
                              for r in RIGHTS}
    assert (body["start_ms"], body["end_ms"]) == (1_699_920_000_000, 1_700_006_400_000)
    status, body = await worker.get("/v1/genres/nothing/usage", {"window": "1m", "at": at})
    assert status == 200
    assert body["uses_by_origin"] == {o: zero_uses for o in ORIGINS}
    assert (body["start_ms"], body["end_ms"]) == (1_700_000_100_000, 1_700_000_160_000)
    status, body = await worker.get("/v1/trending", {"window": "1d", "at": at, "limit": 100})
    assert status == 200
    assert body == {"window": "1d", "start_ms": 1_699_920_000_000, "end_ms": 1_700_006_400_000,
                    "items": [], "ai_share": 0.0}
    # Defaults: no window/at -> a window containing now, still 200.
    for path in ("/v1/tracks/nobody/usage", "/v1/holders/nobody/usage",
                 "/v1/genres/nothing/usage", "/v1/trending"):
        status, body = await worker.get(path)
        assert status == 200, (path, body)
        assert body["start_ms"] <= body["end_ms"]

    status, body = await worker.get("/v1/health")
    assert status == 200
