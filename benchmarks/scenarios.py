"""The benchmark scenarios. Each returns its result dict and fills a Report.

Methodology (2 shared cores, Kafka and Redis co-located):

* Capacity figures (``max``, ``day``, ``peers``) are measured on a backlog: the events
  are produced first, then the consumer under test is started alone and timed from its
  first consumed event to the moment everything is visible (streamer: every partition's
  offset stored in Redis equals the topic's end offset; peers: last record processed,
  or written to Redis). So the load generator never competes for the CPU.
* Live figures (``sustained``, the ``max --ramp`` steps) run the generator paced in real
  event time at the same time as the worker, measure lag, latency (probes), CPU and RSS.
* Every streamer run ends with a reconciliation of all counters in Redis against the
  generator's ground truth: lost = 0 and double = 0, or the mismatches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    TERRITORY_COLUMN,
    BenchRun,
    Probes,
    Sampler,
    Stack,
    describe_flush_rounds,
    histogram_quantiles,
    log,
    percentile,
    territory_cell,
)
from benchmarks.report import Report
from streamer.config import Settings, load_settings
from streamer.loadgen.cli import ProgressBar
from streamer.loadgen.config import DAY_S, TRACKS_PER_DAY, LoadConfig
from streamer.loadgen.sender import LoadResult, LoadRun, SendPlan, run_inline
from streamer.verify.truth import PartitionedTruth

HERE = Path(__file__).resolve().parent


# -- helpers ----------------------------------------------------------------------------


def worker_settings(opts: argparse.Namespace) -> Settings:
    """The settings a worker of this benchmark runs with, where no BenchRun exists yet
    (same sources as ``BenchRun.settings``: this environment plus ``--worker-env``)."""
    return load_settings({**os.environ, **(opts.worker_env or {})})


def base_config(opts: argparse.Namespace, settings: Settings, **overrides: Any) -> LoadConfig:
    """The load of a scenario. Its ground truth must follow the worker's rules, so the
    windows (territory too), the allowed lateness and the dedupe horizon come from the worker's
    ``settings`` (usually ``run.settings``), never from defaults."""
    cfg = LoadConfig(
        seed=opts.seed, catalog=opts.catalog, zipf=opts.zipf, ai_share=opts.ai_share,
        create_share=opts.create_share, duplicate_rate=opts.duplicates, late_rate=opts.late,
        early_rate=opts.early, invalid_rate=opts.invalid,
        batch_events=1 if opts.single else opts.batch_events,
        windows=settings.windows, allowed_lateness_ms=settings.allowed_lateness_ms,
        territory_windows=settings.territory, dedupe_horizon_ms=settings.dedupe_horizon_ms)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    cfg.validate()
    return cfg


async def produce_backlog(run: BenchRun, cfg: LoadConfig, processes: int, progress: bool,
                          uses_topic: str | None = None, tracks_topic: str | None = None,
                          keep_truth: bool = True) -> LoadResult:
    """Send the whole stream flat out (nobody consuming yet)."""
    plan = SendPlan(cfg=cfg, kafka=run.kafka, tracks_topic=tracks_topic or run.tracks_topic,
                    uses_topic=uses_topic or run.uses_topic, partitions=run.partitions,
                    processes=processes, speed=0.0, catalog_ms=cfg.start_ms,
                    keep_truth=keep_truth)
    bar = ProgressBar(cfg.expected_uses, enabled=progress)
    try:
        if processes <= 1 and not progress:
            result = await run_inline(plan)
        else:
            result = await LoadRun(plan).start().wait(bar.update)
    finally:
        bar.close()
    if result.errors:
        raise RuntimeError(f"producing failed: {result.errors[:3]}")
    log(f"produced {result.events:,} events in {result.records:,} records "
        f"(+{result.tracks_records:,} TrackCreated) in {result.wall_s:.1f}s "
        f"= {result.events_per_s:,.0f} ev/s, generator CPU {result.cpu_s:.1f}s")
    return result


def backlog_start_ms(cfg: LoadConfig) -> int:
    """Event time of a backlog's first tick: it ends two minutes before now."""
    return int(time.time() * 1000) - int(cfg.total_sim_s * 1000) - 120_000


