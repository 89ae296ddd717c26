"""Building blocks of every scenario: an isolated run, sampling, latency probes, reconciling.

A ``BenchRun`` owns one set of topics, one Redis key prefix, one consumer group / app id
and one web port, all unique, so runs never see each other's data (other engineers share
the broker and Redis); ``cleanup()`` deletes its topics and keys afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.leftovers import delete_run_state
from streamer.config import Settings, load_settings
from streamer.verify.kafka_progress import wait_drained
from streamer.verify.reconcile import Reconciliation, compare
from streamer.verify.redis_counters import open_redis, pending_tracks, read_counters
from streamer.verify.territory import reconcile_territory
from streamer.verify.truth import PartitionedTruth, fold_replaced_holders, merge_expected
from streamer.verify.worker_process import WorkerProcess

REPO = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Stack:
    bootstrap: str
    redis_url: str

    @classmethod
    def from_env(cls) -> Stack:
        return cls(os.environ.get("STREAMER_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
                   os.environ.get("STREAMER_REDIS_URL", "redis://127.0.0.1:6379/0"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def attribution_diff(mismatches: list[tuple[tuple[Any, ...], int, int]]) -> dict[str, int]:
    """Uses counted minus expected, summed per kind of attribution counter (1d window).

    Shows where a mismatch went: uses that should have had a holder but went to
    ``_unattributed`` show as a surplus there and the same deficit in named holders.
    """
    diff: dict[str, int] = {}
    for key, want, got in mismatches:
        if key[1] != "1d":
            continue
        if key[0] == "holder" and key[4] == "master" and key[6] == "uses":
            name = key[3] if key[3] in ("_unattributed", "_unclaimed") else "named holders"
        elif key[0] == "genre":
            name = "genre"
        else:
            continue
        diff[name] = diff.get(name, 0) + got - want
    return diff


TERRITORY_COLUMN = "territory lost/double"


def territory_cell(reconcile: dict[str, Any]) -> str:
    """Lost/double uses per territory family for a results table: ``tt 0/0, th 0/0, tg 0/0``
    (``off``: the worker kept no territory counters)."""
    territory = reconcile.get("territory")
    if territory is None:
        return "off"
    return ", ".join(f"{name[:2]} {row['lost']}/{row['double']}"
                     for name, row in territory["families"].items())


class BenchRun:
    """Topics + prefix + app id + port of one measured worker (or peer) run."""

    def __init__(self, stack: Stack, label: str, out_dir: Path, partitions: int = 8,
                 worker_env: dict[str, str] | None = None, keep: bool = False) -> None:
        self.stack = stack
        self.label = label
        self.id = f"bench-{label}-{uuid.uuid4().hex[:8]}"
        self.out_dir = out_dir
        self.partitions = partitions
        self.keep = keep
        self.tracks_topic = f"{self.id}.tracks"
        self.uses_topic = f"{self.id}.uses"
        self.dlq_topic = f"{self.id}.dlq"
        self.prefix = self.id
        self.app_id = self.id
        self.port = free_port()
        self.extra_env = dict(worker_env or {})
        self.extra_topics: list[str] = []
        self.worker: WorkerProcess | None = None

    # -- settings and topics ----------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {
            "STREAMER_KAFKA_BOOTSTRAP": self.stack.bootstrap,
            "STREAMER_REDIS_URL": self.stack.redis_url,
            "STREAMER_APP_ID": self.app_id,
            "STREAMER_TRACKS_TOPIC": self.tracks_topic,
            "STREAMER_USES_TOPIC": self.uses_topic,
            "STREAMER_DLQ_TOPIC": self.dlq_topic,
            "STREAMER_PARTITIONS": str(self.partitions),
            "STREAMER_KEY_PREFIX": self.prefix,
            "STREAMER_WEB_PORT": str(self.port),
            "STREAMER_WEB_HOST": "127.0.0.1",
        }
        env.update(self.extra_env)
        return env

    @property
    def settings(self) -> Settings:
        """The settings the worker runs with: ``start_worker`` gives it this process's
        environment plus ``env()``, so a STREAMER_* variable set here counts too."""
        return load_settings({**os.environ, **self.env()})

    @property
    def kafka(self) -> dict[str, Any]:
        return self.settings.kafka.aiokafka_kwargs()

    async def create_topics(self) -> None:
        """The input topics without retention limits, then the worker's own ensure_topics.

        A broker's default ``retention.bytes`` (1 GiB a partition on the local stack)
        deleted the oldest records of a 75M-event backlog before the worker read them.
        """
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        from streamer.pipeline.topics import ensure_topics

        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        await admin.start()
        try:
            unlimited = {"retention.bytes": "-1", "retention.ms": "-1"}
            await admin.create_topics([
                NewTopic(name, self.partitions, 1, topic_configs=unlimited)
                for name in (self.tracks_topic, self.uses_topic)])
        finally:
            await admin.close()
        count = await asyncio.wait_for(ensure_topics(self.settings), timeout=60)
        deadline = time.monotonic() + 30
        while count == 0 and time.monotonic() < deadline:
            # A topic created a moment ago can be described with no partitions yet.
            await asyncio.sleep(0.2)
            count = await asyncio.wait_for(ensure_topics(self.settings), timeout=60)
        if count != self.partitions:
            raise RuntimeError(f"{self.uses_topic} has {count} partitions, not {self.partitions}")
        await self.wait_for_leaders([self.tracks_topic, self.uses_topic, self.dlq_topic])

    async def wait_for_leaders(self, topics: list[str], timeout_s: float = 30.0) -> None:
        """New topics answer 'not leader' for a moment; wait until every partition has one."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        await admin.start()
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                described = await admin.describe_topics(topics)
                ready = all(
                    meta["error_code"] == 0 and meta["partitions"]
                    and all(p["error_code"] == 0 and p["leader"] >= 0 for p in meta["partitions"])
                    for meta in described)
                if ready or time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.1)
        finally:
            await admin.close()

    async def create_topic(self, name: str, partitions: int | None = None) -> str:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions or self.partitions, 1)])
        finally:
            await admin.close()
        self.extra_topics.append(name)
        return name

    # -- the worker -------------------------------------------------------------------

    def start_worker(self, profile: str | None = None, name: str = "worker") -> WorkerProcess:
        log_path = self.out_dir / f"{name}-{self.label}.log"
        command = None
        if profile:
            command = [sys.executable, "-m", "benchmarks.profiled_worker", profile,
                       str(self.out_dir / f"profile-{self.label}")]
        self.worker = WorkerProcess(self.env(), log_path, loglevel="warn", command=command)
        self.worker.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), self.worker.env.get("PYTHONPATH", "")]))
        self.worker.start()
        return self.worker

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.aterminate(timeout=60)

    async def wait_drained(self, timeout_s: float, tracks: bool = True,
                           uses: bool = True) -> dict[int, Any]:
        topics: dict[str, str] = {}
        if uses:
            topics["u"] = self.uses_topic
        if tracks:
            topics["t"] = self.tracks_topic
        return await wait_drained(self.stack.bootstrap, self.stack.redis_url, self.prefix,
                                  topics, self.partitions, timeout_s, poll_s=0.1)

    async def metrics(self) -> dict[str, float]:
        """The worker's Prometheus metrics as ``{'name{labels}': value}``."""
        import aiohttp

        url = f"http://127.0.0.1:{self.port}/metrics"
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            text = await resp.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
        return values

    # -- results ----------------------------------------------------------------------

    async def reconcile(self, *truths: PartitionedTruth,
                        pending_timeout_s: float = 30.0) -> dict[str, Any]:
        """Redis against the truths (the load's, the probes'), one partition shard at a
        time: a day's ~32M counters are never all in memory, and every shard must match
        on its own (stricter than comparing sums over shards)."""
        started = time.monotonic()
        # Drained offsets include every TrackCreated; the uses that waited for one are
        # attributed by the flush after it (or after a catalog recheck): allow for that.
        deadline = started + pending_timeout_s
        while (pending := await pending_tracks(self.stack.redis_url, self.prefix,
                                               self.partitions)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        result = Reconciliation()
        counters_expected = counters_actual = 0
        for partition in range(self.partitions):
            # A replaced track's old and new holders share its uses in the order the
            # worker read the two topics: only their weighted sums are compared.
            expected = fold_replaced_holders(
                merge_expected(truth.expected_for(partition) for truth in truths))
            actual = fold_replaced_holders(
                await read_counters(self.stack.redis_url, self.prefix, partition))
            result.add(compare(expected, actual))
            counters_expected += len(expected)
            counters_actual += len(actual)
            del expected, actual
        log(f"reconcile [{self.label}]: lost = {result.lost}, double = {result.double}, "
            f"mismatched counters = {len(result.mismatches)}, pending tracks left = {pending} "
            f"({counters_expected:,} expected counters, {result.events_expected:,} uses, "
            f"{time.monotonic() - started:.1f} s)")
        if not result.ok:
            print(result.summary(limit=15), file=sys.stderr)
        territory = await self.reconcile_territory(truths)
        return {
            "ok": result.ok and (territory is None or territory["ok"]),
            "lost": result.lost, "double": result.double,
            "mismatched_counters": len(result.mismatches), "pending_tracks_left": pending,
            "events_expected": result.events_expected, "events_counted": result.events_counted,
            "counters_expected": counters_expected, "counters_actual": counters_actual,
            "attribution_diff": attribution_diff(result.mismatches),
            "first_mismatches": [[list(k), e, a] for k, e, a in
                                 sorted(result.mismatches, key=repr)[:15]],
            "territory": territory,
            "seconds": round(time.monotonic() - started, 2),
        }

    async def reconcile_territory(self, truths: tuple[PartitionedTruth, ...]
                                  ) -> dict[str, Any] | None:
        """The territory counters against the same truths, per family (None: territory
        is off). Each family's lost/double/mismatched_counters sit where the harness's
        ``reconciled`` verdict looks, beside the plain counters' own."""
        if not self.settings.territory:
            return None
        report = await reconcile_territory(self.stack.redis_url, self.prefix,
                                           self.partitions, truths)
        families: dict[str, Any] = report["territory_families"]
        log(f"reconcile [{self.label}] territory: " + ", ".join(
            f"{name} lost = {row['lost']}, double = {row['double']}"
            for name, row in families.items())
            + f" ({report['territory_counters']:,} counters)")
        for problem in report["problems"]:
            print(problem, file=sys.stderr)
        return {"ok": report["ok"], "counters": report["territory_counters"],
                "countries": report["countries"], "families": families,
                "problems": report["problems"][:5]}

    async def cleanup(self) -> None:
        if self.keep:
            log(f"keeping topics and keys of {self.id}")
            return
        await delete_run_state(self.stack, self.id)


# -- sampling ----------------------------------------------------------------------------


class Sampler:
    """Every ``interval_s``: Kafka end offsets vs. the offsets stored in Redis (lag),
    the worker's own counters (/metrics), its CPU and RSS (psutil), the machine's CPU,
    and the load generator's progress."""

    def __init__(self, run: BenchRun, interval_s: float = 1.0,
                 load_totals: Callable[[], dict[str, float]] | None = None,
                 load_pids: Callable[[], list[int]] | None = None) -> None:
        self.run = run
        self.interval_s = interval_s
        self.load_totals = load_totals
        self.load_pids = load_pids
        self.samples: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None
        self._redis: Any = None
        self._procs: dict[int, Any] = {}

    async def start(self) -> Sampler:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.run.stack.bootstrap,
                                          group_id=None, enable_auto_commit=False)
        await self._consumer.start()
        self._redis = open_redis(self.run.stack.redis_url)
        self.t0 = time.monotonic()
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._redis is not None:
            await self._redis.aclose()

    def _cpu(self, pid: int | None) -> tuple[float | None, float | None]:
        if pid is None:
            return None, None
        try:
            import psutil
        except ImportError:
            return None, None
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
                proc.cpu_percent(None)
                return None, proc.memory_info().rss / 2**20
            return proc.cpu_percent(None), proc.memory_info().rss / 2**20
        except psutil.Error:
            return None, None

    async def _loop(self) -> None:
        from aiokafka import TopicPartition

        run = self.run
        tps_u = [TopicPartition(run.uses_topic, p) for p in range(run.partitions)]
        tps_t = [TopicPartition(run.tracks_topic, p) for p in range(run.partitions)]
        try:
            import psutil

            psutil.cpu_percent(None)
        except ImportError:
            psutil = None  # type: ignore[assignment]
        next_at = time.monotonic()
        while True:
            sample: dict[str, Any] = {"t": round(time.monotonic() - self.t0, 3),
                                      "wall": time.time()}
            try:
                ends = await self._consumer.end_offsets(tps_u + tps_t)
                sample["end_u"] = sum(ends[tp] for tp in tps_u)
                sample["end_t"] = sum(ends[tp] for tp in tps_t)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for p in range(run.partitions):
                        pipe.hmget("{" + run.prefix + f":{p}}}:meta", ["off:u", "off:t"])
                    rows = await pipe.execute()
                sample["off_u"] = sum(int(r[0] or 0) for r in rows)
                sample["off_t"] = sum(int(r[1] or 0) for r in rows)
                sample["lag_records_u"] = sample["end_u"] - sample["off_u"]
                sample["lag_records_t"] = sample["end_t"] - sample["off_t"]
            except Exception as exc:  # keep sampling; note why this one is partial
                sample["error"] = repr(exc)[:200]
            if run.worker is not None and run.worker.alive:
                with contextlib.suppress(Exception):
                    metrics = await run.metrics()
                    sample["consumed_u"] = metrics.get(
                        'streamer_events_consumed_total{topic="uses"}', 0.0)
                    sample["counted_u"] = metrics.get("streamer_events_counted_total", 0.0)
                    sample["records_u"] = metrics.get(
                        'streamer_records_consumed_total{topic="uses"}', 0.0)
                    sample["records_t"] = metrics.get(
                        'streamer_records_consumed_total{topic="tracks"}', 0.0)
                    sample["records_all"] = sample["records_u"] + sample["records_t"]
                    sample["unflushed"] = metrics.get("streamer_unflushed_events", 0.0)
                    sample["flush_interval"] = metrics.get("streamer_flush_interval_seconds")
                cpu, rss = self._cpu(run.worker.pid)
                sample["worker_cpu"] = cpu
                sample["worker_rss_mb"] = rss
            if psutil is not None:
                sample["machine_cpu"] = psutil.cpu_percent(None)
            if self.load_totals is not None:
                totals = self.load_totals()
                sample["sent_events"] = totals["events"]
                sample["sent_records"] = totals["records"]
            if self.load_pids is not None:
                cpus = [self._cpu(pid)[0] for pid in self.load_pids()]
                sample["loadgen_cpu"] = sum(c for c in cpus if c is not None)
            self.samples.append(sample)
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # -- derived series -------------------------------------------------------------

    def series(self) -> dict[str, list[Any]]:
        """Per-interval rates and the lag, ready for plots and the JSON."""
        out: dict[str, list[Any]] = {"t": [], "sent_eps": [], "consumed_eps": [],
                                     "lag_records_u": [], "lag_events_est": [],
                                     "worker_cpu": [], "worker_rss_mb": [], "machine_cpu": []}
        previous: dict[str, Any] | None = None
        for sample in self.samples:
            if previous is not None:
                dt = sample["t"] - previous["t"]
                out["t"].append(sample["t"])
                for key, name in (("sent_events", "sent_eps"), ("consumed_u", "consumed_eps")):
                    if key in sample and key in previous and dt > 0:
                        out[name].append(round((sample[key] - previous[key]) / dt, 1))
                    else:
                        out[name].append(None)
                out["lag_records_u"].append(sample.get("lag_records_u"))
                if "sent_events" in sample and "consumed_u" in sample:
                    out["lag_events_est"].append(max(0.0, sample["sent_events"]
                                                     - sample["consumed_u"]))
                else:
                    out["lag_events_est"].append(None)
                out["worker_cpu"].append(sample.get("worker_cpu"))
                out["worker_rss_mb"].append(sample.get("worker_rss_mb"))
                out["machine_cpu"].append(sample.get("machine_cpu"))
            previous = sample
        return out

    def resources(self, since_t: float = 0.0, until_t: float | None = None) -> dict[str, Any]:
        chosen = [s for s in self.samples if s["t"] >= since_t
                  and (until_t is None or s["t"] <= until_t)]
        cpu = [s["worker_cpu"] for s in chosen if s.get("worker_cpu") is not None]
        rss = [s["worker_rss_mb"] for s in chosen if s.get("worker_rss_mb") is not None]
        machine = [s["machine_cpu"] for s in chosen if s.get("machine_cpu") is not None]
        gen = [s["loadgen_cpu"] for s in chosen if s.get("loadgen_cpu") is not None]
        intervals = [s["flush_interval"] for s in chosen if s.get("flush_interval")]
        return {
            # Share of samples per flush round length (short: keeping up; long: backlog).
            "flush_interval_share": {f"{value:g}": round(intervals.count(value) / len(intervals), 3)
                                     for value in sorted(set(intervals))},
            "worker_cpu_pct_mean": round(statistics.fmean(cpu), 1) if cpu else None,
            "worker_cpu_pct_max": round(max(cpu), 1) if cpu else None,
            "worker_rss_mb_max": round(max(rss), 1) if rss else None,
            "worker_rss_mb_last": round(rss[-1], 1) if rss else None,
            "machine_cpu_pct_mean": round(statistics.fmean(machine), 1) if machine else None,
            "loadgen_cpu_pct_mean": round(statistics.fmean(gen), 1) if gen else None,
        }


