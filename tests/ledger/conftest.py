from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from streamer.ledger import LedgerLocation, LedgerWriter

SETTINGS = {"allowed_lateness_ms": 3_600_000, "dedupe_horizon_ms": 300_000}


@pytest.fixture
def location(tmp_path: Path) -> LedgerLocation:
    return LedgerLocation(str(tmp_path / "ledger"))


@pytest.fixture
def writer(location: LedgerLocation) -> LedgerWriter:
    return LedgerWriter(location, SETTINGS, code_version="test")


def snapshot(root: str) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: size, modification time (ns) and SHA-256."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            with open(path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            out[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns, digest)
    return out