async def drain(run: BenchRun, events: int, timeout_s: float, profile: str | None = None,
                sample_s: float = 0.5, track_drain_s: float = 0.05) -> tuple[dict[str, Any],
                                                                             Sampler]:
    """Start the worker on a filled backlog; time first consumed event -> all in Redis."""
    worker = run.start_worker(profile)
    started = time.monotonic()
    first: float | None = None
    while first is None:
        if not worker.alive:
            worker.print_log_tail()
            raise RuntimeError("worker exited during start-up")
        with contextlib.suppress(Exception):
            metrics = await run.metrics()
            if (metrics.get('streamer_records_consumed_total{topic="uses"}', 0)
                    or metrics.get('streamer_records_consumed_total{topic="tracks"}', 0)):
                first = time.monotonic()
                break
        if time.monotonic() - started > 180:
            worker.print_log_tail()
            raise TimeoutError("worker consumed nothing within 180 s")
        await asyncio.sleep(track_drain_s)
    sampler = await Sampler(run, sample_s).start()
    sampler.t0 = first
    await run.wait_drained(timeout_s)
    drained = time.monotonic()
    await sampler.stop()
    metrics = await run.metrics()
    seconds = drained - first
    result = {
        "events": events, "startup_s": round(first - started, 2),
        "drain_s": round(seconds, 2), "events_per_s": round(events / seconds, 1),
        "steady_events_per_s": _steady_rate(sampler.samples, "consumed_u"),
        # Both topics: TrackCreated records cost Faust's per-record delivery as much.
        "steady_records_per_s": _steady_rate(sampler.samples, "records_all"),
        "resources": sampler.resources(),
        "worker_metrics": {k: v for k, v in metrics.items() if _interesting(k)},
    }
    return result, sampler


def _interesting(name: str) -> bool:
    return name.startswith(("streamer_events", "streamer_records", "streamer_duplicates",
                            "streamer_flushes", "streamer_backpressure",
                            "streamer_catalog_lookups", "streamer_pending"))


def _steady_rate(samples: list[dict[str, Any]], key: str) -> float | None:
    """Rate between 10 % and 90 % of the final value (ramp-up and the last flush excluded)."""
    points = [(s["t"], s[key]) for s in samples if s.get(key) is not None]
    if len(points) < 3 or not points[-1][1]:
        return None
    final = points[-1][1]
    inside = [p for p in points if 0.1 * final <= p[1] <= 0.9 * final]
    if len(inside) < 2 or inside[-1][0] == inside[0][0]:
        return None
    return round((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]), 1)


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else None


def new_run(opts: argparse.Namespace, label: str, out: Path,
            extra_env: dict[str, str] | None = None) -> BenchRun:
    env = dict(opts.worker_env or {})
    env.update(extra_env or {})
    return BenchRun(Stack.from_env(), label, out, partitions=opts.partitions, worker_env=env,
                    keep=opts.keep)


def settings_of(run: BenchRun) -> dict[str, Any]:
    s = run.settings
    return {"worker_env": {k: v for k, v in run.env().items() if "PASSWORD" not in k},
            "windows": [list(w) for w in s.windows], "flush_interval_s": s.flush_interval_s,
            "backlog_flush_interval_s": s.backlog_flush_interval_s,
            "dedupe_horizon_ms": s.dedupe_horizon_ms,
            "allowed_lateness_ms": s.allowed_lateness_ms, "partitions": run.partitions}


def _plot_run(report: Report, name: str, sampler: Sampler, title: str,
              marks: dict[str, float] | None = None) -> None:
    series = sampler.series()
    report.plot(f"{name}-throughput", f"{title}: throughput", series["t"],
                {"sent (events/s)": series["sent_eps"],
                 "processed by worker (events/s)": series["consumed_eps"]}, "events/s",
                second={"worker CPU %": series["worker_cpu"]}, second_label="CPU % (1 core=100)",
                marks=marks)
    report.plot(f"{name}-lag", f"{title}: consumer lag", series["t"],
                {"lag (records, Kafka end - Redis offset)": series["lag_records_u"],
                 "lag (events, sent - processed)": series["lag_events_est"]}, "lag",
                second={"worker RSS MB": series["worker_rss_mb"]}, second_label="RSS MB",
                marks=marks)


