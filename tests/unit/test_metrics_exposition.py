"""/metrics carries the process, platform and build series besides the worker's own."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

import streamer
from streamer.metrics import Metrics


def samples() -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(Metrics().render().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_process_metrics_are_this_process() -> None:
    found = samples()
    ((_, rss),) = found["process_resident_memory_bytes"]
    with open(f"/proc/{os.getpid()}/status") as status:
        vm_rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    assert abs(rss - vm_rss_kb * 1024) < 64 << 20  # same process, give or take allocations
    ((_, cpu),) = found["process_cpu_seconds_total"]
    assert cpu > 0
    assert found["python_info"][0][0]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert "python_gc_collections_total" in found


def test_build_info_names_version_commit_and_libraries() -> None:
    ((labels, value),) = samples()["streamer_build_info"]
    assert value == 1
    assert labels["version"] == streamer.__version__
    assert labels["python"] == ".".join(map(str, sys.version_info[:3]))
    assert labels["faust"] not in ("", "unknown") and labels["aiokafka"] not in ("", "unknown")
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=False, cwd=os.path.dirname(streamer.__file__))
    if head.returncode == 0:  # from a checkout: the commit it is at
        assert labels["commit"] == head.stdout.strip()


def test_build_commit_comes_from_the_image_when_set() -> None:
    code = ("from streamer.metrics import Metrics; "
            "print([l for l in Metrics().render().decode().splitlines() "
            "if l.startswith('streamer_build_info')][0])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "STREAMER_BUILD_COMMIT": "abc123def456"},
                          check=True)
    assert 'commit="abc123def456"' in done.stdout
