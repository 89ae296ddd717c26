"""Worker settings, read once from ``STREAMER_*`` environment variables.

Everything a deployment changes lives here, so the README's configuration table
and this module are the single source of truth for names and defaults.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from streamer.windows import parse_duration

T = TypeVar("T", int, float)

_ENV_PREFIX = "STREAMER_"


class ConfigError(ValueError):
    """A setting has a value the worker cannot run with; the message names it."""


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def aiokafka_kwargs(self) -> dict[str, object]:
        """Connection options in aiokafka's spelling (producer, consumer and admin)."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return kwargs


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    app_id: str = "streamer"
    tracks_topic: str = "tracks.created"
    uses_topic: str = "sounds.used"
    dlq_topic: str = "streamer.dlq"
    partitions: int = 8
    # A killed worker's partitions move after this long without heartbeats.
    kafka_session_timeout_s: float = 10.0
    # Per partition and fetch. Faust's 1 MiB default holds ~15 batch records: the worker
    # then idled half the time waiting for fetches (54k events/s at 50 % CPU, 105k at 8 MiB).
    # 2 MiB (twice the largest record counted) drained a 75M backlog as fast as 4 MiB
    # (314,000 against 315,000 events/s) with 68 MB less RSS, and 8 MiB no faster.
    kafka_max_partition_fetch_bytes: int = 2 << 20
    # A fetch returns once this much data is there (all partitions together), or after
    # the wait. With one byte (Kafka's default) a live worker fetched every few records:
    # at 105,000 events/s it took 68 % of a core; with these, 53 %. The wait bounds
    # what a quiet stream adds to latency.
    kafka_fetch_min_bytes: int = 512 << 10
    kafka_fetch_max_wait_ms: int = 100
    # Records parsed per poll, all partitions together. Unbounded, a poll parsed every
    # buffered record at once: ~300k small TrackCreated (~250 MB of objects) in a backlog.
    # Each parsed value is a copy of the fetched bytes: 1,000 batch records are ~50 MB.
    kafka_max_poll_records: int = 1_000
    replication_factor: int = 1
    key_prefix: str = "streamer"
    # Window sizes in ms; the smallest must divide every other one (see windows.py).
    windows: tuple[tuple[str, int], ...] = (("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000))
    # Retention per window name, counted from the last write to a window's keys.
    retention_ms: Mapping[str, int] = field(
        default_factory=lambda: {"1m": 2 * 3_600_000, "1h": 14 * 86_400_000, "1d": 400 * 86_400_000}
    )
    allowed_lateness_ms: int = 3_600_000
    future_tolerance_ms: int = 5 * 60_000
    dedupe_horizon_ms: int = 5 * 60_000
    catalog_ttl_ms: int = 400 * 86_400_000
    catalog_cache_size: int = 200_000
    # Each partition is flushed once per round: flush_interval_s while the worker keeps
    # up (it sets end-to-end latency), backlog_flush_interval_s while it drains a backlog
    # (fewer, larger flushes cost Redis less per event). See pipeline/cadence.py.
    flush_interval_s: float = 0.5
    backlog_flush_interval_s: float = 1.0
    # Unflushed events per partition beyond which the agent waits for a flush (backpressure).
    # It bounds the cells held, and the flush's temporaries, while flushes lag behind (a
    # Redis AOF rewrite): 500,000 let a 1M-track backlog hold 1.37M events, 49 MB more RSS.
    max_unflushed_events: int = 100_000
    # Faust's working folder (it keeps no table data here: the counters live in Redis).
    data_dir: str = os.path.join(tempfile.gettempdir(), "streamer")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_token: str | None = field(default=None, repr=False)
    max_record_bytes: int = 1 << 20
    max_batch_events: int = 10_000
    # Allocations between two young-generation collections (CPython's default is 700).
    # The hot path allocates many short-lived tuples; at 700 the collector took ~9 % of
    # its time (python -m benchmarks.hotpath --gc-threshold 0). 0 keeps CPython's.
    gc_gen0_threshold: int = 50_000
    # Input records skip Faust's per-record dispatch (faust_compat.deliver_directly);
    # 0 keeps Faust's agent path (same counts, several times slower on single records).
    direct_delivery: bool = True
    # Unhealthy when input partitions lag and no record arrived for this long (watchdog.py).
    delivery_stall_after_s: float = 60.0
    # Seconds between returns of freed heap memory to the OS (pipeline/heap.py); 0: never.
    malloc_trim_interval_s: float = 10.0
    # glibc's allocator (pipeline/heap.py): blocks from this size get their own mapping,
    # returned when freed (glibc's threshold rises to 32 MiB as large blocks are freed);
    # and at most this many arenas. 0 leaves either to glibc. At 131072 and 2, a 1M-track
    # backlog peaked 100 MB lower and drained 17-20 % slower, so both are off by default.
    malloc_mmap_threshold_bytes: int = 0
    malloc_arena_max: int = 0
    # How long the CLI waits for Kafka (produce, load, worker start) and Redis (worker
    # start) to answer before it gives up, and for a worker's answer (streamer query).
    connect_timeout_s: float = 10.0
    query_timeout_s: float = 10.0
    # text (Faust's) or json (one object a line, for log pipelines); see streamer/logs.py.
    log_format: str = "text"

    @property
    def window_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.windows)

    def window_size(self, name: str) -> int:
        for window_name, size in self.windows:
            if window_name == name:
                return size
        raise KeyError(name)


def _parse_windows(text: str) -> tuple[tuple[str, int], ...]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError("STREAMER_WINDOWS must list at least one window, e.g. 1m,1h,1d")
    try:
        parsed = [(name, parse_duration(name)) for name in names]
    except ValueError as exc:
        raise ConfigError(f"STREAMER_WINDOWS: {exc}") from None
    windows = sorted(parsed, key=lambda item: item[1])
    base = windows[0][1]
    for name, size in windows:
        if size % base:
            raise ConfigError(
                f"STREAMER_WINDOWS: {name} is not a multiple of the smallest window {windows[0][0]}"
            )
    return tuple(windows)


def _parse_retention(text: str, windows: tuple[tuple[str, int], ...]) -> dict[str, int]:
    retention = dict(Settings().retention_ms)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not value:
            raise ConfigError(f"STREAMER_RETENTION: expected WINDOW=DURATION, got {part!r}")
        try:
            retention[name.strip()] = parse_duration(value.strip())
        except ValueError as exc:
            raise ConfigError(f"STREAMER_RETENTION: {exc}") from None
    for name, size in windows:
        retention.setdefault(name, max(2 * size, 2 * 3_600_000))
    return retention


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment; raise ConfigError naming a bad variable."""
    env = os.environ if env is None else env

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(_ENV_PREFIX + name)
        return value if value not in (None, "") else default

    def get_number(name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise ConfigError(f"{_ENV_PREFIX}{name} must be {what}, got {raw!r}") from None

    def get_int(name: str, default: int) -> int:
        return get_number(name, default, int, "an integer")

    def get_seconds(name: str, default: float) -> float:
        return get_number(name, default, float, "a number of seconds")

    def get_duration(name: str, default: int) -> int:
        raw = get(name)
        if raw is None:
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise ConfigError(f"{_ENV_PREFIX}{name}: {exc}") from None

    defaults = Settings()
    kafka = KafkaSettings(
        bootstrap=get("KAFKA_BOOTSTRAP", defaults.kafka.bootstrap) or "",
        security_protocol=(get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") or "").upper(),
        sasl_mechanism=(get("KAFKA_SASL_MECHANISM") or "").upper() or None,
        sasl_username=get("KAFKA_SASL_USERNAME"),
        sasl_password=get("KAFKA_SASL_PASSWORD"),
        ssl_cafile=get("KAFKA_SSL_CAFILE"),
        ssl_certfile=get("KAFKA_SSL_CERTFILE"),
        ssl_keyfile=get("KAFKA_SSL_KEYFILE"),
    )
    if kafka.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ConfigError(
            "STREAMER_KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
        )
    if kafka.security_protocol.startswith("SASL_"):
        # Caught here, or aiokafka and Faust fail later with errors naming no variable.
        if kafka.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ConfigError(f"{kafka.security_protocol} needs STREAMER_KAFKA_SASL_MECHANISM: "
                              "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        if not kafka.sasl_username or not kafka.sasl_password:
            raise ConfigError(f"{kafka.security_protocol} needs STREAMER_KAFKA_SASL_USERNAME "
                              "and STREAMER_KAFKA_SASL_PASSWORD")
    windows_text = get("WINDOWS")
    windows = _parse_windows(windows_text) if windows_text else defaults.windows
    gc_gen0_threshold = get_int("GC_GEN0_THRESHOLD", defaults.gc_gen0_threshold)
    if gc_gen0_threshold < 0:
        raise ConfigError("STREAMER_GC_GEN0_THRESHOLD must be 0 (CPython's setting) or more")
    flush_interval = get_seconds("FLUSH_INTERVAL_S", defaults.flush_interval_s)
    if not 0 < flush_interval <= 60:
        raise ConfigError("STREAMER_FLUSH_INTERVAL_S must be in (0, 60]")
    backlog_flush_interval = get_seconds(
        "BACKLOG_FLUSH_INTERVAL_S", max(defaults.backlog_flush_interval_s, flush_interval))
    if not flush_interval <= backlog_flush_interval <= 60:
        raise ConfigError("STREAMER_BACKLOG_FLUSH_INTERVAL_S must be at least "
                          f"STREAMER_FLUSH_INTERVAL_S ({flush_interval:g}) and at most 60")
    raw_direct = (get("DIRECT_DELIVERY", "1") or "1").strip().lower()
    if raw_direct not in ("0", "1", "true", "false"):
        raise ConfigError(f"STREAMER_DIRECT_DELIVERY must be 0 or 1, got {raw_direct!r}")
    max_poll_records = get_int("KAFKA_MAX_POLL_RECORDS", defaults.kafka_max_poll_records)
    if max_poll_records < 1:
        raise ConfigError("STREAMER_KAFKA_MAX_POLL_RECORDS must be at least 1")
    fetch_min_bytes = get_int("KAFKA_FETCH_MIN_BYTES", defaults.kafka_fetch_min_bytes)
    if fetch_min_bytes < 1:
        raise ConfigError("STREAMER_KAFKA_FETCH_MIN_BYTES must be at least 1")
    fetch_max_wait_ms = get_int("KAFKA_FETCH_MAX_WAIT_MS", defaults.kafka_fetch_max_wait_ms)
    if not 0 <= fetch_max_wait_ms <= 30_000:
        raise ConfigError("STREAMER_KAFKA_FETCH_MAX_WAIT_MS must be in [0, 30000]")
    malloc_trim_interval = get_seconds("MALLOC_TRIM_INTERVAL_S", defaults.malloc_trim_interval_s)
    if not 0 <= malloc_trim_interval < float("inf"):
        raise ConfigError("STREAMER_MALLOC_TRIM_INTERVAL_S must be 0 (never) or more")
    mmap_threshold = get_int("MALLOC_MMAP_THRESHOLD", defaults.malloc_mmap_threshold_bytes)
    if mmap_threshold != 0 and not 4096 <= mmap_threshold <= 32 << 20:
        raise ConfigError("STREAMER_MALLOC_MMAP_THRESHOLD must be 0 (glibc's dynamic "
                          "threshold) or 4096 to 33554432 bytes")
    arena_max = get_int("MALLOC_ARENA_MAX", defaults.malloc_arena_max)
    if arena_max < 0:
        raise ConfigError("STREAMER_MALLOC_ARENA_MAX must be 0 (glibc's default) or more")
    stall_after = get_seconds("DELIVERY_STALL_AFTER_S", defaults.delivery_stall_after_s)
    if not 0 < stall_after < float("inf"):
        raise ConfigError("STREAMER_DELIVERY_STALL_AFTER_S must be more than 0")
    partitions = get_int("PARTITIONS", defaults.partitions)
    if partitions < 1:
        raise ConfigError("STREAMER_PARTITIONS must be at least 1")
    connect_timeout = get_seconds("CONNECT_TIMEOUT_S", defaults.connect_timeout_s)
    query_timeout = get_seconds("QUERY_TIMEOUT_S", defaults.query_timeout_s)
    for name, value in (("CONNECT_TIMEOUT_S", connect_timeout),
                        ("QUERY_TIMEOUT_S", query_timeout)):
        if not 0 < value <= 3600:
            raise ConfigError(f"STREAMER_{name} must be more than 0 and at most 3600 seconds")
    log_format = (get("LOG_FORMAT", defaults.log_format) or "").strip().lower()
    if log_format not in ("text", "json"):
        raise ConfigError(f"STREAMER_LOG_FORMAT must be text or json, got {log_format!r}")
    return Settings(
        kafka=kafka,
        redis_url=get("REDIS_URL", defaults.redis_url) or defaults.redis_url,
        app_id=get("APP_ID", defaults.app_id) or defaults.app_id,
        tracks_topic=get("TRACKS_TOPIC", defaults.tracks_topic) or defaults.tracks_topic,
        uses_topic=get("USES_TOPIC", defaults.uses_topic) or defaults.uses_topic,
        dlq_topic=get("DLQ_TOPIC", defaults.dlq_topic) or defaults.dlq_topic,
        partitions=partitions,
        kafka_session_timeout_s=get_duration("KAFKA_SESSION_TIMEOUT", 10_000) / 1000,
        kafka_max_partition_fetch_bytes=get_int(
            "KAFKA_MAX_PARTITION_FETCH_BYTES", defaults.kafka_max_partition_fetch_bytes),
        kafka_max_poll_records=max_poll_records,
        kafka_fetch_min_bytes=fetch_min_bytes,
        kafka_fetch_max_wait_ms=fetch_max_wait_ms,
        replication_factor=get_int("REPLICATION_FACTOR", defaults.replication_factor),
        key_prefix=get("KEY_PREFIX", defaults.key_prefix) or defaults.key_prefix,
        windows=windows,
        retention_ms=_parse_retention(get("RETENTION", "") or "", windows),
        allowed_lateness_ms=get_duration("ALLOWED_LATENESS", defaults.allowed_lateness_ms),
        future_tolerance_ms=get_duration("FUTURE_TOLERANCE", defaults.future_tolerance_ms),
        dedupe_horizon_ms=get_duration("DEDUPE_HORIZON", defaults.dedupe_horizon_ms),
        catalog_ttl_ms=get_duration("CATALOG_TTL", defaults.catalog_ttl_ms),
        catalog_cache_size=get_int("CATALOG_CACHE_SIZE", defaults.catalog_cache_size),
        flush_interval_s=flush_interval,
        backlog_flush_interval_s=backlog_flush_interval,
        max_unflushed_events=get_int("MAX_UNFLUSHED_EVENTS", defaults.max_unflushed_events),
        gc_gen0_threshold=gc_gen0_threshold,
        malloc_trim_interval_s=malloc_trim_interval,
        malloc_mmap_threshold_bytes=mmap_threshold,
        malloc_arena_max=arena_max,
        direct_delivery=raw_direct in ("1", "true"),
        delivery_stall_after_s=stall_after,
        data_dir=get("DATA_DIR", defaults.data_dir) or defaults.data_dir,
        web_host=get("WEB_HOST", defaults.web_host) or defaults.web_host,
        web_port=get_int("WEB_PORT", defaults.web_port),
        web_token=get("WEB_TOKEN"),
        connect_timeout_s=connect_timeout,
        query_timeout_s=query_timeout,
        log_format=log_format,
    )
