"""What is running: version, commit and the versions of the libraries that matter.

Shown by ``streamer --version`` and exported as ``streamer_build_info``, so a dashboard
can tell which build each worker runs during a rolling upgrade. The commit comes from
``STREAMER_BUILD_COMMIT`` (the image build sets it, see deploy/docker/Dockerfile), else
from git when running from a checkout, else ``unknown``.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from streamer import __version__


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _git_commit() -> str:
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / ".git").exists():
        return "unknown"
    try:
        result = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


@functools.cache
def build_info() -> dict[str, str]:
    """Label values of ``streamer_build_info`` (computed once per process)."""
    return {
        "version": __version__,
        "commit": os.environ.get("STREAMER_BUILD_COMMIT") or _git_commit(),
        "python": platform.python_version(),
        "faust": _distribution_version("faust-streaming"),
        "aiokafka": _distribution_version("aiokafka"),
    }


def version_line() -> str:
    info = build_info()
    return (f"streamer {info['version']} (commit {info['commit']}; Python {info['python']}, "
            f"faust-streaming {info['faust']}, aiokafka {info['aiokafka']})")