# -- scenarios ----------------------------------------------------------------------------


async def scenario_smoke(opts: argparse.Namespace, report: Report) -> dict[str, Any]:
    """Seconds-long end-to-end check: small backlog (batch and single), drain, reconcile."""
    results: dict[str, Any] = {}
    for mode, batch in (("batch", 50), ("single", 1)):
        run = new_run(opts, f"smoke-{mode}", report.out_dir)
        try:
            await run.create_topics()
            cfg = base_config(opts, run.settings, duration_s=opts.duration or 3.0,
                              use_rate=opts.rate or 1_000.0, catalog=min(opts.catalog, 300),
                              batch_events=batch, duplicate_rate=0.02, late_rate=0.01,
                              invalid_rate=0.01, early_rate=0.3, track_rate=5.0,
                              initial_trending=5)
            cfg.start_ms = backlog_start_ms(cfg)
            load = await produce_backlog(run, cfg, 1, progress=False)
            measured, _ = await drain(run, load.events, timeout_s=120)
            assert load.truth is not None
            measured["reconcile"] = await run.reconcile(load.truth)
            measured["load"] = load.summary()
            results[mode] = measured
        finally:
            await run.stop_worker()
            await run.cleanup()
    report.set("smoke", results)
    report.line("## Smoke")
    report.table(["records", "events", "drain s", "lost", "double", "mismatched counters",
                  TERRITORY_COLUMN],
                 [[m, r["events"], r["drain_s"], r["reconcile"]["lost"], r["reconcile"]["double"],
                   r["reconcile"]["mismatched_counters"], territory_cell(r["reconcile"])]
                  for m, r in results.items()])
    return results


async def scenario_generator(opts: argparse.Namespace, report: Report) -> dict[str, Any]:
    """The load generator's own maximum: model+encode+truth in-process, and sending."""
    results: dict[str, Any] = {}
    events = opts.events or 1_000_000
    rate = 200_000.0
    for truth in (True, False):
        from streamer.loadgen.model import TrafficModel
        from streamer.loadgen.records import RecordBuilder

        cfg = base_config(opts, worker_settings(opts), use_rate=rate,
                          duration_s=events / rate, start_ms=0)
        cfg.start_ms = backlog_start_ms(cfg)
        model = TrafficModel(cfg, opts.partitions, truth=PartitionedTruth(
            windows=cfg.windows, allowed_lateness_ms=cfg.allowed_lateness_ms) if truth else None)
        builder = RecordBuilder(cfg.batch_events)
        builder.add(model.catalog_tick())
        started = time.perf_counter()
        count = 0
        for tick in model.ticks():
            for record in builder.add(tick):
                count += record.events
        count += sum(r.events for r in builder.flush())
        seconds = time.perf_counter() - started
        key = "encode_with_truth" if truth else "encode_only"
        results[key] = {"events": count, "seconds": round(seconds, 2),
                        "events_per_s_per_process": round(count / seconds, 1)}
        log(f"generator {key}: {count / seconds:,.0f} events/s in one process")
    for processes in sorted({1, opts.processes}):
        run = new_run(opts, f"gen-send-{processes}", report.out_dir)
        try:
            await run.create_topics()
            cfg = base_config(opts, run.settings, use_rate=rate, duration_s=events / rate)
            cfg.start_ms = backlog_start_ms(cfg)
            load = await produce_backlog(run, cfg, processes, progress=opts.progress,
                                         keep_truth=True)
            results[f"send_{processes}_processes"] = {
                "events": load.events, "records": load.records, "wall_s": round(load.wall_s, 2),
                "events_per_s": round(load.events_per_s, 1),
                "mb_per_s": round(load.bytes / 1e6 / load.wall_s, 1),
                "catalog_wall_s": round(load.catalog_wall_s, 2), "cpu_s": round(load.cpu_s, 1),
                "record_shape": "single" if cfg.batch_events <= 1 else
                f"batch of {cfg.batch_events}"}
        finally:
            await run.cleanup()
    report.set("generator", results)
    report.line("## Load generator maximum")
    report.line("Model + JSON encoding + record cutting (+ ground truth), one process, no "
                "Kafka; then sending flat out to Kafka (acks=all, idempotent), all events "
                "produced before anything consumes them.")
    report.line("")
    report.table(["what", "events", "seconds", "events/s"],
                 [[k, v["events"], v.get("seconds", v.get("wall_s")),
                   v.get("events_per_s_per_process", v.get("events_per_s"))]
                  for k, v in results.items()])
    return results


