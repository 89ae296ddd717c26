"""Result files of a benchmark run: ``result.json``, ``summary.md`` and PNG plots.

Everything lands in ``benchmarks/results/<UTC timestamp>-<scenario>/`` (git-ignored),
together with the machine, the versions and the settings the figures were measured with.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import REPO

RESULTS = REPO / "benchmarks" / "results"


def new_results_dir(scenario: str, base: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = (base or RESULTS) / f"{stamp}-{scenario}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cmd(args: list[str]) -> str | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10,
                              cwd=REPO).stdout.strip() or None
    except Exception:
        return None


def python_speed(loops: int = 2_000_000, runs: int = 5) -> float:
    """Million loop iterations per second of plain Python, median of ``runs``.

    The same code ran at less than half the speed on this VM a few hours later the same
    day (neighbours on the host); this tells two runs' machines apart, roughly: it
    drifts within a run too.
    """
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        total = 0
        for i in range(loops):
            total += i
        timings.append(time.perf_counter() - started)
    return round(loops / statistics.median(timings) / 1e6, 2)


def machine_info(redis_url: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(), "python": sys.version.split()[0],
        "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
        "python_speed_mloops_per_s": python_speed(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            models = [line.split(":", 1)[1].strip() for line in handle
                      if line.startswith("model name")]
        info["cpu_model"] = models[0] if models else None
    except OSError:
        pass
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("faust-streaming", "aiokafka", "quixstreams", "confluent-kafka", "orjson",
                    "redis", "uvloop", "xxhash", "mode-streaming"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info["versions"] = versions
    info["kafka"] = _kafka_version()
    if redis_url:
        try:
            import redis

            client = redis.Redis.from_url(redis_url)
            server = client.info("server")
            info["redis"] = server.get("redis_version")
            persistence = client.info("persistence")
            info["redis_aof"] = bool(persistence.get("aof_enabled"))
            # Other data in Redis is rewritten with ours by every AOF rewrite.
            info["redis_keys_at_start"] = client.dbsize()
            info["redis_used_mb_at_start"] = round(
                client.info("memory")["used_memory"] / 2**20, 1)
            client.close()
        except Exception as exc:
            info["redis"] = f"unknown ({exc!r})"
    info["git_commit"] = _cmd(["git", "rev-parse", "--short", "HEAD"])
    info["git_dirty"] = bool(_cmd(["git", "status", "--porcelain", "--untracked-files=no"]))
    return info


def _kafka_version() -> str | None:
    import re

    pom = REPO / "deploy" / "local" / "kafka-pom.xml"
    try:
        text = pom.read_text()
    except OSError:
        return None
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    if match:
        return f"Apache Kafka {match.group(1)} (deploy/local, co-located)"
    return None


class Report:
    def __init__(self, out_dir: Path, scenario: str, command: str) -> None:
        self.out_dir = out_dir
        self.data: dict[str, Any] = {"scenario": scenario, "command": command,
                                     "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                  time.gmtime())}
        self.md: list[str] = []
        self.plots: list[str] = []

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def line(self, text: str = "") -> None:
        self.md.append(text)

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.md.append("| " + " | ".join(header) + " |")
        self.md.append("|" + "---|" * len(header))
        for row in rows:
            self.md.append("| " + " | ".join(_fmt(v) for v in row) + " |")
        self.md.append("")

    def plot(self, name: str, title: str, t: list[float], lines: dict[str, list[Any]],
             ylabel: str, second: dict[str, list[Any]] | None = None,
             second_label: str = "", marks: dict[str, float] | None = None) -> str | None:
        """A time-series PNG (matplotlib from the ``bench`` extra; skipped without it)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            self.data.setdefault("notes", []).append("matplotlib missing: no plots")
            return None
        fig, ax = plt.subplots(figsize=(10, 4.5))
        for label, values in lines.items():
            pts = [(x, y) for x, y in zip(t, values, strict=False) if y is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, linewidth=1.2)
        ax.set_xlabel("seconds")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if second:
            ax2 = ax.twinx()
            for label, values in second.items():
                pts = [(x, y) for x, y in zip(t, values, strict=False) if y is not None]
                if pts:
                    ax2.plot([p[0] for p in pts], [p[1] for p in pts], label=label,
                             linewidth=1.0, linestyle="--", color="tab:red")
            ax2.set_ylabel(second_label)
            ax2.legend(loc="upper right")
        for label, x in (marks or {}).items():
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
            ax.text(x, ax.get_ylim()[1], label, fontsize=8, rotation=90, va="top")
        ax.legend(loc="upper left")
        ax.set_title(title)
        fig.tight_layout()
        path = self.out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.plots.append(path.name)
        return path.name

    def write(self) -> Path:
        self.data["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.data["plots"] = self.plots
        (self.out_dir / "result.json").write_text(json.dumps(self.data, indent=2, default=str))
        machine = self.data.get("machine", {})
        head = [f"# Benchmark: {self.data['scenario']}", "",
                f"Command: `{self.data['command']}`  ",
                f"Started {self.data['started_utc']}, finished {self.data['finished_utc']}.  ",
                f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model')}), "
                f"{machine.get('memory_gb')} GB, load average at start "
                f"{_fmt(machine.get('loadavg_at_start'))}; Python {machine.get('python')}; "
                f"{machine.get('kafka')}; Redis {machine.get('redis')} "
                f"(AOF {machine.get('redis_aof')}, {_fmt(machine.get('redis_keys_at_start'))} "
                f"keys and {_fmt(machine.get('redis_used_mb_at_start'))} MB at the start); "
                f"plain Python at the start "
                f"{machine.get('python_speed_mloops_per_s')}M loop iterations/s "
                f"(benchmarks.report.python_speed: compare runs of different days by it).  ",
                "Versions: " + ", ".join(f"{k} {v}" for k, v in
                                         (machine.get("versions") or {}).items() if v) + "  ",
                f"Code: {machine.get('git_commit')}"
                f"{' (dirty)' if machine.get('git_dirty') else ''}",
                ""]
        leftovers = self.data.get("leftovers_at_start") or {}
        if leftovers.get("found"):
            verb = "deleted before the run" if leftovers["action"] == "clean" else (
                "**present during the run** (they slow Redis: compare with care)")
            head += [f"State left by earlier runs, {verb}: " + "; ".join(
                f"{run} ({found['redis_keys']:,} keys, {len(found['topics'])} topics)"
                for run, found in leftovers["found"].items()), ""]
        plots = [f"![{name}]({name})" for name in self.plots]
        (self.out_dir / "summary.md").write_text("\n".join(head + self.md + [""] + plots) + "\n")
        return self.out_dir


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)
