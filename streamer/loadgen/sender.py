"""Sending a generated stream to Kafka: paced or flat out, from one or several processes.

Each sending process runs the whole (cheap) random model but encodes and sends only the
partitions it owns (``partition % processes == index``), so partition order is kept and
N processes emit exactly the events one would. Every process keeps the ground truth of
what it sent, per partition and compact (not expanded into counters); the parent joins
them.

Pacing: simulated time maps to wall time as ``wall = go + (sim - start) / speed``; a
tick is sent once the wall clock reaches its end (so events are never from the future
when ``speed`` is 1); ``speed = 0`` sends as fast as possible.

Pre-generation (``SendPlan.pregenerate``): every record is built before "go", so during
the run a process only hands finished records to the producer (a few % of a core at
100k+ events/s, where the model and JSON take about a core). The event times then start
at ``cfg.start_ms``, set before generating, so the stream runs behind the wall clock by
the generating time; whoever adds events of its own (latency probes) dates them on the
stream's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import resource
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from streamer.loadgen.kafka import KafkaUnreachable, check_kafka, make_producer
from streamer.loadgen.model import ModelStats, TrafficModel
from streamer.loadgen.plan import LoadResult, SendPlan
from streamer.loadgen.records import TRACKS, RecordBuilder
from streamer.verify.truth import PartitionedTruth

__all__ = ["KafkaUnreachable", "LoadResult", "LoadRun", "SendPlan", "check_kafka",
           "make_producer", "run_inline"]

# Shared progress slots per process.
# events/records: SoundUsed elements and the sounds.used records carrying them;
# tracks: tracks.created records; bytes: values of both.
_SLOTS = ("events", "records", "bytes", "tracks", "sim_ms", "phase", "counted")
EVENTS, RECORDS, BYTES, TRACKS_SENT, SIM_MS, PHASE, COUNTED = range(len(_SLOTS))
PHASE_STARTING, PHASE_CATALOG_SENT, PHASE_RUNNING, PHASE_DONE, PHASE_FAILED = 0, 1, 2, 3, -1


class _Progress:
    """This process's row of the shared progress table (or a private one)."""

    def __init__(self, shared: Any, index: int) -> None:
        self.shared = shared
        self.base = index * len(_SLOTS)
        self.local = [0.0] * len(_SLOTS)

    def set(self, slot: int, value: float) -> None:
        self.local[slot] = value
        if self.shared is not None:
            self.shared[self.base + slot] = value

    def add(self, slot: int, value: float) -> None:
        self.set(slot, self.local[slot] + value)