async def scenario_max(opts: argparse.Namespace, report: Report) -> dict[str, Any]:
    """Capacity: drain a backlog; optionally verify live with a rate ramp."""
    results: dict[str, Any] = {}
    events = opts.events or 3_000_000
    sim_rate = opts.rate or 250_000.0
    run = new_run(opts, "max", report.out_dir)
    try:
        await run.create_topics()
        cfg = base_config(opts, run.settings, use_rate=sim_rate,
                          duration_s=events / sim_rate, catalog=opts.catalog)
        cfg.start_ms = backlog_start_ms(cfg)
        load = await produce_backlog(run, cfg, opts.processes, progress=opts.progress)
        log(f"draining {load.events:,} events with one worker"
            + (f" under {opts.profile}" if opts.profile else ""))
        measured, sampler = await drain(run, load.events, timeout_s=opts.timeout,
                                        profile=opts.profile)
        assert load.truth is not None
        measured["reconcile"] = await run.reconcile(load.truth)
        measured["load"] = load.summary()
        measured["settings"] = settings_of(run)
        measured["config"] = cfg.to_dict()
        results["capacity"] = measured
        log(f"capacity: {measured['events_per_s']:,.0f} events/s "
            f"(steady {measured['steady_events_per_s']}) over {measured['drain_s']} s")
        await run.stop_worker()
        _plot_run(report, "max-capacity", sampler, "capacity (backlog drain)")
        report.set("capacity_samples", sampler.samples)
        if opts.profile:
            results["profile_dir"] = f"profile-{run.label}"
    finally:
        await run.stop_worker()
        await run.cleanup()
    if opts.ramp:
        capacity = results["capacity"]["events_per_s"]
        rates = ([float(r) for r in opts.ramp_rates.split(",")] if opts.ramp_rates else
                 [round(capacity * f, -2) for f in (0.4, 0.6, 0.8, 0.95, 1.1)])
        results["ramp"] = await _ramp(opts, report, rates)
    report.set("max", results)
    cap = results["capacity"]
    report.line("## Maximum rate (one worker)")
    shape = ("single-event records" if opts.single else
             f"batch records of {opts.batch_events}")
    report.line(f"Backlog of {cap['events']:,} usage events ({shape}, event time "
                f"{sim_rate:,.0f} events/s), drained by one worker.")
    report.line("")
    report.table(["events/s (first consumed -> all in Redis)", "steady events/s (10-90 %)",
                  "drain s", "worker CPU % mean", "RSS MB max", "lost", "double",
                  TERRITORY_COLUMN],
                 [[cap["events_per_s"], cap["steady_events_per_s"], cap["drain_s"],
                   cap["resources"]["worker_cpu_pct_mean"], cap["resources"]["worker_rss_mb_max"],
                   cap["reconcile"]["lost"], cap["reconcile"]["double"],
                   territory_cell(cap["reconcile"])]])
    report.line(f"Flush rounds (share of samples): {describe_flush_rounds(cap['resources'])}.")
    if "ramp" in results:
        report.line("### Live ramp (generator paced in real time, same machine)")
        report.table(["target events/s", "processed events/s", "lag at end (events)",
                      "lag slope (events/s)", "stable"],
                     [[s["rate"], s["processed_eps"], s["lag_end_events"], s["lag_slope_eps"],
                       s["stable"]] for s in results["ramp"]["steps"]])
        report.line(f"Highest stable rate: {results['ramp']['max_stable_rate']}; "
                    f"reconcile lost {results['ramp']['reconcile']['lost']}, double "
                    f"{results['ramp']['reconcile']['double']}.")
    return results


