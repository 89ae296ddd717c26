"""Machinery of the fault-injection scenarios: private services, sending, checking.

* :class:`PrivateKafka` / :class:`PrivateRedis`: a broker or a redis-server of our own
  (deploy/local scripts on other ports and folders), for the scenarios that restart,
  kill or freeze them; the shared stack on 9092/6379 is never touched.
* :class:`Sender`: sends a workload's records in order (optionally paced, pausable),
  remembering every record's offset.
* :class:`Scenario`: names (topics, app id, key prefix, web port), worker processes,
  and the final check: drained, every counter (plain and per territory) equal to ground
  truth, every rejected input in the dead-letter topic with a reason. Its figures go
  to stdout, to the session summary and to ``$STREAMER_FAULTS_DIR/results.jsonl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fault_workload import USES, Record, Workload

from streamer.state.connection import connect as connect_redis
from streamer.verify import compare
from streamer.verify.kafka_progress import wait_drained
from streamer.verify.redis_counters import (
    delete_prefixed_keys,
    pending_tracks,
    read_counters,
    read_territory_counters,
)
from streamer.verify.worker_process import WorkerProcess

REPO = Path(__file__).resolve().parents[2]
LOCAL_SCRIPTS = REPO / "deploy" / "local"
FAULTS_DIR = Path(os.environ.get("STREAMER_FAULTS_DIR")
                  or Path(tempfile.gettempdir()) / "streamer-faults")
SESSION_TIMEOUT = "6s"
# Figures of the scenarios run in this pytest session (printed by conftest at the end).
RESULTS: list[dict[str, Any]] = []


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(first: int, count: int, step: int = 10, tries: int = 50) -> list[int]:
    """``count`` consecutive free ports, trying ``first``, ``first + step``, ..."""
    for attempt in range(tries):
        base = first + attempt * step
        ports = list(range(base, base + count))
        if all(port_free(port) for port in ports):
            return ports
    raise RuntimeError(f"no {count} free consecutive ports from {first}")


# ------------------------------------------------------------------ private services


class _PrivateService:
    script: str

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.dir = FAULTS_DIR / name
        self.env = {**os.environ, "STREAMER_LOCAL_DIR": str(self.dir), **env}

    def run(self, action: str, timeout: float = 180.0) -> str:
        started = time.monotonic()
        result = subprocess.run(
            [str(LOCAL_SCRIPTS / self.script), action], env=self.env, capture_output=True,
            text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{self.script} {action} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        log(f"{self.script} {action}: {time.monotonic() - started:.1f}s")
        return result.stdout

    async def arun(self, action: str, timeout: float = 180.0) -> str:
        return await asyncio.to_thread(self.run, action, timeout)

    def fresh(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateKafka(_PrivateService):
    """A broker with a PLAINTEXT listener (``bootstrap``) and, given a PEM keystore, also
    a SASL_SSL one (``sasl_ssl_bootstrap``) taking PLAIN and SCRAM-SHA-256/512 logins."""

    script = "kafka.sh"

    def __init__(self, name: str, *, sasl_ssl_keystore: Path | None = None,
                 plain_users: Mapping[str, str] | None = None) -> None:
        self.port, self.controller_port, self.sasl_ssl_port = free_ports(19192, 3)
        env = {
            "STREAMER_LOCAL_KAFKA_PORT": str(self.port),
            "STREAMER_LOCAL_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "STREAMER_LOCAL_KAFKA_HEAP": "512m",
        }
        if sasl_ssl_keystore is not None:
            users = " ".join(f'user_{user}="{password}"'
                             for user, password in (plain_users or {}).items())
            listener = "listener.name.sasl_ssl"
            env["STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES"] = "\n".join([
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port},"
                f"SASL_SSL://127.0.0.1:{self.sasl_ssl_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"SASL_SSL://127.0.0.1:{self.sasl_ssl_port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                "SASL_SSL:SASL_SSL",
                "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                f"{listener}.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
                f"{listener}.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                f"{listener}.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={sasl_ssl_keystore}",
            ])
        super().__init__(name, env)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.sasl_ssl_bootstrap = f"127.0.0.1:{self.sasl_ssl_port}"

    def add_scram_user(self, mechanism: str, user: str, password: str) -> None:
        """Create SCRAM credentials with Kafka's own ConfigCommand (over PLAINTEXT)."""
        libs = Path(self.env.get("STREAMER_LOCAL_CACHE_DIR") or REPO / ".cache") / (
            "kafka-4.1.1") / "libs"
        java = shutil.which("java") or "java"
        subprocess.run(
            [java, "-cp", f"{libs}/*", "kafka.admin.ConfigCommand", "--bootstrap-server",
             self.bootstrap, "--alter", "--add-config",
             f"{mechanism}=[iterations=4096,password={password}]",
             "--entity-type", "users", "--entity-name", user],
            check=True, capture_output=True, timeout=120)