async def _send_all(plan: SendPlan, index: int, progress: _Progress, go: Any, stop: Any,
                    start_ms_value: Any) -> tuple[TrafficModel, float, float, int, list[str]]:
    cfg = plan.cfg
    owned = {p for p in range(plan.partitions) if p % plan.processes == index}
    truth = (PartitionedTruth(windows=cfg.windows, allowed_lateness_ms=cfg.allowed_lateness_ms,
                              territory_windows=cfg.territory_windows)
             if plan.keep_truth else None)
    model = TrafficModel(cfg, plan.partitions, owned, truth, catalog_ms=plan.catalog_ms)
    single = cfg.batch_events <= 1
    producer = make_producer(plan.kafka, single)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()  # else aiokafka warns "Unclosed AIOKafkaProducer"
        raise
    topics = {TRACKS: plan.tracks_topic, 1: plan.uses_topic}
    errors: list[str] = []
    inflight: set[asyncio.Future[Any]] = set()

    def done(future: asyncio.Future[Any]) -> None:
        inflight.discard(future)
        if not future.cancelled() and future.exception() is not None and len(errors) < 20:
            errors.append(repr(future.exception()))

    async def send(records: list[Any]) -> None:
        for record in records:
            future = await producer.send(topics[record.topic], record.value, key=record.key,
                                         partition=record.partition)
            inflight.add(future)
            future.add_done_callback(done)
            if record.topic == TRACKS:
                progress.add(TRACKS_SENT, 1)
            else:
                progress.add(EVENTS, record.events)
                progress.add(RECORDS, 1)
            progress.add(BYTES, len(record.value))
        if len(inflight) > 20_000:
            await asyncio.gather(*list(inflight), return_exceptions=True)

    catalog_started = time.monotonic()
    try:
        linger = None
        if cfg.linger_ms and plan.speed > 0:
            linger = cfg.linger_ms * plan.speed
        builder = RecordBuilder(cfg.batch_events, linger)
        await send(builder.add(model.catalog_tick()))
        await producer.flush()
        catalog_wall = time.monotonic() - catalog_started
        start_ms = cfg.start_ms
        prepared: deque[tuple[int, list[Any], int]] | None = None
        if plan.pregenerate:
            if start_ms is None or not plan.wait_for_go or plan.max_wall_s is not None:
                raise ValueError("pregenerate needs cfg.start_ms and wait_for_go, "
                                 "and cannot stop early")
            prepared = deque((tick.end_ms, builder.add(tick), model.stats.uses_counted)
                             for tick in model.ticks(start_ms))
            prepared.append((prepared[-1][0] if prepared else start_ms, builder.flush(),
                             model.stats.uses_counted))
        progress.set(PHASE, PHASE_CATALOG_SENT)
        if plan.wait_for_go:
            while not go.is_set():
                await asyncio.sleep(0.02)
            if prepared is None:
                start_ms = int(start_ms_value.value) or start_ms
        if start_ms is None:
            start_ms = int(time.time() * 1000)
        progress.set(PHASE, PHASE_RUNNING)
        go_mono = time.monotonic()
        speed = plan.speed
        stats = model.stats
        last_t = start_ms

        async def send_at(end_ms: int, records: list[Any], counted: int) -> None:
            """Send a tick's records once the wall clock reaches its end (``speed`` > 0)."""
            if speed > 0:
                delay = (end_ms - start_ms) / 1000 / speed - (time.monotonic() - go_mono)
                if delay > 0:
                    await asyncio.sleep(delay)
            await send(records)
            progress.set(SIM_MS, end_ms)
            progress.set(COUNTED, counted)

        if prepared is not None:
            while prepared:  # sent records are dropped as we go: the memory comes back
                last_t = prepared[0][0]
                await send_at(*prepared.popleft())
        else:
            for tick in model.ticks(start_ms):
                last_t = tick.end_ms
                await send_at(tick.end_ms, builder.add(tick), stats.uses_counted)
                if (stop is not None and stop.is_set()) or (
                        plan.max_wall_s is not None
                        and time.monotonic() - go_mono > plan.max_wall_s):
                    await send(builder.add(model.final_tick(tick.end_ms)))
                    break
        await send(builder.flush())
        await producer.flush()
        if inflight:
            await asyncio.gather(*list(inflight), return_exceptions=True)
        wall = time.monotonic() - go_mono
    finally:
        await producer.stop()
    model.start_ms = start_ms
    return model, catalog_wall, wall, last_t, errors


def _child(plan: SendPlan, index: int, shared: Any, go: Any, stop: Any, start_ms_value: Any,
           results: Any) -> None:
    progress = _Progress(shared, index)
    try:
        model, catalog_wall, wall, end_ms, errors = asyncio.run(
            _send_all(plan, index, progress, go, stop, start_ms_value))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        results.put((index, {
            "truth": model.truth, "stats": model.stats, "catalog_wall_s": catalog_wall,
            "wall_s": wall, "start_ms": model.start_ms, "end_ms": end_ms,
            "cpu_s": usage.ru_utime + usage.ru_stime, "errors": errors,
            "progress": progress.local}))
        progress.set(PHASE, PHASE_DONE)
    except BaseException as exc:
        progress.set(PHASE, PHASE_FAILED)
        results.put((index, {"failed": f"{exc!r}\n{traceback.format_exc()}"}))


