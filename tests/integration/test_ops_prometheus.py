"""A real Prometheus scrapes a real worker; its query API must show what was sent.

Prometheus is Debian's ``prometheus`` package (/usr/bin/prometheus, installed in CI by
deploy/local/install-deps.sh), started here with a temporary config (1 s scrapes of the
worker's /metrics, the repository's alert rules loaded) and a temporary TSDB, on a free
port; it is killed at the end. The test sends a known mix of events (valid ones in
batch and single records, duplicates, invalid JSON, an invalid field, late events,
TrackCreated) and checks through ``/api/v1/query`` that every counter equals it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from support.pipeline import (
    HOUR,
    MINUTE,
    WINDOWS,
    Pipeline,
    free_port,
    now_ms,
    send_single,
    track_event,
    use_event,
)

from streamer.verify import GroundTruth, compare

ROOT = Path(__file__).resolve().parents[2]
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


class PrometheusProcess:
    """``prometheus`` on 127.0.0.1:<free port> with a temporary config and TSDB."""

    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s") -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            pytest.fail("prometheus not found: install Debian's 'prometheus' package "
                        "(deploy/local/install-deps.sh prometheus)", pytrace=False)
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(ALERT_RULES, workdir / "alerts.yml")
        config = {
            "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                       "evaluation_interval": scrape_interval},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": "streamer", "metrics_path": "/metrics",
                                "static_configs": [{"targets": targets}]}],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self.workdir / 'data'}",
                 "--storage.tsdb.retention.time=2h",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def _get(self, path: str, **params: str) -> Any:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                self.url + path, params=params) as response:
            if path.startswith("/api/"):
                body = await response.json()
                assert body.get("status") == "success", body
                return body["data"]
            return response.status

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited with {self.process.returncode}:\n"
                            f"{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                if await self._get("/-/ready") == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.25)

    async def query(self, promql: str) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return data["result"]

    async def scalar(self, promql: str) -> float | None:
        """The value of a one-element vector result; None when the result is empty."""
        result = await self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    async def by_label(self, promql: str, label: str) -> dict[str, float]:
        return {item["metric"].get(label, ""): float(item["value"][1])
                for item in await self.query(promql)}

    async def rules(self) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/rules")
        return [rule for group in data["groups"] for rule in group["rules"]]




async def wait_for_value(prom: PrometheusProcess, promql: str, expected: float,
                         timeout: float = 60.0) -> None:
    """Poll an instant query until it equals ``expected`` (scrapes lag the worker)."""
    deadline = time.monotonic() + timeout
    last: float | None = None
    while True:
        last = await prom.scalar(promql)
        if last == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{promql} = {last} after {timeout}s, expected {expected}\n"
                                 f"prometheus log:\n{prom.log_tail()}")
        await asyncio.sleep(0.5)


@pytest.mark.timeout(300)
async def test_prometheus_scrapes_exact_counters(make_pipeline: Callable[..., Awaitable[Pipeline]],
                                                 tmp_path: Path) -> None:
    pipe = await make_pipeline(partitions=2)
    worker = pipe.worker("worker")
    port = worker.env["STREAMER_WEB_PORT"]
    prom = PrometheusProcess(tmp_path / "prometheus", [f"127.0.0.1:{port}"])
    try:
        worker.start()
        prom.start()
        await asyncio.gather(worker.wait_healthy(120), prom.wait_ready())

        truth = GroundTruth(WINDOWS)
        base = now_ms() - 20 * MINUTE
        tracks = [f"prom-track-{n}" for n in range(6)]
        track_events = [track_event(t, base, genre="lofi" if n % 2 else "ambient")
                        for n, t in enumerate(tracks)]
        valid = [use_event(tracks[n % len(tracks)], "create" if n % 3 else "play",
                           base + n * 1000, user_id=f"user-{n % 7}") for n in range(240)]
        single = valid[:30]          # sent as one record each
        batched = valid[30:]
        duplicates = valid[100:112]  # same event ids again
        invalid = [dict(valid[0], event_id=f"bad-country-{n}", country="de") for n in range(2)]
        late = [use_event(tracks[0], "play", base - 2 * HOUR) for _ in range(3)]
        not_json = [b"{not json", b"\xff\xfe", b"[1, 2"]

        records = {"uses": 0, "tracks": 0}
        async with pipe.producer(batch_events=50, linger_ms=20) as producer:
            for event in track_events:
                await producer.send_track(event)
                truth.track_created(event)
            await producer.flush()
            records["tracks"] += len(track_events)
            for event in single:
                await send_single(producer, event)
            records["uses"] += len(single)
            for event in batched:
                await producer.send_use(event)
            await producer.flush()
            records["uses"] += producer.records_sent - records["tracks"] - len(single)
            for event in valid:
                truth.use(event)
            # Duplicates, one invalid field each, late events: one record each, to the
            # partition of their track (late ones after the watermark moved past them).
            for event in [*duplicates, *invalid, *late]:
                await send_single(producer, event)
            records["uses"] += len(duplicates) + len(invalid) + len(late)
        async with pipe.raw_producer() as raw:
            for value in not_json:
                await raw.send(pipe.uses_topic, value, key=tracks[1])
            records["uses"] += len(not_json)

        await pipe.drained()
        result = compare(truth.expected(), await pipe.counters())
        assert result.ok, str(result)

        # Drained: the worker has processed every record. Wait for a scrape after that;
        # from then on every counter below is final.
        job = '{job="streamer"}'
        drained_at = time.time()
        deadline = time.monotonic() + 30
        while (await prom.scalar(f"max(timestamp(up{job}))") or 0) <= drained_at:
            assert time.monotonic() < deadline, "no scrape after the drain within 30 s"
            await asyncio.sleep(0.3)
        assert await prom.scalar(f"sum(streamer_events_counted_total{job})") == len(valid)
        assert await prom.scalar(f"sum(streamer_duplicates_total{job})") == len(duplicates)
        rejected = await prom.by_label(
            f"sum by (reason) (streamer_events_rejected_total{job})", "reason")
        assert rejected == {"invalid_value": len(invalid), "late": len(late),
                            "not_json": len(not_json)}, rejected
        consumed_records = await prom.by_label(
            f"sum by (topic) (streamer_records_consumed_total{job})", "topic")
        assert consumed_records == records, consumed_records
        consumed_events = await prom.by_label(
            f"sum by (topic) (streamer_events_consumed_total{job})", "topic")
        assert consumed_events == {
            "uses": len(valid) + len(duplicates) + len(invalid) + len(late),
            "tracks": len(track_events)}, consumed_events

        # The rest of the operational picture, as Prometheus sees it.
        assert await prom.scalar(f"up{job}") == 1
        assert await prom.scalar(f"sum(streamer_partitions_assigned{job})") == 2
        assert await prom.scalar(f"sum(streamer_rebalances_total{job})") >= 1
        assert await prom.scalar(f"sum(streamer_flushes_total{job})") >= 1
        # One pass per interval at least, each covering every partition's flush.
        passes = await prom.scalar(f"sum(streamer_flush_pass_duration_seconds_count{job})")
        assert passes is not None and passes >= 1
        assert await prom.scalar(
            f"sum(streamer_end_to_end_latency_seconds_count{job})") >= 1
        await wait_for_value(prom, f"sum(streamer_consumer_lag_records{job})", 0)
        await wait_for_value(prom, f"sum(streamer_pending_attribution_uses{job})", 0)
        since_flush = await prom.scalar(f"time() - streamer_last_flush_timestamp_seconds{job}")
        assert since_flush is not None and since_flush < 30
        assert await prom.scalar(f"sum(streamer_dlq_produce_errors_total{job})") == 0
        latency_p99 = await prom.scalar(
            "histogram_quantile(0.99, sum by (le) "
            f"(streamer_end_to_end_latency_seconds_bucket{job}))")
        assert latency_p99 is not None and latency_p99 > 0

        # The repository's alert rules load and evaluate in a real Prometheus; nothing
        # fires for a healthy worker. (Rules evaluated before the first scrape, which
        # Prometheus delays by a few seconds after its start, see no `up` yet: wait for
        # an evaluation after it.)
        deadline = time.monotonic() + 30
        while True:
            rules = await prom.rules()
            active = [(r["name"], r["state"]) for r in rules if r["state"] != "inactive"]
            if not active or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert not active, active
        assert {rule["name"] for rule in rules} >= {
            "StreamerWorkerDown", "StreamerNoFlush", "StreamerConsumerLagGrowing",
            "StreamerDeadLetterRateHigh", "StreamerRedisErrors"}
        assert all(rule["health"] == "ok" for rule in rules), rules
        # Bytes of the DLQ: every rejected input is there exactly once.
        dlq = await pipe.dlq()
        assert len(dlq) == sum(rejected.values())
        assert sorted(r.value for r in dlq if r.reason.startswith("not_json")) == sorted(not_json)
        late_values = [orjson.loads(r.value) for r in dlq if r.reason.startswith("late")]
        assert sorted(e["event_id"] for e in late_values) == sorted(e["event_id"] for e in late)
    finally:
        prom.stop()
        worker.kill()
    assert prom.process is not None and prom.process.poll() is not None