class PrivateRedis(_PrivateService):
    script = "redis.sh"

    def __init__(self, name: str) -> None:
        (self.port,) = free_ports(16479, 1)
        super().__init__(name, {"STREAMER_LOCAL_REDIS_PORT": str(self.port)})
        self.url = f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return int((self.dir / "redis" / "redis.pid").read_text().strip())

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung or partitioned server)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


# ------------------------------------------------------------------ names and topics


@dataclass(slots=True)
class Names:
    scenario: str
    tag: str
    app_id: str
    uses: str
    tracks: str
    dlq: str
    prefix: str

    @classmethod
    def make(cls, scenario: str) -> Names:
        tag = f"f{scenario}-{uuid.uuid4().hex[:8]}"
        return cls(scenario, tag, f"faults-{tag}", f"{tag}.sounds.used",
                   f"{tag}.tracks.created", f"{tag}.dlq", f"faults:{tag}")

    def topic(self, code: str) -> str:
        return self.uses if code == USES else self.tracks


async def create_topics(bootstrap: str, names: Names, partitions: int,
                        max_message_bytes: int | None = None, replication_factor: int = 1) -> None:
    """The input topics and the DLQ, created before the worker starts (it keeps them)."""
    configs = {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    await admin.start()
    try:
        await admin.create_topics([
            NewTopic(name, partitions, replication_factor, topic_configs=dict(configs))
            for name in (names.uses, names.tracks, names.dlq)])
        deadline = time.monotonic() + 30
        while True:
            described = await admin.describe_topics([names.uses, names.tracks, names.dlq])
            if all(meta["error_code"] == 0 and len(meta["partitions"]) == partitions and all(
                    p["leader"] >= 0 for p in meta["partitions"]) for meta in described):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics without leaders: {described}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Names) -> None:
    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        await asyncio.wait_for(admin.start(), 15)
        try:
            await asyncio.wait_for(
                admin.delete_topics([names.uses, names.tracks, names.dlq]), 15)
        finally:
            await admin.close()


async def delete_keys(redis_url: str, prefix: str) -> None:
    with contextlib.suppress(Exception):
        client = connect_redis(redis_url, socket_timeout=10)
        try:
            await delete_prefixed_keys(client, prefix)
        finally:
            await client.aclose()


# ------------------------------------------------------------------ sending


