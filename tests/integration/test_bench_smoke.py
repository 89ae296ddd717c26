"""The benchmark harness smoke and the load tools' failure messages, run as CI runs them.

``python -m benchmarks smoke`` drives the whole chain: the load generator fills a
backlog (batch and single-event records, with duplicates, late, early and invalid
inputs), a real ``streamer worker`` drains it, and every Redis counter is reconciled
against the generator's ground truth. It runs in a subprocess against the local stack,
in the environment of the CI venv: ``make venv`` installs only the ``test`` extra, so
the ``bench`` extra's packages are hidden from it even where they are installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_EXTRA = ("quixstreams", "matplotlib", "psutil", "pyinstrument")
SMOKE_TIMEOUT_S = 480
UNREACHABLE = "127.0.0.1:1"

# Makes the bench extra's packages unimportable in the subprocesses (worker included,
# as they inherit PYTHONPATH), like in a venv made by `make venv`.
_HIDE_BENCH = f"""
import sys

_HIDDEN = {BENCH_EXTRA!r}


class _HideBenchExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)",
                                      name=name)
        return None


sys.meta_path.insert(0, _HideBenchExtra())
"""


def clean_env(**streamer: str) -> dict[str, str]:
    """This environment without STREAMER_* settings (a stray STREAMER_WINDOWS would change
    the worker but not the harness's ground truth), plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(streamer)
    return env


def without_bench_extra(env: dict[str, str], folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_HIDE_BENCH)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return env


def run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_bench_smoke_reconciles_batch_and_single_records(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """CI's end-to-end gate: generated load, worker and ground truth agree exactly."""
    results = tmp_path / "results"
    env = without_bench_extra(
        clean_env(STREAMER_KAFKA_BOOTSTRAP=kafka_bootstrap, STREAMER_REDIS_URL=redis_url),
        tmp_path / "site")
    hidden = run(["-c", "import psutil"], env, timeout=60)
    assert hidden.returncode != 0 and "hidden by the test" in hidden.stderr  # really hidden

    # --leftovers keep: other runs' state may slow this one, but not change its counts.
    done = run(["-m", "benchmarks", "smoke", "--results-dir", str(results), "--no-progress",
                "--leftovers", "keep"], env, timeout=SMOKE_TIMEOUT_S)

    assert done.returncode == 0, f"smoke exited {done.returncode}:\n{tail(done.stderr)}"
    (out,) = list(results.iterdir())
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    assert result["scenario"] == "smoke"
    assert "error" not in result
    assert result["reconciled"] is True
    assert set(result["smoke"]) == {"batch", "single"}
    for mode, measured in result["smoke"].items():
        check = measured["reconcile"]
        assert (check["lost"], check["double"], check["mismatched_counters"]) == (0, 0, 0), (
            mode, check["first_mismatches"])
        assert check["ok"] is True
        # Not vacuous: the worker counted every use the generator says should count,
        # the stream carried faults, and every expected counter was compared.
        stats = measured["load"]["stats"]
        assert check["events_expected"] == check["events_counted"] == stats["uses_counted"] > 0
        assert check["counters_expected"] == check["counters_actual"] > 0
        # Territory (on by default) reconciled too, every family exact and compared.
        territory = check["territory"]
        assert territory["ok"] is True and territory["counters"] > 0, territory
        assert territory["families"] == {
            family: {"lost": 0, "double": 0, "mismatched_counters": 0}
            for family in ("ttrack", "tholder", "tgenre")}, territory
        assert stats["duplicates"] and stats["late"] and stats["invalid"], stats
        load = measured["load"]
        if mode == "single":
            assert load["records"] == load["events"]
        else:
            assert load["records"] < load["events"]
    summary = (out / "summary.md").read_text()
    assert "## Smoke" in summary
    assert "| batch |" in summary and "| single |" in summary
    assert "territory lost/double" in summary and "tt 0/0, th 0/0, tg 0/0" in summary


def test_streamer_load_without_kafka_fails_with_one_clear_line(tmp_path: Path) -> None:
    """A user without a broker must get a message to act on, not a traceback."""
    env = clean_env(STREAMER_KAFKA_BOOTSTRAP=UNREACHABLE)
    done = run(["-m", "streamer.cli", "load", "--duration", "1", "--no-progress",
                "--truth", str(tmp_path / "truth.jsonl")], env, timeout=120)

    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""
    ours = [line for line in done.stderr.splitlines() if line.startswith("streamer:")]
    assert len(ours) == 1, done.stderr
    assert done.stderr.splitlines()[-1] == ours[0]
    assert "Kafka unreachable" in ours[0] and UNREACHABLE in ours[0]
    assert "Unable connect" not in done.stderr, done.stderr   # aiokafka's own log line
    assert not (tmp_path / "truth.jsonl").exists()


def test_bench_smoke_without_kafka_fails_before_writing_results(tmp_path: Path) -> None:
    """The harness must stop at once, with no half-written results folder to mislead."""
    results = tmp_path / "results"
    done = run(["-m", "benchmarks", "smoke", "--results-dir", str(results), "--no-progress"],
               clean_env(STREAMER_KAFKA_BOOTSTRAP=UNREACHABLE), timeout=120)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("benchmarks:")]
    assert len(ours) == 1 and "Kafka unreachable" in ours[0] and "make up" in ours[0]
    assert not results.exists()
