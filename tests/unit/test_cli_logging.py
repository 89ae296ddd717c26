"""The worker process's set-up: logging and the garbage collector.

``streamer worker --loglevel warn`` must not leave the root logger at DEBUG.

Faust's terminal spinner sets the root logger to DEBUG at levels WARN and above (to spin
on every record), so every debug call of aiokafka, one per Kafka request, built a log
record for nothing: 2 % of a benchmark worker's time. No Kafka needed: topic creation
and the worker's run are replaced; Faust's real logging set-up runs.

The young-generation GC threshold (``STREAMER_GC_GEN0_THRESHOLD``) is set before the
worker runs; at CPython's 700 the collector took ~9 % of the hot path's time.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import faust
import pytest

from streamer.config import ConfigError, Settings, load_settings


def _no_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's start-up checks of Kafka and Redis answer without a broker or Redis."""
    import streamer.cli as cli
    import streamer.pipeline.topics as topics_module

    async def reachable(settings: Settings) -> None:
        return None

    async def topics_exist(settings: Settings) -> int:
        return settings.partitions

    async def layout_ok(settings: Settings) -> None:
        return None

    monkeypatch.setattr(cli, "kafka_reachable", reachable)
    monkeypatch.setattr(cli, "_check_state_layout", layout_ok)
    monkeypatch.setattr(topics_module, "ensure_topics", topics_exist)


@pytest.mark.parametrize(("loglevel", "expected"), [("warn", logging.WARNING),
                                                    ("error", logging.ERROR),
                                                    ("info", logging.INFO)])
def test_worker_root_logger_level_follows_loglevel(monkeypatch: pytest.MonkeyPatch,
                                                   loglevel: str, expected: int) -> None:
    import uvloop

    from streamer.cli import run_worker

    seen: dict[str, Any] = {}

    def set_up_logging_only(self: faust.Worker) -> None:
        self._setup_logging()
        seen["root"] = logging.root.level

    _no_services(monkeypatch)
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


@pytest.mark.parametrize("threshold", [0, 1234])
def test_worker_sets_the_gc_threshold_before_it_runs(monkeypatch: pytest.MonkeyPatch,
                                                     threshold: int) -> None:
    import uvloop

    from streamer.cli import run_worker

    seen: dict[str, Any] = {}

    def record_gc(self: faust.Worker) -> None:
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()

    _no_services(monkeypatch)
    monkeypatch.setattr(uvloop, "install", lambda: None)
    monkeypatch.setattr(faust.Worker, "execute_from_commandline", record_gc)
    before = gc.get_threshold()
    level, handlers = logging.root.level, list(logging.root.handlers)
    try:
        settings = load_settings({"STREAMER_GC_GEN0_THRESHOLD": str(threshold)})
        assert run_worker(settings, "warn") == 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
        logging.root.setLevel(level)
        logging.root.handlers[:] = handlers
    if threshold:
        assert seen["threshold"] == (1234, 20, 100)
        assert seen["frozen"] > 0  # start-up objects are out of the collector's way
    else:
        assert seen["threshold"] == before


def test_gc_threshold_setting_is_checked() -> None:
    assert Settings().gc_gen0_threshold == 50_000
    with pytest.raises(ConfigError, match="STREAMER_GC_GEN0_THRESHOLD"):
        load_settings({"STREAMER_GC_GEN0_THRESHOLD": "-1"})
    with pytest.raises(ConfigError, match="STREAMER_GC_GEN0_THRESHOLD"):
        load_settings({"STREAMER_GC_GEN0_THRESHOLD": "many"})


def test_poll_size_setting_is_checked_and_given_to_faust(tmp_path: Any) -> None:
    """A poll parses at most this many records, so a backlog of small records cannot
    turn the whole prefetch into Python objects at once."""
    from streamer.pipeline.app import create_app

    with pytest.raises(ConfigError, match="STREAMER_KAFKA_MAX_POLL_RECORDS"):
        load_settings({"STREAMER_KAFKA_MAX_POLL_RECORDS": "0"})
    settings = load_settings({"STREAMER_KAFKA_MAX_POLL_RECORDS": "1234",
                              "STREAMER_DATA_DIR": str(tmp_path)})
    assert create_app(settings).conf.broker_max_poll_records == 1234
    assert Settings().kafka_max_poll_records == 1_000


def test_fetch_size_and_wait_settings() -> None:
    settings = load_settings({})
    assert (settings.kafka_fetch_min_bytes, settings.kafka_fetch_max_wait_ms) == (524_288, 100)
    settings = load_settings({"STREAMER_KAFKA_FETCH_MIN_BYTES": "1",
                              "STREAMER_KAFKA_FETCH_MAX_WAIT_MS": "1500"})
    assert (settings.kafka_fetch_min_bytes, settings.kafka_fetch_max_wait_ms) == (1, 1500)
    for name, bad in (("STREAMER_KAFKA_FETCH_MIN_BYTES", "0"),
                      ("STREAMER_KAFKA_FETCH_MIN_BYTES", "lots"),
                      ("STREAMER_KAFKA_FETCH_MAX_WAIT_MS", "-1"),
                      ("STREAMER_KAFKA_FETCH_MAX_WAIT_MS", "60000")):
        with pytest.raises(ConfigError, match=name):
            load_settings({name: bad})


def test_direct_delivery_is_on_unless_turned_off() -> None:
    assert Settings().direct_delivery is True
    assert load_settings({}).direct_delivery is True
    assert load_settings({"STREAMER_DIRECT_DELIVERY": "0"}).direct_delivery is False
    with pytest.raises(ConfigError, match="STREAMER_DIRECT_DELIVERY"):
        load_settings({"STREAMER_DIRECT_DELIVERY": "maybe"})


def test_fetch_size_setting_is_given_to_faust(tmp_path: Any) -> None:
    """Bytes fetched per partition: the raw prefetch a worker holds per partition."""
    from streamer.pipeline.app import create_app

    settings = load_settings({"STREAMER_KAFKA_MAX_PARTITION_FETCH_BYTES": "3145728",
                              "STREAMER_DATA_DIR": str(tmp_path)})
    assert create_app(settings).conf.consumer_max_fetch_size == 3 << 20
    assert Settings().kafka_max_partition_fetch_bytes == 2 << 20
    assert Settings().kafka_max_partition_fetch_bytes >= Settings().max_record_bytes