class Sender:
    """Sends a workload in order with an idempotent producer, pacing and pausing on demand.

    Every record's offset is stored on it once Kafka acknowledged it. ``pause()`` returns
    once every record sent so far is acknowledged (nothing in flight while a broker is
    restarted); ``resume()`` carries on.
    """

    def __init__(self, bootstrap: str, names: Names, workload: Workload, *,
                 events_per_s: float | None = None, chunk_records: int = 200) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.workload = workload
        self.events_per_s = events_per_s
        self.chunk_records = chunk_records
        self.sent_records = 0
        self.sent_events = 0
        self._producer: AIOKafkaProducer | None = None
        self._running = asyncio.Event()
        self._running.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    @property
    def progress(self) -> float:
        return self.sent_records / max(1, len(self.workload.records))

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
            linger_ms=5, max_request_size=8 << 20, request_timeout_ms=30_000,
            max_batch_size=1 << 20)
        await producer.start()
        return producer

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def wait(self, timeout: float) -> None:
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def pause(self) -> None:
        self._running.clear()
        await asyncio.wait_for(self._idle.wait(), 120)

    def resume(self) -> None:
        self._running.set()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 30)

    async def _run(self) -> None:
        records = self.workload.records
        started = time.monotonic()
        index = 0
        while index < len(records):
            await self._running.wait()
            self._idle.clear()
            try:
                if self._producer is None:
                    self._producer = await self._start_producer()
                chunk = records[index:index + self.chunk_records]
                await self._send_chunk(chunk)
            finally:
                self._idle.set()
            index += len(chunk)
            self.sent_records = index
            self.sent_events += sum(record.events for record in chunk)
            if self.events_per_s:
                ahead = self.sent_events / self.events_per_s - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            else:
                await asyncio.sleep(0)
        self.done.set()

    async def _send_chunk(self, chunk: list[Record]) -> None:
        assert self._producer is not None
        futures = []
        for record in chunk:
            topic = self.names.topic(record.topic)
            futures.append(await self._producer.send(
                topic, record.value, key=record.key, partition=record.partition))
        for record, metadata in zip(chunk, await asyncio.gather(*futures), strict=True):
            record.offset = metadata.offset


# ------------------------------------------------------------------ worker helpers


def worker_env(names: Names, bootstrap: str, redis_url: str, port: int, partitions: int,
               **extra: str) -> dict[str, str]:
    env = {
        "STREAMER_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMER_REDIS_URL": redis_url,
        "STREAMER_APP_ID": names.app_id,
        "STREAMER_USES_TOPIC": names.uses,
        "STREAMER_TRACKS_TOPIC": names.tracks,
        "STREAMER_DLQ_TOPIC": names.dlq,
        "STREAMER_PARTITIONS": str(partitions),
        "STREAMER_KEY_PREFIX": names.prefix,
        "STREAMER_WEB_PORT": str(port),
        "STREAMER_KAFKA_SESSION_TIMEOUT": SESSION_TIMEOUT,
        "STREAMER_DATA_DIR": str(FAULTS_DIR / "data" / names.tag / str(port)),
    }
    env.update(extra)
    return env


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


async def metrics(worker: WorkerProcess, timeout: float = 3.0) -> dict[str, float]:
    """The worker's /metrics as ``{"name{labels}": value}`` (labels kept verbatim)."""
    status, body = await worker.get("/metrics", timeout=timeout)
    if status != 200 or not isinstance(body, str):
        raise RuntimeError(f"/metrics answered {status}")
    values: dict[str, float] = {}
    for line in body.splitlines():
        match = _METRIC.match(line)
        if match:
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def metric_sum(values: Mapping[str, float], name: str) -> float:
    return sum(value for key, value in values.items()
               if key == name or key.startswith(name + "{"))


async def next_flush(worker: WorkerProcess, timeout: float = 10.0) -> float | None:
    """Return the flush count right after /metrics shows one more applied flush.

    None if no new flush shows within ``timeout`` (the worker may be down).
    """
    before = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            flushes = metric_sum(await metrics(worker, timeout=2.0), "streamer_flushes_total")
        except Exception:
            await asyncio.sleep(0.05)
            continue
        if before is None:
            before = flushes
        elif flushes > before:
            return flushes
        await asyncio.sleep(0.01)
    return None


async def health(worker: WorkerProcess) -> tuple[int, Any]:
    try:
        return await worker.get("/v1/health", timeout=3.0)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return 0, repr(exc)


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def worker_log_text(worker: WorkerProcess) -> str:
    try:
        return worker.log_path.read_text(errors="replace")
    except OSError:
        return ""


# ------------------------------------------------------------------ the dead-letter topic


async def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic`` up to its current end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=16 << 20)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: {len(records)} records, still {remaining}")
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, messages in batch.items():
                records.extend(messages)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


@dataclass(slots=True)
class DlqCheck:
    expected: int = 0
    records: int = 0
    matched: int = 0
    missing: int = 0
    unexpected: int = 0
    wrong_reason: int = 0
    redelivered: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_reason)