async def _ramp(opts: argparse.Namespace, report: Report, rates: list[float]) -> dict[str, Any]:
    step_s = opts.step_seconds
    run = new_run(opts, "ramp", report.out_dir)
    try:
        await run.create_topics()
        worker = run.start_worker()
        await worker.wait_healthy(120)
        cfg = base_config(opts, run.settings, schedule=[(step_s, r) for r in rates],
                          catalog=opts.catalog)
        plan = SendPlan(cfg=cfg, kafka=run.kafka, tracks_topic=run.tracks_topic,
                        uses_topic=run.uses_topic, partitions=run.partitions,
                        processes=opts.processes, speed=1.0, wait_for_go=True,
                        catalog_ms=int(time.time() * 1000))
        load = LoadRun(plan).start()
        await load.wait_catalog_sent()
        await run.wait_drained(opts.timeout, uses=False)
        sampler = await Sampler(run, 1.0, load.totals, lambda: load.pids).start()
        load.go()
        go_t = time.monotonic() - sampler.t0
        stopped_early = False

        async def guard() -> None:
            nonlocal stopped_early
            while True:
                await asyncio.sleep(1.0)
                last = sampler.samples[-1] if sampler.samples else {}
                lag = (last.get("sent_events") or 0) - (last.get("consumed_u") or 0)
                if lag > 30 * max(rates):
                    log(f"ramp: lag {lag:,.0f} events, far behind; stopping the ramp")
                    stopped_early = True
                    load.stop()
                    return

        guard_task = asyncio.ensure_future(guard())
        bar = ProgressBar(cfg.expected_uses, enabled=opts.progress)
        try:
            result = await load.wait(bar.update)
        finally:
            bar.close()
            guard_task.cancel()
        end_t = time.monotonic() - sampler.t0
        await run.wait_drained(opts.timeout)
        await sampler.stop()
        assert result.truth is not None
        reconcile = await run.reconcile(result.truth)
        steps: list[dict[str, Any]] = []
        for i, rate in enumerate(rates):
            lo, hi = go_t + i * step_s, go_t + (i + 1) * step_s
            if lo >= end_t:
                break
            window = [s for s in sampler.samples if lo + step_s / 3 <= s["t"] <= hi
                      and s.get("consumed_u") is not None and s.get("sent_events") is not None]
            lag_points = [(s["t"], s["sent_events"] - s["consumed_u"]) for s in window]
            slope = _slope(lag_points)
            processed = _slope([(s["t"], s["consumed_u"]) for s in window])
            lag_end = lag_points[-1][1] if lag_points else None
            stable = (slope is not None and lag_end is not None and slope < 0.03 * rate
                      and lag_end < max(3 * rate, 20_000))
            steps.append({"rate": rate, "processed_eps": round(processed or 0, 1),
                          "lag_end_events": lag_end,
                          "lag_slope_eps": round(slope, 1) if slope is not None else None,
                          "stable": stable, "resources": sampler.resources(lo, hi)})
        stable_rates = [s["rate"] for s in steps if s["stable"]]
        _plot_run(report, "max-ramp", sampler, "live ramp",
                  marks={f"{r:,.0f}/s": go_t + i * step_s for i, r in enumerate(rates)})
        return {"steps": steps, "max_stable_rate": max(stable_rates) if stable_rates else None,
                "stopped_early": stopped_early, "reconcile": reconcile,
                "load": result.summary(), "samples": sampler.samples}
    finally:
        await run.stop_worker()
        await run.cleanup()


