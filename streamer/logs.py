"""What a worker logs: our own lines at the chosen level, the libraries' only when they matter.

* Faust, mode and aiokafka log at WARNING unless ``--loglevel debug``: at ``info`` they
  printed ~70 lines before ``Ready``.
* Known start-up noise is demoted: aiokafka logs ``Group Coordinator Request failed`` at
  ERROR on every normal start (the coordinator is being elected); it is shown, as a
  WARNING, only once it has lasted ``TRANSIENT_GRACE_S``.
* Identical warnings and errors (same logger, level and message template) are shown
  once per ``REPEAT_WINDOW_S``; the next one shown says how many were held back. A broker
  restart gave 1,308 ERROR lines in 36 s before this.
* ``STREAMER_LOG_FORMAT=json`` writes one JSON object a line for log pipelines.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson

LIBRARY_LOGGERS = ("faust", "mode", "aiokafka", "kafka")
REPEAT_WINDOW_S = 10.0
TRANSIENT_GRACE_S = 15.0
# (logger, message template) that is expected for a while at every start or rebalance.
TRANSIENT_ERRORS = {("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s")}

log = logging.getLogger("streamer.worker")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}


class RepeatLimiter(logging.Filter):
    """Lets one of a run of identical WARNING+ records through per window, with a count."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        # One decision per record, however many handlers share this filter.
        decided: bool | None = record.__dict__.get("_repeat_shown")
        if decided is not None:
            return decided
        record._repeat_shown = shown = self._decide(record)
        return shown

    def _decide(self, record: logging.LogRecord) -> bool:
        # A flood varies its arguments (attempt numbers, node ids): one template is one run.
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        shown_at, held = self._last.get(key, (float("-inf"), 0))
        if now - shown_at < self.window_s:
            self._last[key] = (shown_at, held + 1)
            return False
        self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {now - shown_at:.0f} s]"
            record.repeated = held
        if len(self._last) > 10_000:  # templates are few; bound it anyway
            self._last.clear()
        return True


class TransientErrors(logging.Filter):
    """Start-up noise: hidden while a streak is younger than the grace, then a WARNING."""

    def __init__(self, grace_s: float = TRANSIENT_GRACE_S) -> None:
        super().__init__()
        self.grace_s = grace_s
        self._streak: dict[tuple[str, str], tuple[float, float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        if key not in TRANSIENT_ERRORS:
            return True
        now = time.monotonic()
        started, last = self._streak.get(key, (now, now))
        if now - last > self.grace_s:  # a new streak
            started = now
        self._streak[key] = (started, now)
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return now - started >= self.grace_s


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (and exc, repeated)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        repeated = getattr(record, "repeated", None)
        if repeated:
            entry["repeated"] = repeated
        return orjson.dumps(entry, default=str).decode()


JsonFormatter.converter = time.gmtime


# One of each per process: every handler shares the same view of what was shown.
_LIMITER = RepeatLimiter()
_TRANSIENT = TransientErrors()


def level_number(loglevel: str) -> int:
    return _LEVELS[loglevel.lower()]


def apply_policy(root: logging.Logger, loglevel: str, log_format: str = "text") -> None:
    """Library levels, the filters and the format on the root logger's handlers."""
    level = level_number(loglevel)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG
                                         else max(level, logging.WARNING))
    transient = _TRANSIENT
    for name, _ in TRANSIENT_ERRORS:
        target = logging.getLogger(name)
        if not any(isinstance(f, TransientErrors) for f in target.filters):
            target.addFilter(transient)
    for handler in root.handlers:
        if not any(isinstance(f, RepeatLimiter) for f in handler.filters):
            handler.addFilter(_LIMITER)
        if log_format == "json":
            handler.setFormatter(JsonFormatter())


def configure_logging(loglevel: str, log_format: str = "text") -> None:
    """Logging before Faust's worker takes over (topic checks, malloc settings)."""
    logging.basicConfig(level=level_number(loglevel))
    apply_policy(logging.root, loglevel, log_format)


class StreamerWorker(faust.Worker):
    """Faust's worker, with the policy above applied once Faust has set up logging."""

    log_format = "text"

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        # Faust's own "Ready" is at INFO on a logger now at WARNING.
        conf = self.app.conf
        log.info("ready: query API, probes and /metrics on http://%s:%s",
                 conf.web_host, conf.web_port)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        name = logging.getLevelName(level).lower() if level else "info"
        apply_policy(logger, name if name in _LEVELS else "info", self.log_format)
