"""Every worker setting, declared once: variable, kind and bounds, default, one-line doc.

To add a setting, add a field made with ``setting()`` to ``Settings`` (or a group such
as ``KafkaSettings``), then run ``python -m streamer.config doc --write``::

    ledger_batch_rows: int = setting(
        "STREAMER_LEDGER_BATCH_ROWS", 10_000, Int(min=1, max=1_000_000),
        "Rows written to the ledger per Delta Lake commit.")

Loading, validation, the typo warning and docs/CONFIGURATION.md follow from it. Kinds
are in kinds.py (Int, Seconds, Duration, Flag, Choice, Text, Url, ...); a setting that
depends on another gets ``resolve=`` and ``needs=`` (see the backlog flush interval).
Comments say why a default is what it is; the doc line says what the setting does.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamer.config.declare import setting
from streamer.config.kinds import (
    Choice,
    Duration,
    DurationSeconds,
    Flag,
    HostPorts,
    Int,
    JsonObject,
    Retention,
    Seconds,
    Text,
    Url,
    WindowNames,
    Windows,
)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TOPIC = Text(r"[A-Za-z0-9._-]{1,249}", "a Kafka topic name: letters, digits, `.`, `_`, `-`")
MAX_RECORD_BYTES = 1 << 20


_NEEDED_WITH_SASL = ("must be set when STREAMER_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT "
                     "or SASL_SSL")


def _sasl_mechanism(kafka: KafkaSettings, given: str | None) -> str | None:
    # Caught here, or aiokafka and Faust fail later with errors naming no variable.
    if given is None and kafka.security_protocol.startswith("SASL_"):
        raise ValueError(f"{_NEEDED_WITH_SASL}: {', '.join(SASL_MECHANISMS)}")
    return given


def _sasl_credential(kafka: KafkaSettings, given: str | None) -> str | None:
    if given is None and kafka.security_protocol.startswith("SASL_"):
        raise ValueError(_NEEDED_WITH_SASL)
    return given


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str = setting(
        "STREAMER_KAFKA_BOOTSTRAP", "127.0.0.1:9092", HostPorts(),
        "Kafka bootstrap servers, comma-separated.")
    security_protocol: str = setting(
        "STREAMER_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", Choice(SECURITY_PROTOCOLS),
        "How the worker talks to Kafka (any case).")
    sasl_mechanism: str | None = setting(
        "STREAMER_KAFKA_SASL_MECHANISM", None, Choice(SASL_MECHANISMS),
        "SASL mechanism; required with `SASL_PLAINTEXT` and `SASL_SSL`.",
        resolve=_sasl_mechanism, needs=("security_protocol",))
    sasl_username: str | None = setting(
        "STREAMER_KAFKA_SASL_USERNAME", None, Text(),
        "SASL user; required with `SASL_PLAINTEXT` and `SASL_SSL`.",
        resolve=_sasl_credential, needs=("security_protocol",))
    sasl_password: str | None = setting(
        "STREAMER_KAFKA_SASL_PASSWORD", None, Text(),
        "SASL password; required with `SASL_PLAINTEXT` and `SASL_SSL`.",
        secret=True, resolve=_sasl_credential, needs=("security_protocol",))
    ssl_cafile: str | None = setting(
        "STREAMER_KAFKA_SSL_CAFILE", None, Text(means="a file path"),
        "CA certificates to verify the brokers with (`SSL`, `SASL_SSL`).")
    ssl_certfile: str | None = setting(
        "STREAMER_KAFKA_SSL_CERTFILE", None, Text(means="a file path"),
        "Client certificate for TLS client authentication.")
    ssl_keyfile: str | None = setting(
        "STREAMER_KAFKA_SSL_KEYFILE", None, Text(means="a file path"),
        "Client certificate's private key.")

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
            # aiokafka has no type hints; unused once mypy's config ignores its imports.
            from aiokafka.helpers import (  # type: ignore[import-untyped, unused-ignore]
                create_ssl_context,
            )

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return kwargs


DEFAULT_RETENTION_MS = {"1m": 2 * 3_600_000, "1h": 14 * 86_400_000, "1d": 400 * 86_400_000}


def _retention(settings: Settings, given: Mapping[str, int] | None) -> Mapping[str, int]:
    """Every window's retention: given, else the documented default, else twice its size
    and at least two hours."""
    given = given or {}
    strays = sorted(set(given) - set(settings.window_names))
    if strays:
        raise ValueError(f"names {', '.join(strays)}, not among STREAMER_WINDOWS "
                         f"({', '.join(settings.window_names)})")
    return {name: given.get(name) or DEFAULT_RETENTION_MS.get(name) or max(2 * size, 7_200_000)
            for name, size in settings.windows}


def _territory_windows(settings: Settings, given: tuple[str, ...] | None) -> tuple[str, ...]:
    """Territory windows must be counting windows, and closing days needs the base window
    to divide a day (a base window never straddles two days)."""
    if given is None:
        # The default follows the windows counted: 1d when it is one of them, else off
        # (a deployment that counts no 1d window has no days to close).
        names: tuple[str, ...] = ("1d",) if "1d" in settings.window_names else ()
    else:
        names = given
    strays = [name for name in names if name not in settings.window_names]
    if strays:
        raise ValueError(f"names {', '.join(strays)}, not among STREAMER_WINDOWS "
                         f"({', '.join(settings.window_names)})")
    if names and 86_400_000 % settings.windows[0][1]:
        raise ValueError(f"needs the smallest window ({settings.windows[0][0]}) to divide a day")
    return names


def _backlog_flush_interval(settings: Settings, given: float | None) -> float:
    flush = settings.flush_interval_s
    if given is None:
        return max(1.0, flush)
    if given < flush:
        raise ValueError(f"must be at least STREAMER_FLUSH_INTERVAL_S ({flush:g})")
    return given


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis_url: str = setting(
        "STREAMER_REDIS_URL", "redis://127.0.0.1:6379/0",
        Url(("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
             "rediss+sentinel")),
        "Redis to count in: `rediss://` is TLS, `redis://:password@host` authenticates, "
        "`redis+cluster://host:port` is a Redis Cluster.", secret=True,
        shown_default="`redis://127.0.0.1:6379/0`")
    app_id: str = setting(
        "STREAMER_APP_ID", "streamer", Text(),
        "Faust app id and Kafka consumer group; changing it starts from scratch.")
    tracks_topic: str = setting(
        "STREAMER_TRACKS_TOPIC", "tracks.created", TOPIC, "TrackCreated input topic.")
    uses_topic: str = setting(
        "STREAMER_USES_TOPIC", "sounds.used", TOPIC, "SoundUsed input topic.")
    dlq_topic: str = setting(
        "STREAMER_DLQ_TOPIC", "streamer.dlq", TOPIC,
        "Rejected inputs, each with a `reason` header.")
    partitions: int = setting(
        "STREAMER_PARTITIONS", 8, Int(min=1),
        "Partitions of the topics the worker creates; existing topics keep theirs.")
    # A killed worker's partitions move after this long without heartbeats. Heartbeats
    # go every max(1 s, timeout / 4); brokers refuse more than 30 min by default.
    kafka_session_timeout_s: float = setting(
        "STREAMER_KAFKA_SESSION_TIMEOUT", 10.0, DurationSeconds(min_ms=2_000, max_ms=1_800_000),
        "How soon a dead worker's partitions move to the others.")
    # Per partition and fetch. Faust's 1 MiB default holds ~15 batch records and left the
    # worker waiting for fetches; 2 MiB (twice the largest record counted) drains a backlog
    # as fast as larger fetches with less RSS (docs/BENCHMARKS.md).
    kafka_max_partition_fetch_bytes: int = setting(
        "STREAMER_KAFKA_MAX_PARTITION_FETCH_BYTES", 2 << 20, Int(min=MAX_RECORD_BYTES),
        "Bytes fetched per partition and request; at least the largest record.")
    # A fetch returns once this much data is there (all partitions together), or after
    # the wait. With one byte (Kafka's default) a live worker fetched every few records and
    # spent more CPU fetching (docs/BENCHMARKS.md). The wait bounds what a quiet stream adds
    # to latency.
    kafka_fetch_min_bytes: int = setting(
        "STREAMER_KAFKA_FETCH_MIN_BYTES", 512 << 10, Int(min=1),
        "A fetch returns once this many bytes are there (all partitions), or after the wait.")
    kafka_fetch_max_wait_ms: int = setting(
        "STREAMER_KAFKA_FETCH_MAX_WAIT_MS", 100, Int(min=0, max=30_000),
        "The longest a fetch waits for that minimum: what a quiet stream adds to latency.")
    # Records parsed per poll, all partitions together. Unbounded, a poll parsed every
    # buffered record of a backlog at once, hundreds of MB of objects; each parsed value is
    # a copy of the fetched bytes (docs/BENCHMARKS.md).
    kafka_max_poll_records: int = setting(
        "STREAMER_KAFKA_MAX_POLL_RECORDS", 1_000, Int(min=1),
        "Records parsed per poll, all partitions together (bounds the parsed prefetch).")
    replication_factor: int = setting(
        "STREAMER_REPLICATION_FACTOR", 1, Int(min=1),
        "Replicas of the topics the worker creates.")
    key_prefix: str = setting(
        "STREAMER_KEY_PREFIX", "streamer", Text(),
        "Prefix of every Redis key; changing it starts from scratch.")
    # Window sizes in ms; the smallest must divide every other one (see windows.py).
    windows: tuple[tuple[str, int], ...] = setting(
        "STREAMER_WINDOWS", (("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000)), Windows(),
        "Counting window sizes.")
    # Retention per window name, counted from the last write to a window's keys.
    retention_ms: Mapping[str, int] = setting(
        "STREAMER_RETENTION", DEFAULT_RETENTION_MS, Retention(),
        "How long a window's counters live after its last write; a window not named keeps "
        "its default (others: twice its size, at least 2h).",
        resolve=_retention, needs=("windows",))
    # Per-country counters (docs/ARCHITECTURE.md), and the ledger's per-day attributions
    # with them: closing days into the ledger needs territory on.
    territory_windows: tuple[str, ...] = setting(
        "STREAMER_TERRITORY_WINDOWS", ("1d",), WindowNames(),
        "Windows that also count per country (and, when on, close each UTC day into the "
        "ledger); set empty to turn both off. Unset: 1d when STREAMER_WINDOWS counts it, "
        "else off.",
        resolve=_territory_windows, needs=("windows",))
    # A grace for readers after a day is in the ledger, before Redis drops that day's
    # territory counters and attributions.
    territory_retention_ms: int = setting(
        "STREAMER_TERRITORY_RETENTION", 3 * 86_400_000, Duration(),
        "How long a day's territory counters stay in Redis once the day is in the ledger.")
    allowed_lateness_ms: int = setting(
        "STREAMER_ALLOWED_LATENESS", 3_600_000, Duration(),
        "An event further behind its partition's watermark goes to the DLQ as `late`.")
    future_tolerance_ms: int = setting(
        "STREAMER_FUTURE_TOLERANCE", 5 * 60_000, Duration(),
        "An event further ahead of the wall clock goes to the DLQ as `future`.")
    # The wall clock closes only idle partitions' days (a partition with traffic closes
    # by its watermarks). Producers that buffer through an outage deliver a day's last
    # uses after midnight; this delay keeps that day open for them. Six hours: a day is
    # final for finance the morning after, and no outage shorter than that loses uses.
    idle_close_delay_ms: int = setting(
        "STREAMER_IDLE_CLOSE_DELAY", 6 * 3_600_000, Duration(),
        "A partition read to its end on both topics closes a day by the wall clock once it "
        "is past the day's end plus the allowed lateness plus this delay.")
    dedupe_horizon_ms: int = setting(
        "STREAMER_DEDUPE_HORIZON", 5 * 60_000, Duration(),
        "An event id seen again within this much event time is not counted again.")
    catalog_ttl_ms: int = setting(
        "STREAMER_CATALOG_TTL", 400 * 86_400_000, Duration(),
        "Track metadata expires this long after its last write.")
    # The copy is what repairs a catalog write a Redis failover lost while its flush
    # survived (docs/RELIABILITY.md): it must outlive the failover and the time until a
    # worker claims the partition or sees the failover (seconds while one runs).
    catalog_copy_retention_ms: int = setting(
        "STREAMER_CATALOG_COPY_RETENTION", 86_400_000, Duration(min_ms=3_600_000),
        "How long each partition keeps its own copy of the catalog entries its flushes "
        "wrote, from which a claim or a worker that sees a failover restores entries the "
        "catalog lost; deleted sooner once every replica has the writes, so this bounds "
        "the copy while replication lags. Every claim reads what is left.")
    # Sized by memory, not by tracks: plans differ in size (holders, report names). The
    # cache charges ~360 bytes a track; measured RSS grows ~450 bytes a track (1M tracks:
    # 470 MB), so 400 MB keeps a million active tracks (issue 23's target) within a 1 GB
    # worker (docs/BENCHMARKS.md).
    catalog_cache_mb: int = setting(
        "STREAMER_CATALOG_CACHE_MB", 400, Int(min=1),
        "Memory (MB) for the attribution plans of recently used tracks (charged ~360 bytes "
        "a track; the process grows ~450 bytes a track); the least recently written are "
        "dropped first and re-read from Redis.")
    # Each partition is flushed once per round: flush_interval_s while the worker keeps
    # up (it sets end-to-end latency), backlog_flush_interval_s while it drains a backlog
    # (fewer, larger flushes cost Redis less per event). See pipeline/cadence.py.
    flush_interval_s: float = setting(
        "STREAMER_FLUSH_INTERVAL_S", 0.5, Seconds(min=0, max=60, above=True),
        "How often each partition is flushed to Redis while the worker keeps up: it sets "
        "end-to-end latency.")
    backlog_flush_interval_s: float = setting(
        "STREAMER_BACKLOG_FLUSH_INTERVAL_S", 1.0, Seconds(min=0, max=60, above=True),
        "The same while the worker drains a backlog; at least STREAMER_FLUSH_INTERVAL_S.",
        resolve=_backlog_flush_interval, needs=("flush_interval_s",),
        shown_default="`1`, or STREAMER_FLUSH_INTERVAL_S if larger")
    # Unflushed events per partition beyond which the agent waits for a flush (backpressure).
    # It bounds the cells held, and the flush's temporaries, while flushes lag behind (a
    # Redis AOF rewrite): a larger bound let a 1M-track backlog hold over twice the events,
    # and more RSS (docs/BENCHMARKS.md).
    max_unflushed_events: int = setting(
        "STREAMER_MAX_UNFLUSHED_EVENTS", 100_000, Int(min=1),
        "Per partition; beyond it the worker waits for its flush (backpressure).")
    # Faust's working folder (it keeps no table data here: the counters live in Redis).
    data_dir: str = setting(
        "STREAMER_DATA_DIR", os.path.join(tempfile.gettempdir(), "streamer"),
        Text(means="a directory path"), "Faust's working folder (no counter data).",
        shown_default="`$TMPDIR/streamer`")
    web_host: str = setting(
        "STREAMER_WEB_HOST", "127.0.0.1", Text(), "Bind address of the query API and /metrics.")
    web_port: int = setting(
        "STREAMER_WEB_PORT", 6066, Int(min=1, max=65535), "Port of the query API and /metrics.")
    web_token: str | None = setting(
        "STREAMER_WEB_TOKEN", None, Text(),
        "The admin token: if set, queries need `Authorization: Bearer <token>` (this one "
        "reads everything).", secret=True)
    web_tokens_file: str | None = setting(
        "STREAMER_WEB_TOKENS_FILE", None, Text(means="a file path"),
        "Tokens scoped to rights holders (TOML or JSON: sha256 hex of a token -> `admin` or a "
        "list of holder ids; docs/OPERATIONS.md). A holder token reads only its own holder "
        "endpoints.")
    # Closed days (docs/LEDGER.md). A local folder for make run; an object store in
    # production, where the storage options carry the region and, often, credentials.
    ledger_url: str = setting(
        "STREAMER_LEDGER_URL", ".local/ledger",
        Text(means="a folder path or an object store URL (s3://, az://, gs://)"),
        "Where the Delta Lake ledger of closed days lives (one folder per table).")
    ledger_storage_options: Mapping[str, str] | None = setting(
        "STREAMER_LEDGER_STORAGE_OPTIONS", None, JsonObject(),
        "deltalake storage options for the ledger URL, e.g. `{\"AWS_REGION\": \"eu-west-1\"}`.",
        secret=True)
    # Statements over the API (docs/STATEMENTS.md, "The API"): without both files the
    # statement endpoint answers 503.
    rates_file: str | None = setting(
        "STREAMER_RATES_FILE", None, Text(means="a file path"),
        "Rate card (TOML) for `GET /v1/holders/{id}/statement` (docs/STATEMENTS.md).")
    parties_file: str | None = setting(
        "STREAMER_PARTIES_FILE", None, Text(means="a file path"),
        "Party registry (TOML) for `GET /v1/holders/{id}/statement` (docs/STATEMENTS.md).")
    max_record_bytes: int = MAX_RECORD_BYTES
    max_batch_events: int = 10_000
    # Allocations between two young-generation collections (CPython's default is 700).
    # The hot path allocates many short-lived tuples; at 700 the collector took a measurable
    # share of its time (docs/BENCHMARKS.md; python -m benchmarks.hotpath --gc-threshold 0).
    gc_gen0_threshold: int = setting(
        "STREAMER_GC_GEN0_THRESHOLD", 50_000, Int(min=0, zero="keep CPython's 700"),
        "Allocations between young-generation GC runs; start-up objects are frozen out of "
        "collections.")
    # 0 keeps Faust's agent path (same counts, several times slower on single records).
    direct_delivery: bool = setting(
        "STREAMER_DIRECT_DELIVERY", True, Flag(),
        "Input records skip Faust's per-record dispatch (faust_compat.deliver_directly).")
    delivery_stall_after_s: float = setting(
        "STREAMER_DELIVERY_STALL_AFTER_S", 60.0, Seconds(min=0, above=True),
        "/v1/health answers 503 when input partitions lag and no record came for this long.")
    malloc_trim_interval_s: float = setting(
        "STREAMER_MALLOC_TRIM_INTERVAL_S", 10.0, Seconds(min=0, zero="never"),
        "Seconds between returns of freed heap memory to the OS (glibc `malloc_trim`).")
    # glibc's allocator (pipeline/heap.py): blocks from this size get their own mapping,
    # returned when freed (glibc's threshold rises to 32 MiB as large blocks are freed);
    # and at most this many arenas. Both set lowered a 1M-track backlog's peak RSS but
    # slowed its drain (docs/BENCHMARKS.md), so both are off by default.
    malloc_mmap_threshold_bytes: int = setting(
        "STREAMER_MALLOC_MMAP_THRESHOLD", 0,
        Int(min=4096, max=32 << 20, zero="glibc's dynamic threshold"),
        "glibc allocates blocks from this many bytes in mappings of their own.")
    malloc_arena_max: int = setting(
        "STREAMER_MALLOC_ARENA_MAX", 0, Int(min=0, zero="glibc's default"),
        "At most this many glibc arenas (threads share them).")
    # The CLI's waits (streamer/cli.py): a command ends with one line and exit code 5
    # after them, instead of hanging or tracing back.
    connect_timeout_s: float = setting(
        "STREAMER_CONNECT_TIMEOUT_S", 10.0, Seconds(min=0, max=3600, above=True),
        "How long `produce`, `load` and `worker` wait for Kafka to answer, and `worker` "
        "for Redis to check the state layout.")
    query_timeout_s: float = setting(
        "STREAMER_QUERY_TIMEOUT_S", 10.0, Seconds(min=0, max=3600, above=True),
        "How long `streamer query` waits for a worker's answer.")
    log_format: str = setting(
        "STREAMER_LOG_FORMAT", "TEXT", Choice(("TEXT", "JSON")),
        "`json`: the worker logs one JSON object a line, for log pipelines (streamer/logs.py).")

    @property
    def catalog_cache_bytes(self) -> int:
        return self.catalog_cache_mb * 1_000_000

    @property
    def window_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.windows)

    @property
    def territory(self) -> tuple[tuple[str, int], ...]:
        """The territory windows with their sizes (empty: territory off)."""
        return tuple((name, size) for name, size in self.windows
                     if name in self.territory_windows)

    def window_size(self, name: str) -> int:
        for window_name, size in self.windows:
            if window_name == name:
                return size
        raise KeyError(name)