async def scenario_sustained(opts: argparse.Namespace, report: Report,
                             rate: float | None = None) -> dict[str, Any]:
    """A fixed rate, paced in real event time, with probes for end-to-end latency."""
    rate = rate or opts.rate or 20_000.0
    duration = opts.duration or 300.0
    run = new_run(opts, "sustained", report.out_dir)
    try:
        await run.create_topics()
        worker = run.start_worker(opts.profile)
        await worker.wait_healthy(120)
        settings = run.settings
        probe_truth = PartitionedTruth(windows=settings.windows,
                                       allowed_lateness_ms=settings.allowed_lateness_ms,
                                       territory_windows=settings.territory)
        probes = Probes(run, probe_truth, interval_s=opts.probe_interval)
        await probes.create_tracks()
        pregenerate = getattr(opts, "pregenerate", True)
        catalog_ms = int(time.time() * 1000)
        cfg = base_config(opts, settings, use_rate=rate, duration_s=duration,
                          catalog=opts.catalog, start_ms=catalog_ms if pregenerate else None)
        plan = SendPlan(cfg=cfg, kafka=run.kafka, tracks_topic=run.tracks_topic,
                        uses_topic=run.uses_topic, partitions=run.partitions,
                        processes=opts.processes, speed=1.0, wait_for_go=True,
                        catalog_ms=catalog_ms, pregenerate=pregenerate)
        load = LoadRun(plan).start()
        if pregenerate:
            log(f"pre-generating {cfg.expected_uses:,} events before the run")
        await load.wait_catalog_sent(timeout_s=3600)
        log("catalog sent; waiting until the worker has it")
        await run.wait_drained(opts.timeout, uses=False)
        sampler = await Sampler(run, 1.0, load.totals, lambda: load.pids).start()
        load.go()
        if pregenerate:
            # The pre-generated stream is dated from catalog_ms: it runs this far behind
            # the wall clock, and the probes are dated on its clock.
            probes.clock_offset_ms = catalog_ms - int(time.time() * 1000)
            log(f"event time runs {-probes.clock_offset_ms / 1000:.1f} s behind the wall clock")
        go_t = time.monotonic() - sampler.t0
        await probes.start(t0=sampler.t0)
        shape = ("single-event records" if cfg.batch_events <= 1 else
                 f"batches of {cfg.batch_events}")
        log(f"sustained: {rate:,.0f} events/s for {duration:.0f} s ({shape})")
        bar = ProgressBar(cfg.expected_uses, enabled=opts.progress)
        try:
            result = await load.wait(bar.update)
        finally:
            bar.close()
        end_t = time.monotonic() - sampler.t0
        await probes.stop(wait_s=30)
        drain_started = time.monotonic()
        await run.wait_drained(opts.timeout)
        drain_after_s = time.monotonic() - drain_started
        await asyncio.sleep(1.5)
        await sampler.stop()
        metrics = await run.metrics()
        assert result.truth is not None
        reconcile = await run.reconcile(result.truth, probe_truth)
        await run.stop_worker()
        warm = go_t + min(10.0, duration / 5)
        window = [s for s in sampler.samples if warm <= s["t"] <= end_t
                  and s.get("consumed_u") is not None and s.get("sent_events") is not None]
        lag_points = [(s["t"], s["sent_events"] - s["consumed_u"]) for s in window]
        lag_records = [s["lag_records_u"] for s in window if s.get("lag_records_u") is not None]
        processed = _slope([(s["t"], s["consumed_u"]) for s in window])
        out: dict[str, Any] = {
            "target_events_per_s": rate, "duration_s": duration,
            "sent_events": result.events, "sent_events_per_s": round(result.events_per_s, 1),
            "processed_events_per_s": round(processed, 1) if processed else None,
            "lag_events_max": max((p[1] for p in lag_points), default=None),
            "lag_events_p50": percentile([p[1] for p in lag_points], 50),
            "lag_events_slope_per_s": round(_slope(lag_points) or 0.0, 1),
            "lag_records_max": max(lag_records, default=None),
            "drain_after_load_s": round(drain_after_s, 2),
            "latency_probes": probes.summary(since_t=warm),
            "latency_worker_histogram": histogram_quantiles(
                metrics, "streamer_end_to_end_latency_seconds"),
            "flush_pass_histogram": histogram_quantiles(
                metrics, "streamer_flush_pass_duration_seconds"),
            "partition_flush_histogram": histogram_quantiles(
                metrics, "streamer_flush_duration_seconds"),
            "resources": sampler.resources(warm, end_t),
            "reconcile": reconcile, "load": result.summary(), "settings": settings_of(run),
            "config": cfg.to_dict(),
        }
        if opts.profile:
            out["profile_dir"] = f"profile-{run.label}"
        _plot_run(report, "sustained", sampler, f"sustained {rate:,.0f} events/s",
                  marks={"go": go_t, "load end": end_t})
        if probes.latencies:
            report.plot("sustained-latency", "end-to-end latency (probes)",
                         [t for t, _ in probes.latencies],
                         {"probe latency s": [lat for _, lat in probes.latencies]}, "seconds")
        report.set("sustained_samples", sampler.samples)
        report.set("sustained_latencies", probes.latencies)
    finally:
        await run.stop_worker()
        await run.cleanup()
    report.set("sustained", out)
    lat = out["latency_probes"]
    res = out["resources"]
    report.line("## Sustained rate")
    report.table(["target ev/s", "sent ev/s", "processed ev/s", "lag max (events)",
                  "lag slope (ev/s)", "p50 s", "p95 s", "p99 s", "worker CPU %", "RSS MB max",
                  "lost", "double", TERRITORY_COLUMN],
                 [[rate, out["sent_events_per_s"], out["processed_events_per_s"],
                   out["lag_events_max"], out["lag_events_slope_per_s"], lat["p50_s"],
                   lat["p95_s"], lat["p99_s"], res["worker_cpu_pct_mean"],
                   res["worker_rss_mb_max"], reconcile["lost"], reconcile["double"],
                   territory_cell(reconcile)]])
    passes = out["flush_pass_histogram"]
    report.line(f"Latency: {lat['probes_used']} probes (produce -> counter visible in Redis, "
                f"polled every 20 ms). A probe waits up to a flush round for its partition's "
                f"flush pass, then the pass: p50 <= {passes.get('p50_le_s')} s, p99 <= "
                f"{passes.get('p99_le_s')} s (the worker's histogram). Flush rounds (share of "
                f"samples): {describe_flush_rounds(res)}.")
    return out