def _headers(message: Any) -> dict[str, str]:
    return {key: (value or b"").decode(errors="replace") for key, value in message.headers}


def check_dlq(messages: list[Any], workload: Workload, names: Names) -> DlqCheck:
    """Every expected rejection is in the DLQ (at least once), with the right reason."""
    check = DlqCheck()
    expected: dict[tuple[str, int, int], Counter[bytes]] = defaultdict(Counter)
    rules: dict[tuple[str, int, int, bytes], tuple[frozenset[str], str | None]] = {}
    for record in workload.records:
        if not record.rejects:
            continue
        assert record.offset >= 0, "record never acknowledged by Kafka"
        where = (names.topic(record.topic), record.partition, record.offset)
        for reject in record.rejects:
            expected[where][reject.value] += 1
            rules[(*where, reject.value)] = (reject.codes, reject.field)
            check.expected += 1
    got: dict[tuple[str, int, int], Counter[bytes]] = defaultdict(Counter)
    for message in messages:
        check.records += 1
        headers = _headers(message)
        try:
            where = (headers["source_topic"], int(headers["source_partition"]),
                     int(headers["source_offset"]))
        except (KeyError, ValueError):
            check.unexpected += 1
            check.examples.append(f"DLQ record without source headers: {headers}")
            continue
        value = message.value or b""
        got[where][value] += 1
        rule = rules.get((*where, value))
        if rule is None:
            check.unexpected += 1
            if len(check.examples) < 10:
                check.examples.append(f"unexpected DLQ record {where} {headers.get('reason')!r}"
                                      f" {value[:120]!r}")
            continue
        codes, field_name = rule
        reason = headers.get("reason", "")
        code, _, rest = reason.partition(":")
        named = rest.split(":", 1)[0] if field_name is not None else None
        if code not in codes or (field_name is not None and named != field_name):
            check.wrong_reason += 1
            if len(check.examples) < 10:
                check.examples.append(f"reason {reason[:100]!r} for {where}, expected "
                                      f"{sorted(codes)} on {field_name}: {value[:80]!r}")
    for where, wanted in expected.items():
        have = got.get(where, Counter())
        for value, count in wanted.items():
            present = min(count, have.get(value, 0))
            check.matched += present
            if present < count:
                check.missing += count - present
                if len(check.examples) < 10:
                    check.examples.append(f"missing DLQ record {where}: {value[:120]!r}")
    check.redelivered = check.records - check.matched - check.unexpected
    return check


# ------------------------------------------------------------------ a scenario


@dataclass(slots=True)
class Outcome:
    lost: int
    double: int
    mismatches: int
    dlq: DlqCheck
    summary: str


