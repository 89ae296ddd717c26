"""``streamer worker --loglevel warn`` must not leave the root logger at DEBUG.

Faust's terminal spinner sets the root logger to DEBUG at levels WARN and above (to spin
on every record), so every debug call of aiokafka, one per Kafka request, built a log
record for nothing: 2 % of a benchmark worker's time. No Kafka needed: topic creation
and the worker's run are replaced; Faust's real logging set-up runs.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
import pytest

from streamer.config import Settings


@pytest.mark.parametrize(("loglevel", "expected"), [("warn", logging.WARNING),
                                                    ("error", logging.ERROR),
                                                    ("info", logging.INFO)])
def test_worker_root_logger_level_follows_loglevel(monkeypatch: pytest.MonkeyPatch,
                                                   loglevel: str, expected: int) -> None:
    import uvloop

    import streamer.pipeline.worker as worker_module
    from streamer.cli import run_worker

    async def topics_exist(settings: Settings) -> int:
        return settings.partitions

    seen: dict[str, Any] = {}

    def set_up_logging_only(self: faust.Worker) -> None:
        self._setup_logging()
        seen["root"] = logging.root.level

    monkeypatch.setattr(worker_module, "ensure_topics", topics_exist)
    monkeypatch.setattr(uvloop, "install", lambda: None)
    monkeypatch.setattr(faust.Worker, "execute_from_commandline", set_up_logging_only)
    monkeypatch.setattr(faust.Worker, "_redirect_stdouts", lambda self: None)
    level, handlers = logging.root.level, list(logging.root.handlers)
    try:
        assert run_worker(Settings(), loglevel) == 0
    finally:
        logging.root.setLevel(level)
        logging.root.handlers[:] = handlers
    assert seen["root"] == expected