async def scenario_day(opts: argparse.Namespace, report: Report) -> dict[str, Any]:
    """One simulated day (2M TrackCreated + their usage), replayed compressed."""
    fraction = opts.day_fraction
    uses_per_day = opts.uses_per_day
    run = new_run(opts, "day", report.out_dir)
    cfg = base_config(opts, run.settings, track_rate=TRACKS_PER_DAY / DAY_S,
                      use_rate=uses_per_day / DAY_S, duration_s=DAY_S * fraction,
                      catalog=opts.catalog, tick_uses=20_000)
    cfg.start_ms = backlog_start_ms(cfg)
    try:
        await run.create_topics()
        if opts.replay == "backlog":
            load = await produce_backlog(run, cfg, opts.processes, progress=opts.progress)
            measured, sampler = await drain(run, load.events, timeout_s=opts.timeout,
                                            profile=opts.profile, sample_s=1.0)
            wall = measured["drain_s"]
        else:
            worker = run.start_worker(opts.profile)
            await worker.wait_healthy(120)
            plan = SendPlan(cfg=cfg, kafka=run.kafka, tracks_topic=run.tracks_topic,
                            uses_topic=run.uses_topic, partitions=run.partitions,
                            processes=opts.processes, speed=0.0, catalog_ms=cfg.start_ms)
            live = LoadRun(plan).start()
            sampler = await Sampler(run, 1.0, live.totals, lambda: live.pids).start()
            started = time.monotonic()
            bar = ProgressBar(cfg.expected_uses, enabled=opts.progress)
            try:
                load = await live.wait(bar.update)
            finally:
                bar.close()
            await run.wait_drained(opts.timeout)
            wall = time.monotonic() - started
            await sampler.stop()
            measured = {"events": load.events, "wall_s": round(wall, 2),
                        "events_per_s": round(load.events / wall, 1),
                        "resources": sampler.resources()}
        assert load.truth is not None
        measured["reconcile"] = await run.reconcile(load.truth)
        await run.stop_worker()
        simulated_days = cfg.total_sim_s / DAY_S
        measured.update({
            "replay": opts.replay, "simulated_days": simulated_days,
            "tracks_created": load.stats.tracks_created, "uses_sent": load.events,
            "wall_s": round(wall, 2),
            "days_of_traffic_per_hour": round(simulated_days * 3600 / wall, 2),
            "generator_wall_s": round(load.wall_s + load.catalog_wall_s, 1),
            "load": load.summary(), "settings": settings_of(run), "config": cfg.to_dict()})
        _plot_run(report, "day", sampler, f"{simulated_days:g} simulated day(s), {opts.replay}")
        report.set("day_samples", sampler.samples)
    finally:
        await run.stop_worker()
        await run.cleanup()
    report.set("day", measured)
    report.line("## One day of traffic")
    report.line(f"{simulated_days:g} day(s) of event time: {load.stats.tracks_created:,} "
                f"TrackCreated (incl. a catalog of {opts.catalog:,}) and {load.events:,} "
                f"SoundUsed ({uses_per_day:,.0f} a day), replayed as a {opts.replay}.")
    report.line("")
    report.table(["wall s", "days of traffic per hour", "uses/s", "worker CPU %", "RSS MB max",
                  "lost", "double", TERRITORY_COLUMN],
                 [[measured["wall_s"], measured["days_of_traffic_per_hour"],
                   measured["events_per_s"], measured["resources"]["worker_cpu_pct_mean"],
                   measured["resources"]["worker_rss_mb_max"], measured["reconcile"]["lost"],
                   measured["reconcile"]["double"], territory_cell(measured["reconcile"])]])
    return measured