class Scenario:
    """One scenario's resources and its final verdict."""

    def __init__(self, number: int, title: str, bootstrap: str, redis_url: str,
                 partitions: int, tmp_path: Path) -> None:
        self.number = number
        self.title = title
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.partitions = partitions
        self.names = Names.make(str(number))
        self.tmp_path = tmp_path
        self.faults: list[str] = []
        self.started = time.monotonic()
        self.workers: list[WorkerProcess] = []
        self.notes: dict[str, Any] = {}
        self._ports = iter(free_ports(26100 + 20 * number, 4, step=100))

    def fault(self, description: str) -> None:
        self.faults.append(description)
        log(f"scenario {self.number}: fault {len(self.faults)}: {description}")

    def worker(self, name: str = "w", loglevel: str = "info", **extra: str) -> WorkerProcess:
        env = worker_env(self.names, self.bootstrap, self.redis_url, next(self._ports),
                         self.partitions, **extra)
        worker = WorkerProcess(env, self.tmp_path / f"{name}.log", loglevel=loglevel)
        self.workers.append(worker)
        return worker

    async def setup(self, max_message_bytes: int | None = None,
                    replication_factor: int = 1) -> None:
        FAULTS_DIR.mkdir(parents=True, exist_ok=True)
        await create_topics(self.bootstrap, self.names, self.partitions, max_message_bytes,
                            replication_factor)

    async def cleanup(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.kill()
        if os.environ.get("STREAMER_TEST_KEEP", "") in ("", "0"):
            await delete_topics(self.bootstrap, self.names)
            await delete_keys(self.redis_url, self.names.prefix)
            shutil.rmtree(FAULTS_DIR / "data" / self.names.tag, ignore_errors=True)

    async def pending_left(self, client: Any) -> int:
        return await pending_tracks(client, self.names.prefix, self.partitions)

    async def verify(self, workload: Workload, drain_timeout: float = 120.0) -> Outcome:
        """Wait until drained, then compare every counter and the dead-letter topic."""
        client = connect_redis(self.redis_url, socket_timeout=30)  # Sentinel, Cluster too
        try:
            await wait_drained(self.bootstrap, client, self.names.prefix,
                               [self.names.uses, self.names.tracks], self.partitions,
                               drain_timeout)
            # Uses that arrived before their track are attributed by the flush after the
            # track; the drained offsets include it, but allow one more flush pass.
            deadline = time.monotonic() + 15
            while await self.pending_left(client) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            pending = await self.pending_left(client)
            actual = await read_counters(client, self.names.prefix)
            territory = await read_territory_counters(client, self.names.prefix)
        finally:
            await client.aclose()
        result = compare(workload.truth.expected(), actual)
        # The territory counters (the worker's default 1d) per country, by the same rules.
        result.add(compare(workload.truth.expected_territory(), territory))
        actual = {**actual, **territory}
        messages = await read_topic(self.bootstrap, self.names.dlq)
        dlq = check_dlq(messages, workload, self.names)
        stats = workload.stats
        elapsed = time.monotonic() - self.started
        summary = (
            f"scenario {self.number} ({self.title}): events sent {stats.events_sent} "
            f"(distinct valid uses {stats.uses_distinct}, duplicates {stats.duplicates}, "
            f"tracks {stats.tracks}, malformed {stats.malformed}) in {stats.records} records "
            f"({stats.batch_records} batch, {stats.single_records} single); "
            f"faults injected {len(self.faults)}; lost {result.lost}, double {result.double}, "
            f"mismatched counters {len(result.mismatches)} of {len(actual)}; "
            f"DLQ expected {dlq.expected}, found {dlq.matched}, missing {dlq.missing}, "
            f"unexpected {dlq.unexpected}, wrong reason {dlq.wrong_reason}, "
            f"redelivered {dlq.redelivered}; pending attributions left {pending}; "
            f"{elapsed:.0f}s")
        log(summary)
        if not result.ok:
            log(result.summary(limit=15))
        for example in dlq.examples:
            log("DLQ: " + example)
        RESULTS.append({
            "scenario": self.number, "title": self.title, "events_sent": stats.events_sent,
            "uses_distinct": stats.uses_distinct, "duplicates": stats.duplicates,
            "tracks": stats.tracks, "malformed": stats.malformed, "records": stats.records,
            "faults": len(self.faults), "fault_list": self.faults, "lost": result.lost,
            "double": result.double, "mismatches": len(result.mismatches),
            "counters": len(actual), "dlq_expected": dlq.expected, "dlq_found": dlq.matched,
            "dlq_missing": dlq.missing, "dlq_unexpected": dlq.unexpected,
            "dlq_wrong_reason": dlq.wrong_reason, "dlq_redelivered": dlq.redelivered,
            "pending_left": pending, "seconds": round(elapsed, 1), **self.notes,
        })
        with contextlib.suppress(OSError):
            FAULTS_DIR.mkdir(parents=True, exist_ok=True)
            with open(FAULTS_DIR / "results.jsonl", "a") as handle:
                handle.write(json.dumps(RESULTS[-1]) + "\n")
        return Outcome(result.lost, result.double, len(result.mismatches), dlq, summary)

    def assert_exact(self, outcome: Outcome) -> None:
        assert outcome.lost == 0 and outcome.double == 0 and outcome.mismatches == 0, (
            outcome.summary)
        assert outcome.dlq.ok, outcome.summary + "\n" + "\n".join(outcome.dlq.examples)