# -- latency probes ------------------------------------------------------------------


def describe_flush_rounds(resources: dict[str, Any]) -> str:
    """'0.5 s in 97 %, 1 s in 3 %': the share of samples per flush round length."""
    share = resources.get("flush_interval_share") or {}
    return ", ".join(f"{value} s in {100 * part:.0f} %" for value, part in share.items()) or "-"


def probe_track_ids(run_id: str, partitions: int) -> dict[int, str]:
    """One probe track per partition (found by trying names until each partition has one)."""
    from streamer.loadgen.model import partition_of

    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        track_id = f"probe-{run_id[-8:]}-{n}"
        found.setdefault(partition_of(track_id, partitions), track_id)
        n += 1
    return found


class Probes:
    """End-to-end latency: a SoundUsed sent now, timed until its counter shows in Redis.

    One probe track per partition (created with a TrackCreated before the run, so probes
    are ordinary, attributed uses in the ground truth). Every ``interval_s`` a probe goes
    to the next partition; a poller reads the probe tracks' per-day counters every
    ``poll_s`` and records, per probe, the time from just before ``send()`` to the first
    read that shows it. Latency therefore includes the producer, the broker, the worker's
    consumption and its flush to Redis (the flush interval included), plus up to
    ``poll_s`` of polling granularity.
    """

    def __init__(self, run: BenchRun, truth: PartitionedTruth, interval_s: float = 0.2,
                 poll_s: float = 0.02) -> None:
        self.run = run
        self.truth = truth
        self.interval_s = interval_s
        self.poll_s = poll_s
        self.tracks = probe_track_ids(run.id, run.partitions)
        self.latencies: list[tuple[float, float]] = []   # (seconds since start, latency)
        self.sent = 0
        self._outstanding: dict[tuple[int, int], list[tuple[int, float, float]]] = {}
        self._counts: dict[tuple[int, int], int] = {}
        self._producer: Any = None
        self._redis: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.t0 = time.monotonic()
        # Probe uses are dated this far from the wall clock, on the load's own clock
        # (a pre-generated load runs behind the wall clock; see loadgen/sender.py).
        self.clock_offset_ms = 0

    async def create_tracks(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(bootstrap_servers=self.run.stack.bootstrap,
                                          acks="all", enable_idempotence=True, linger_ms=0)
        await self._producer.start()
        now = int(time.time() * 1000)
        for partition, track_id in self.tracks.items():
            event = {"event_id": f"{track_id}-created", "track_id": track_id,
                     "occurred_at": now - 1000, "creator_id": "bench", "genre": "ambient",
                     "ai_origin": "human",
                     "rights": [{"holder_id": "bench-label", "right": "master", "share": "1"}]}
            await self._producer.send_and_wait(self.run.tracks_topic, orjson.dumps(event),
                                               key=track_id.encode(), partition=partition)
            self.truth.track_created(event, partition)

    async def start(self, t0: float | None = None) -> None:
        self._redis = open_redis(self.run.stack.redis_url)
        self.t0 = t0 if t0 is not None else time.monotonic()
        self._tasks = [asyncio.ensure_future(self._send_loop()),
                       asyncio.ensure_future(self._poll_loop())]

    async def stop(self, wait_s: float = 30.0) -> None:
        self._tasks[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks[0]
        deadline = time.monotonic() + wait_s
        while any(self._outstanding.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._tasks[1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks[1]
        if self._producer is not None:
            await self._producer.stop()
        if self._redis is not None:
            await self._redis.aclose()

    async def _send_loop(self) -> None:
        partitions = sorted(self.tracks)
        n = 0
        next_at = time.monotonic()
        while True:
            partition = partitions[n % len(partitions)]
            track_id = self.tracks[partition]
            now_ms = int(time.time() * 1000) + self.clock_offset_ms
            day = now_ms - now_ms % 86_400_000
            event = {"event_id": f"{track_id}-{n}", "track_id": track_id,
                     "occurred_at": now_ms, "user_id": "bench-probe", "use": "play",
                     "country": "DE"}
            key = (partition, day)
            self._counts[key] = self._counts.get(key, 0) + 1
            sent_at = time.monotonic()
            await self._producer.send(self.run.uses_topic, orjson.dumps(event),
                                      key=track_id.encode(), partition=partition)
            self._outstanding.setdefault(key, []).append((self._counts[key], sent_at, 0.0))
            self.truth.use(event, partition)
            self.sent += 1
            n += 1
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _poll_loop(self) -> None:
        while True:
            keys = [key for key, items in self._outstanding.items() if items]
            if keys:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for partition, day in keys:
                        pipe.hget("{" + self.run.prefix + f":{partition}}}:t:1d:{day}",
                                  f"play|{self.tracks[partition]}")
                    values = await pipe.execute()
                now = time.monotonic()
                for key, value in zip(keys, values, strict=True):
                    seen = int(value or 0)
                    items = self._outstanding[key]
                    while items and items[0][0] <= seen:
                        _, sent_at, _ = items.pop(0)
                        self.latencies.append((round(sent_at - self.t0, 3), now - sent_at))
            await asyncio.sleep(self.poll_s)

    def summary(self, since_t: float = 0.0) -> dict[str, Any]:
        values = [lat for t, lat in self.latencies if t >= since_t]
        result: dict[str, Any] = {"probes_sent": self.sent, "probes_seen": len(self.latencies),
                                  "probes_used": len(values)}
        for q in (50, 95, 99):
            value = percentile(values, q)
            result[f"p{q}_s"] = round(value, 3) if value is not None else None
        result["max_s"] = round(max(values), 3) if values else None
        return result


def histogram_quantiles(metrics: dict[str, float], name: str) -> dict[str, float | None]:
    """p50/p95/p99 (upper bucket bounds) of a Prometheus histogram from scraped metrics."""
    buckets: list[tuple[float, float]] = []
    for key, value in metrics.items():
        if key.startswith(name + "_bucket{"):
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), value))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out: dict[str, float | None] = {"count": total}
    for q in (50, 95, 99):
        out[f"p{q}_le_s"] = None
        if total:
            for upper, count in buckets:
                if count >= total * q / 100:
                    out[f"p{q}_le_s"] = upper
                    break
    return out


@dataclass(slots=True)
class Timer:
    started: float = field(default_factory=time.monotonic)

    def __call__(self) -> float:
        return time.monotonic() - self.started