class LoadRun:
    """A load generation running in child processes; the parent watches and steers it.

        run = LoadRun(plan); run.start()
        await run.wait_catalog_sent()
        run.go(start_ms)                       # only with plan.wait_for_go
        result = await run.wait(on_progress)
    """

    def __init__(self, plan: SendPlan) -> None:
        self.plan = plan
        ctx = mp.get_context("spawn")
        self._ctx = ctx
        self.shared = ctx.Array("d", plan.processes * len(_SLOTS), lock=False)
        self.go_event = ctx.Event()
        self.stop_event = ctx.Event()
        self.start_ms_value = ctx.Value("d", 0.0, lock=False)
        self.results = ctx.Queue()
        self.processes: list[Any] = []
        self.started_at = 0.0
        self.go_at: float | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def start(self) -> LoadRun:
        self.started_at = time.monotonic()
        # Children start with Ctrl-C ignored (inherited through exec): the parent stops
        # them; a KeyboardInterrupt in a child's start-up would print a traceback.
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            for index in range(self.plan.processes):
                process = self._ctx.Process(
                    target=_child, name=f"streamer-load-{index}",
                    args=(self.plan, index, self.shared, self.go_event, self.stop_event,
                          self.start_ms_value, self.results), daemon=True)
                process.start()
                self.processes.append(process)
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        return self

    def totals(self) -> dict[str, float]:
        width = len(_SLOTS)
        rows = [self.shared[i * width:(i + 1) * width] for i in range(self.plan.processes)]
        total = {name: sum(row[i] for row in rows) for i, name in enumerate(_SLOTS)}
        total["phase_min"] = min(row[PHASE] for row in rows)
        total["failed"] = any(row[PHASE] == PHASE_FAILED for row in rows)
        total["sim_ms"] = min(row[SIM_MS] for row in rows)
        return total

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.exitcode not in (None, 0):
                raise RuntimeError(f"load process {process.name} exited with {process.exitcode}")
        if self.totals()["failed"]:
            raise RuntimeError(self._failure_text())

    def _failure_text(self) -> str:
        texts = []
        with contextlib.suppress(queue.Empty):
            while True:
                _, item = self.results.get_nowait()
                if "failed" in item:
                    texts.append(item["failed"])
        return "load generation failed:\n" + "\n".join(texts)

    async def wait_catalog_sent(self, timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.totals()["phase_min"] < PHASE_CATALOG_SENT:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("catalog not sent in time")
            await asyncio.sleep(0.05)

    def go(self, start_ms: int | None = None) -> int:
        start = start_ms if start_ms is not None else int(time.time() * 1000)
        self.start_ms_value.value = float(start)
        self.go_at = time.monotonic()
        self.go_event.set()
        return start

    def stop(self) -> None:
        self.stop_event.set()

    async def wait(self, on_progress: Callable[[dict[str, float]], None] | None = None,
                   interval_s: float = 0.25) -> LoadResult:
        pending = set(range(self.plan.processes))
        items: dict[int, dict[str, Any]] = {}
        while pending:
            if on_progress is not None:
                on_progress(self.totals())
            with contextlib.suppress(queue.Empty):
                while True:
                    index, item = self.results.get_nowait()
                    if "failed" in item:
                        self.terminate()
                        raise RuntimeError(f"load process {index} failed: {item['failed']}")
                    items[index] = item
                    pending.discard(index)
            if pending:
                for process in self.processes:
                    if process.exitcode not in (None, 0):
                        raise RuntimeError(
                            f"load process {process.name} exited with {process.exitcode}")
                await asyncio.sleep(interval_s)
        for process in self.processes:
            process.join(timeout=10)
        if on_progress is not None:
            on_progress(self.totals())
        stats = ModelStats()
        for item in items.values():
            stats.add(item["stats"])
        truth: PartitionedTruth | None = None
        for _, item in sorted(items.items()):
            if item["truth"] is None:
                continue
            if truth is None:
                truth = item["truth"]
            else:
                truth.update(item["truth"])
        progress_rows = [item["progress"] for item in items.values()]
        return LoadResult(
            truth=truth, stats=stats,
            events=int(sum(row[EVENTS] for row in progress_rows)),
            records=int(sum(row[RECORDS] for row in progress_rows)),
            bytes=int(sum(row[BYTES] for row in progress_rows)),
            tracks_records=int(sum(row[TRACKS_SENT] for row in progress_rows)),
            wall_s=max(item["wall_s"] for item in items.values()),
            catalog_wall_s=max(item["catalog_wall_s"] for item in items.values()),
            start_ms=min(item["start_ms"] for item in items.values()),
            end_ms=max(item["end_ms"] for item in items.values()),
            cpu_s=sum(item["cpu_s"] for item in items.values()),
            errors=[e for item in items.values() for e in item["errors"]],
        )

    def terminate(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=5)


async def run_inline(plan: SendPlan) -> LoadResult:
    """One sending 'process' in this event loop (tests, small loads); no go/stop steering."""
    plan = replace(plan, processes=1, wait_for_go=False)
    progress = _Progress(None, 0)
    cpu0 = os.times()
    model, catalog_wall, wall, end_ms, errors = await _send_all(plan, 0, progress, None, None, None)
    cpu1 = os.times()
    row = progress.local
    return LoadResult(
        truth=model.truth,
        stats=model.stats, events=int(row[EVENTS]), records=int(row[RECORDS]),
        bytes=int(row[BYTES]), tracks_records=int(row[TRACKS_SENT]), wall_s=wall,
        catalog_wall_s=catalog_wall, start_ms=model.start_ms or 0, end_ms=end_ms,
        cpu_s=(cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), errors=errors)
