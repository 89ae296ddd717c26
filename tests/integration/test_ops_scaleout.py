"""Several worker processes in one consumer group: shared partitions, same answers, exact.

One test, one consumer group over 4 partitions, events sent continuously while the
group changes:

1. worker A alone;
2. worker B joins (a rebalance moves partitions to it) while events flow; the two
   hold disjoint partition sets that cover every partition, and both answer every
   query the same;
3. B leaves gracefully (SIGTERM: final flush, leaves the group) while events flow;
4. worker C joins, then crashes (SIGKILL: A waits for the session timeout and takes
   over from the offsets stored in Redis) while events flow.

Duplicates of earlier events are re-sent after each change (the dedupe state must move
with the partitions). At the end every counter in Redis equals the ground truth
computed independently of the pipeline, and every live worker's query API returns it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from support.pipeline import (
    DAY,
    HOUR,
    MINUTE,
    WINDOWS,
    Pipeline,
    past_hour_start,
    poll_until,
    right,
    send_single,
    track_event,
    use_event,
)

from streamer.verify import GroundTruth, compare
from streamer.verify.worker_process import WorkerProcess

PARTITIONS = 4
USES = ("create", "play")
RIGHTS = ("master", "publishing")
ORIGINS = ("human", "ai_assisted", "ai_generated")




class Traffic:
    """Valid uses of a fixed track set, sent in slices; keeps the ground truth.

    Event times span 3 minutes, inside the 5-minute dedupe horizon, so every re-sent
    event is a duplicate the pipeline must drop (older ones would count again).
    """

    def __init__(self, pipe: Pipeline, truth: GroundTruth, tracks: list[str], base: int,
                 seed: int) -> None:
        self.pipe = pipe
        self.truth = truth
        self.tracks = tracks
        self.base = base
        self.rng = random.Random(seed)
        self.sent: list[dict[str, Any]] = []

    def make(self, count: int) -> list[dict[str, Any]]:
        rng = self.rng
        return [use_event(rng.choice(self.tracks), rng.choice(USES),
                          self.base + rng.randrange(3 * MINUTE),
                          user_id=f"user-{rng.randrange(50)}") for _ in range(count)]

    async def send(self, count: int, *, slices: int = 10, pause: float = 0.15,
                   duplicates: int = 0) -> None:
        """``count`` new events in ``slices`` bursts, then ``duplicates`` earlier ones again."""
        async with self.pipe.producer(batch_events=25, linger_ms=10) as producer:
            events = self.make(count)
            per_slice = max(1, count // slices)
            for start in range(0, count, per_slice):
                for event in events[start:start + per_slice]:
                    if self.rng.random() < 0.2:
                        await send_single(producer, event)
                    else:
                        await producer.send_use(event)
                    self.truth.use(event)
                await producer.flush()
                await asyncio.sleep(pause)
            self.sent.extend(events)
            if duplicates:
                for event in self.rng.sample(self.sent, duplicates):
                    await producer.send_use(dict(event))  # same event_id: not counted


async def health(worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    status, body = await worker.get("/v1/health", timeout=5)
    return status, body if isinstance(body, dict) else {}


async def wait_partitions(workers: list[WorkerProcess], timeout: float = 90.0) -> dict[
        WorkerProcess, set[int]]:
    """Until every worker is healthy and each holds part of a disjoint, complete split."""
    owned: dict[WorkerProcess, set[int]] = {}
    last: dict[WorkerProcess, tuple[int, dict[str, Any]]] = {}

    async def split_done() -> bool:
        owned.clear()
        for worker in workers:
            last[worker] = await health(worker)
            owned[worker] = {int(p) for p in last[worker][1].get("partitions", {})}
        every = [p for parts in owned.values() for p in parts]
        return (all(status == 200 for status, _ in last.values())
                and sorted(every) == list(range(PARTITIONS))
                and all(owned[w] for w in workers))

    try:
        await poll_until(split_done, timeout, f"a complete partition split over "
                         f"{len(workers)} workers")
    except TimeoutError as exc:
        # Say which health condition held, and what each worker logged last.
        for worker in workers:
            worker.print_log_tail(60)
        raise TimeoutError(f"{exc}; last health answers: "
                           f"{ {w.base_url: last.get(w) for w in workers} }") from None
    return dict(owned)


async def query_all(worker: WorkerProcess, paths: list[tuple[str, dict[str, Any]]]
                    ) -> list[Any]:
    answers = []
    for path, params in paths:
        status, body = await worker.get(path, params)
        assert status == 200, (worker.base_url, path, params, status, body)
        answers.append(body)
    return answers


def expected_answers(expected: dict[tuple[Any, ...], int], tracks: list[str],
                     holders: list[str], genres: list[str], hour: int, day: int
                     ) -> list[tuple[str, dict[str, Any], Any]]:
    """(path, params, the part of the answer the ground truth fixes)."""
    get = lambda *key: int(expected.get(tuple(key), 0))  # noqa: E731
    checks: list[tuple[str, dict[str, Any], Any]] = []
    for track in tracks:
        checks.append((f"/v1/tracks/{track}/usage", {"window": "1h", "at": hour},
                       {use: get("track", "1h", hour, track, use) for use in USES}))
    for holder in holders:
        checks.append((f"/v1/holders/{holder}/usage", {"window": "1d", "at": day},
                       {right_name: {
                           "uses": {use: get("holder", "1d", day, holder, right_name, use, "uses")
                                    for use in USES},
                           "weighted_micro": {
                               use: get("holder", "1d", day, holder, right_name, use,
                                        "weighted_micro") for use in USES}}
                        for right_name in RIGHTS}))
    for genre in genres:
        checks.append((f"/v1/genres/{genre}/usage", {"window": "1d", "at": day},
                       {origin: {use: get("genre", "1d", day, genre, origin, use)
                                 for use in USES} for origin in ORIGINS}))
    creates = sorted(((track, get("trending", "1h", hour, track)) for track in tracks),
                     key=lambda item: (-item[1], item[0]))
    checks.append(("/v1/trending", {"window": "1h", "at": hour, "limit": 100},
                   [[track, count] for track, count in creates if count]))
    return checks


def answer_part(path: str, body: dict[str, Any]) -> Any:
    if path.startswith("/v1/tracks/"):
        return body["uses"]
    if path.startswith("/v1/holders/"):
        return body["rights"]
    if path.startswith("/v1/genres/"):
        return body["uses_by_origin"]
    return [[item["track_id"], item["creates"]] for item in body["items"]]


@pytest.mark.timeout(420)
async def test_workers_join_and_leave_with_exact_counts(
        make_pipeline: Callable[..., Awaitable[Pipeline]]) -> None:
    pipe = await make_pipeline(partitions=PARTITIONS)
    truth = GroundTruth(WINDOWS)
    base = past_hour_start()
    hour, day = base - base % HOUR, base - base % DAY

    # Two tracks per partition, every track with metadata (several holders, shares
    # that leave part of a right unclaimed, all three origins).
    tracks = [pipe.track_in_partition(p, f"scale-{p}-{n}") for p in range(PARTITIONS)
              for n in range(2)]
    holders = ["label-a", "label-b", "publisher-c", "_unclaimed"]
    genres = ["lofi", "hyperpop", "ambient"]
    track_events = [
        track_event(track, base - MINUTE, genre=genres[n % 3], ai_origin=ORIGINS[n % 3],
                    rights=[right("label-a", "master", "0.5"),
                            right("label-b", "master", "0.25" if n % 2 else "0.5"),
                            right("publisher-c", "publishing", "0.333333")])
        for n, track in enumerate(tracks)]
    traffic = Traffic(pipe, truth, tracks, base, seed=4)

    worker_a = await pipe.start_worker("worker-a")
    async with pipe.producer() as producer:
        for event in track_events:
            await producer.send_track(event)
            truth.track_created(event)
    await traffic.send(150)
    split = await wait_partitions([worker_a])
    assert split[worker_a] == set(range(PARTITIONS))

    # B joins while events flow.
    worker_b = pipe.worker("worker-b").start()
    await asyncio.gather(traffic.send(200, duplicates=20), worker_b.wait_healthy(120))
    split = await wait_partitions([worker_a, worker_b])
    assert split[worker_a].isdisjoint(split[worker_b])
    await pipe.drained()

    checks = expected_answers(truth.expected(), tracks, holders, genres, hour, day)
    paths = [(path, params) for path, params, _ in checks]
    answers_a, answers_b = await asyncio.gather(query_all(worker_a, paths),
                                                query_all(worker_b, paths))
    assert answers_a == answers_b, "two workers of one group answer differently"
    for (path, _, want), body in zip(checks, answers_a, strict=True):
        assert answer_part(path, body) == want, (path, body)

    # B leaves gracefully (final flush, leaves the group) while events flow.
    async def leave_b() -> None:
        await asyncio.sleep(0.5)
        await worker_b.aterminate(timeout=40)

    await asyncio.gather(traffic.send(200, duplicates=20), leave_b())
    assert worker_b.returncode == 0, worker_b.log_tail(40)
    assert (await wait_partitions([worker_a]))[worker_a] == set(range(PARTITIONS))

    # C joins, then crashes (SIGKILL) while events flow: A takes C's partitions after
    # the session timeout and resumes them from the offsets stored in Redis.
    worker_c = pipe.worker("worker-c").start()
    await asyncio.gather(traffic.send(150), worker_c.wait_healthy(120))
    await wait_partitions([worker_a, worker_c])

    async def crash_c() -> None:
        await asyncio.sleep(0.5)
        worker_c.kill()

    await asyncio.gather(traffic.send(200, duplicates=20), crash_c())
    assert (await wait_partitions([worker_a]))[worker_a] == set(range(PARTITIONS))

    await pipe.drained()
    expected = truth.expected()
    result = compare(expected, await pipe.counters())
    print(result.summary())
    assert result.ok, str(result)
    assert result.events_expected == len(traffic.sent) == 900

    # The surviving worker and a fresh one (no partitions needed to answer) agree with
    # the ground truth.
    checks = expected_answers(expected, tracks, holders, genres, hour, day)
    paths = [(path, params) for path, params, _ in checks]
    worker_d = await pipe.start_worker("worker-d")
    answers_a, answers_d = await asyncio.gather(query_all(worker_a, paths),
                                                query_all(worker_d, paths))
    assert answers_a == answers_d
    for (path, _, want), body in zip(checks, answers_a, strict=True):
        assert answer_part(path, body) == want, (path, body)
