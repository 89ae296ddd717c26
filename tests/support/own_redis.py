"""A redis-server of a test's own, on a spare port, that the test may kill and restart.

For outages without touching the shared Redis of the local stack: its data is on
disk (AOF, fsync always), so a restart brings back every acknowledged write.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support.pipeline import free_port


class OwnRedis:
    """A redis-server of this test's own, on a spare port, with its data on disk (AOF)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server not found (deploy/local/install-deps.sh installs it)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=open(self.folder / "redis.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                             text=True, check=False).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                pytest.fail(f"own redis-server did not start on {self.port}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
