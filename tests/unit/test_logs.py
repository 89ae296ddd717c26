"""The worker's log policy (streamer/logs.py): quiet libraries, causes named, repeats
counted, JSON on request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

import streamer.logs as logs
from streamer.logs import JsonFormatter, RepeatLimiter, TransientErrors, apply_policy
from streamer.state.store import retry_forever


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("streamer.logs.time.monotonic", fake)
    return fake


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A root-like logger with one handler writing to a buffer, restored afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers),
             {name: logging.getLogger(name).level for name in logs.LIBRARY_LOGGERS})
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    try:
        yield root, buffer
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
        for name, _ in logs.TRANSIENT_ERRORS:
            target = logging.getLogger(name)
            target.filters = [f for f in target.filters if not isinstance(f, TransientErrors)]


def test_libraries_log_warnings_only_unless_debug(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    root, buffer = captured
    apply_policy(root, "info")
    logging.getLogger("aiokafka.conn").info("connecting")
    logging.getLogger("faust.worker").info("Ready")
    logging.getLogger("mode.services").warning("slow")
    logging.getLogger("streamer.pipeline.worker").info("claimed partition 1")
    assert buffer.getvalue().splitlines() == ["WARNING mode.services slow",
                                              "INFO streamer.pipeline.worker claimed partition 1"]
    apply_policy(root, "debug")
    logging.getLogger("aiokafka.conn").debug("request")
    assert buffer.getvalue().splitlines()[-1] == "DEBUG aiokafka.conn request"


def test_identical_errors_are_rate_limited_with_a_count(
        captured: tuple[logging.Logger, io.StringIO], clock: Clock) -> None:
    root, buffer = captured
    apply_policy(root, "info")
    broker = logging.getLogger("aiokafka.consumer.fetcher")
    for n in range(1_308):  # a broker restart's worth, over 20 s
        clock.now += 1 / 64
        broker.error("Failed fetch messages from %s: %s", 1, f"NodeNotReady {n}")
    lines = buffer.getvalue().splitlines()
    # the first one, then one per 10 s window with the count held back since
    assert len(lines) == 3, lines
    assert lines[0].endswith("NodeNotReady 0")
    assert lines[1].endswith("NodeNotReady 640 [639 more like this in the last 10 s]")
    assert lines[2].endswith("NodeNotReady 1280 [639 more like this in the last 10 s]")
    other = logging.getLogger("streamer.x")
    other.error("something else")
    assert buffer.getvalue().splitlines()[-1] == "ERROR streamer.x something else"
    # info lines are never held back
    for _ in range(5):
        other.info("progress")
    assert buffer.getvalue().count("progress") == 5


def test_repeat_counts_add_up(clock: Clock) -> None:
    limiter = RepeatLimiter(window_s=10)
    shown = held = 0
    for n in range(1_000):
        clock.now += 0.1 if n % 7 else 3.0
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "boom %s", (n,), None)
        if limiter.filter(record):
            shown += 1
            held += getattr(record, "repeated", 0)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "boom %s", (0,), None)
    clock.now += 11
    assert limiter.filter(record)
    assert shown + held + getattr(record, "repeated", 0) == 1_000


def test_group_coordinator_noise_at_start_is_hidden_unless_it_lasts(
        captured: tuple[logging.Logger, io.StringIO], clock: Clock) -> None:
    root, buffer = captured
    apply_policy(root, "info")
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    for _ in range(10):  # a normal start: a second or two of these
        clock.now += 0.2
        coordinator.error("Group Coordinator Request failed: %s", "[Error 15] NotAvailable")
    assert buffer.getvalue() == ""
    for _ in range(100):  # lasting 20 s: shown, as a warning
        clock.now += 0.2
        coordinator.error("Group Coordinator Request failed: %s", "[Error 15] NotAvailable")
    lines = buffer.getvalue().splitlines()
    assert lines and all(line.startswith("WARNING ") for line in lines)
    assert len(lines) <= 2  # and rate-limited


def test_json_format(captured: tuple[logging.Logger, io.StringIO]) -> None:
    root, buffer = captured
    apply_policy(root, "info", "json")
    log = logging.getLogger("streamer.pipeline.flusher")
    log.warning("Redis %s failed", "flush")
    try:
        raise ConnectionError("refused")
    except ConnectionError:
        log.exception("boom")
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "streamer.pipeline.flusher"
    assert first["message"] == "Redis flush failed"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert "ConnectionError: refused" in second["exc"]
    assert isinstance(JsonFormatter().format(logging.LogRecord(
        "x", logging.INFO, __file__, 1, "%s", ({"a": 1},), None)), str)


async def test_a_retry_names_its_cause_at_warning(caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(delay: float) -> None:
        return None

    monkeypatch.setattr("streamer.state.store.asyncio.sleep", no_sleep)
    with caplog.at_level(logging.WARNING, logger="streamer.state.store"):
        await retry_forever("Redis flush", 0, ConnectionError("Connection refused"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == ("Redis flush failed (attempt 1): ConnectionError: "
                                   "Connection refused; retrying in 0.05s")