# -- peers --------------------------------------------------------------------------------


async def scenario_peers(opts: argparse.Namespace, report: Report) -> dict[str, Any]:
    """streamer and its peers on the same events, interleaved (benchmarks.peers_scenario)."""
    from benchmarks.peers_scenario import scenario_peers as run_peers

    return await run_peers(opts, report)


class _ProcessWatch:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: list[float] = []
        self.rss: list[float] = []

    async def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(self.pid)
            proc.cpu_percent(None)
            while True:
                await asyncio.sleep(1.0)
                self.cpu.append(proc.cpu_percent(None))
                self.rss.append(proc.memory_info().rss / 2**20)

    def cpu_mean(self) -> float | None:
        return round(sum(self.cpu) / len(self.cpu), 1) if self.cpu else None

    def rss_max(self) -> float | None:
        return round(max(self.rss), 1) if self.rss else None


# -- suite --------------------------------------------------------------------------------


async def scenario_suite(opts: argparse.Namespace, report: Report) -> dict[str, Any]:
    """generator -> max -> sustained at half of max -> peers -> day."""
    out: dict[str, Any] = {}
    quick = opts.quick
    gen_opts = replace_ns(opts, events=300_000 if quick else 1_000_000)
    out["generator"] = await scenario_generator(gen_opts, report)
    max_opts = replace_ns(opts, events=1_000_000 if quick else 5_000_000, ramp=False)
    out["max"] = await scenario_max(max_opts, report)
    half = round(out["max"]["capacity"]["events_per_s"] / 2, -2)
    sus_opts = replace_ns(opts, duration=30.0 if quick else (opts.duration or 300.0))
    out["sustained"] = await scenario_sustained(sus_opts, report, rate=half)
    peer_opts = replace_ns(opts, events=100_000 if quick else None,
                           events_single=30_000 if quick else opts.events_single,
                           events_single_small=10_000 if quick else opts.events_single_small,
                           rounds=1 if quick else opts.rounds)
    out["peers"] = await scenario_peers(peer_opts, report)
    day_opts = replace_ns(opts, day_fraction=0.02 if quick else opts.day_fraction)
    out["day"] = await scenario_day(day_opts, report)
    return out


def replace_ns(ns: argparse.Namespace, **changes: Any) -> argparse.Namespace:
    data = vars(ns).copy()
    data.update(changes)
    return argparse.Namespace(**data)


SCENARIOS = {
    "smoke": scenario_smoke,
    "generator": scenario_generator,
    "max": scenario_max,
    "sustained": scenario_sustained,
    "day": scenario_day,
    "peers": scenario_peers,
    "suite": scenario_suite,
}
