"""Window math (streamer.windows) and the settings that configure it (streamer.config)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.config import ConfigError, Settings, load_settings
from streamer.windows import parse_duration, window_bounds, window_start

SETTINGS = settings(max_examples=400, deadline=None)

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def ms(*args: int) -> int:
    """Epoch ms of a UTC wall-clock time, computed by datetime, not by window math."""
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000


# -- window_start / window_bounds ------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1_000, ms(2024, 2, 29, 23, 59, 58)),
        (MINUTE, ms(2024, 2, 29, 23, 59)),
        (5 * MINUTE, ms(2024, 2, 29, 23, 55)),
        (HOUR, ms(2024, 2, 29, 23)),
        (DAY, ms(2024, 2, 29)),
    ],
)
def test_windows_align_to_utc(size: int, expected: int) -> None:
    t = ms(2024, 2, 29, 23, 59, 58) + 999
    assert window_start(t, size) == expected
    assert window_bounds(t, size) == (expected, expected + size)


def test_window_boundaries_are_half_open() -> None:
    midnight = ms(2025, 1, 1)
    assert window_bounds(midnight, DAY) == (midnight, ms(2025, 1, 2))
    assert window_bounds(midnight - 1, DAY) == (ms(2024, 12, 31), midnight)
    assert window_start(midnight + HOUR - 1, HOUR) == midnight
    assert window_start(midnight + HOUR, HOUR) == midnight + HOUR
    assert window_bounds(0, MINUTE) == (0, MINUTE)


def test_day_windows_ignore_local_time_and_dst() -> None:
    # 2024-03-31 is a DST change in Europe; UTC days are still 24 h.
    start, end = window_bounds(ms(2024, 3, 31, 12), DAY)
    assert (start, end) == (ms(2024, 3, 31), ms(2024, 4, 1))
    assert end - start == 24 * HOUR


@SETTINGS
@given(
    st.integers(min_value=0, max_value=2**53 - 1),
    st.sampled_from([1, 1_000, MINUTE, 5 * MINUTE, HOUR, DAY, 7 * DAY])
    | st.integers(min_value=1, max_value=10**10),
)
def test_window_contains_its_timestamp(t: int, size: int) -> None:
    start, end = window_bounds(t, size)
    assert start <= t < end
    assert start % size == 0
    assert end - start == size
    assert window_start(t, size) == start
    # The window of any instant inside it is the same window.
    assert window_bounds(end - 1, size) == (start, end)
    assert window_bounds(start, size) == (start, end)


@SETTINGS
@given(st.integers(min_value=0, max_value=2**50), st.integers(min_value=1, max_value=1000),
       st.integers(min_value=1, max_value=50))
def test_base_window_fixes_every_larger_window(t: int, base: int, factor: int) -> None:
    # The hot path keeps only the base window; expanding it must give the event's window.
    size = base * factor
    assert window_start(window_start(t, base), size) == window_start(t, size)


# -- parse_duration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1ms", 1),
        ("500ms", 500),
        ("1s", 1_000),
        ("90s", 90_000),
        ("30s", 30_000),
        ("1m", 60_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("24h", 86_400_000),
        ("1d", 86_400_000),
        ("400d", 34_560_000_000),
        (" 2h ", 7_200_000),
        ("10 m", 600_000),
        ("007s", 7_000),
    ],
)
def test_parse_duration(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "1", "h", "m5", "1w", "1y", "1.5h", "-1h", "+1h", "0s", "0ms", "0d", "1H", "1M",
     "1 hour", "1hr", "1h30m", "1h 2m", "1e3ms", "5 mins", "ms", "1_000ms", "1,5s"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@SETTINGS
@given(st.integers(min_value=1, max_value=10**9),
       st.sampled_from([("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000),
                        ("d", 86_400_000)]))
def test_parse_duration_any_positive_whole_number(n: int, unit: tuple[str, int]) -> None:
    suffix, factor = unit
    assert parse_duration(f"{n}{suffix}") == n * factor


# -- load_settings ----------------------------------------------------------------------


def test_defaults_from_an_empty_environment() -> None:
    s = load_settings({})
    assert s.windows == (("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000))
    assert s.window_names == ("1m", "1h", "1d")
    assert dict(s.retention_ms) == {
        "1m": 2 * 3_600_000,
        "1h": 14 * 86_400_000,
        "1d": 400 * 86_400_000,
    }
    assert s.allowed_lateness_ms == 3_600_000
    assert s.future_tolerance_ms == 300_000
    assert s.dedupe_horizon_ms == 300_000
    assert (s.flush_interval_s, s.backlog_flush_interval_s) == (0.5, 1.0)
    assert s.partitions == 8
    assert (s.tracks_topic, s.uses_topic, s.dlq_topic) == (
        "tracks.created", "sounds.used", "streamer.dlq")
    assert (s.web_host, s.web_port) == ("127.0.0.1", 6066)
    assert s.max_record_bytes == 1_048_576
    assert s.max_batch_events == 10_000
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.kafka.security_protocol == "PLAINTEXT"
    assert s.kafka_session_timeout_s == 10.0
    assert s.web_token is None
    assert s == Settings()


def test_empty_values_count_as_unset() -> None:
    s = load_settings({"STREAMER_PARTITIONS": "", "STREAMER_WINDOWS": "",
                       "STREAMER_ALLOWED_LATENESS": ""})
    assert (s.partitions, s.windows, s.allowed_lateness_ms) == (
        8, Settings().windows, 3_600_000)


def test_unprefixed_variables_are_ignored() -> None:
    assert load_settings({"PARTITIONS": "3", "WINDOWS": "bogus"}).partitions == 8


def test_windows_are_sorted_by_size() -> None:
    s = load_settings({"STREAMER_WINDOWS": "1d, 5m,1h"})
    assert s.windows == (("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000))
    assert s.window_size("1h") == 3_600_000
    with pytest.raises(KeyError):
        s.window_size("1m")


@pytest.mark.parametrize(
    ("windows", "bad"),
    [("1m,90s", "90s"), ("7m,1h", "1h"), ("1h,1d,90m", "90m"), ("2m,3m", "3m"),
     ("1s,1500ms", "1500ms")],
)
def test_windows_must_be_multiples_of_the_smallest(windows: str, bad: str) -> None:
    with pytest.raises(ConfigError, match="STREAMER_WINDOWS") as info:
        load_settings({"STREAMER_WINDOWS": windows})
    assert bad in str(info.value)


@pytest.mark.parametrize("windows", [",", " , ,"])
def test_windows_must_list_one(windows: str) -> None:
    with pytest.raises(ConfigError, match="STREAMER_WINDOWS"):
        load_settings({"STREAMER_WINDOWS": windows})


@pytest.mark.parametrize("windows", ["1m,xyz", "1 week", "1m,0s"])
def test_unparseable_window_is_a_config_error_naming_the_variable(windows: str) -> None:
    with pytest.raises(ConfigError, match="STREAMER_WINDOWS"):
        load_settings({"STREAMER_WINDOWS": windows})


@pytest.mark.parametrize(
    "name",
    ["PARTITIONS", "REPLICATION_FACTOR", "CATALOG_CACHE_MB", "MAX_UNFLUSHED_EVENTS",
     "WEB_PORT"],
)
@pytest.mark.parametrize("value", ["eight", "1.5", "0x10", "1e3"])
def test_bad_integers_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"STREAMER_{name} must be an integer"):
        load_settings({f"STREAMER_{name}": value})


def test_integers_are_read() -> None:
    s = load_settings({"STREAMER_PARTITIONS": "32", "STREAMER_WEB_PORT": "8080",
                       "STREAMER_CATALOG_CACHE_MB": "1000"})
    assert (s.partitions, s.web_port, s.catalog_cache_mb) == (32, 8080, 1000)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_partitions_at_least_one(value: str) -> None:
    with pytest.raises(ConfigError, match="STREAMER_PARTITIONS"):
        load_settings({"STREAMER_PARTITIONS": value})


@pytest.mark.parametrize(
    ("name", "attribute", "value", "expected"),
    [
        ("ALLOWED_LATENESS", "allowed_lateness_ms", "2h", 7_200_000),
        ("FUTURE_TOLERANCE", "future_tolerance_ms", "30s", 30_000),
        ("DEDUPE_HORIZON", "dedupe_horizon_ms", "10m", 600_000),
        ("CATALOG_TTL", "catalog_ttl_ms", "30d", 2_592_000_000),
        ("KAFKA_SESSION_TIMEOUT", "kafka_session_timeout_s", "45s", 45.0),
    ],
)
def test_durations_are_read(name: str, attribute: str, value: str, expected: object) -> None:
    assert getattr(load_settings({f"STREAMER_{name}": value}), attribute) == expected


@pytest.mark.parametrize(
    "name", ["ALLOWED_LATENESS", "FUTURE_TOLERANCE", "DEDUPE_HORIZON", "CATALOG_TTL"]
)
@pytest.mark.parametrize("value", ["1 hour", "60", "-5m", "0s"])
def test_bad_durations_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"STREAMER_{name}"):
        load_settings({f"STREAMER_{name}": value})


@pytest.mark.parametrize(("value", "expected"), [("0.25", 0.25), ("60", 60.0), ("2", 2.0)])
def test_flush_interval(value: str, expected: float) -> None:
    assert load_settings({"STREAMER_FLUSH_INTERVAL_S": value}).flush_interval_s == expected


@pytest.mark.parametrize("value", ["0", "-1", "60.5", "nan", "inf"])
def test_flush_interval_out_of_range(value: str) -> None:
    with pytest.raises(ConfigError, match="STREAMER_FLUSH_INTERVAL_S"):
        load_settings({"STREAMER_FLUSH_INTERVAL_S": value})


@pytest.mark.parametrize(("flush", "backlog", "expected"), [
    (None, "2", 2.0), (None, "0.5", 0.5), ("2", None, 2.0), ("0.25", None, 1.0),
    ("3", "3", 3.0)])
def test_backlog_flush_interval_is_never_below_the_flush_interval(
        flush: str | None, backlog: str | None, expected: float) -> None:
    env = {name: value for name, value in (("STREAMER_FLUSH_INTERVAL_S", flush),
                                           ("STREAMER_BACKLOG_FLUSH_INTERVAL_S", backlog))
           if value is not None}
    assert load_settings(env).backlog_flush_interval_s == expected


@pytest.mark.parametrize(("flush", "backlog"), [
    ("0.5", "0.4"), ("2", "1"), ("0.5", "61"), ("0.5", "nan"), ("0.5", "0")])
def test_backlog_flush_interval_out_of_range_is_named(flush: str, backlog: str) -> None:
    with pytest.raises(ConfigError, match="STREAMER_BACKLOG_FLUSH_INTERVAL_S"):
        load_settings({"STREAMER_FLUSH_INTERVAL_S": flush,
                       "STREAMER_BACKLOG_FLUSH_INTERVAL_S": backlog})


def test_flush_interval_not_a_number_is_named() -> None:
    with pytest.raises(ConfigError, match="STREAMER_FLUSH_INTERVAL_S"):
        load_settings({"STREAMER_FLUSH_INTERVAL_S": "1s"})


def test_security_protocol() -> None:
    sasl = {"STREAMER_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "STREAMER_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "STREAMER_KAFKA_SASL_USERNAME": "u", "STREAMER_KAFKA_SASL_PASSWORD": "p"}
    kafka = load_settings(sasl).kafka
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    with pytest.raises(ConfigError, match="STREAMER_KAFKA_SECURITY_PROTOCOL"):
        load_settings({"STREAMER_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ConfigError, match="STREAMER_KAFKA_SASL_MECHANISM"):
        load_settings({**sasl, "STREAMER_KAFKA_SASL_MECHANISM": ""})
    with pytest.raises(ConfigError, match="STREAMER_KAFKA_SASL_PASSWORD"):
        load_settings({**sasl, "STREAMER_KAFKA_SASL_PASSWORD": ""})


# -- retention ----------------------------------------------------------------------------


def test_retention_overrides_one_window_and_keeps_the_other_defaults() -> None:
    s = load_settings({"STREAMER_RETENTION": "1m=3h"})
    assert dict(s.retention_ms) == {"1m": 10_800_000, "1h": 1_209_600_000, "1d": 34_560_000_000}


def test_retention_several_with_spaces() -> None:
    s = load_settings({"STREAMER_RETENTION": " 1h = 2d , 1d=30d ,"})
    assert s.retention_ms["1h"] == 172_800_000
    assert s.retention_ms["1d"] == 2_592_000_000
    assert s.retention_ms["1m"] == 7_200_000


def test_retention_of_custom_windows_defaults_to_twice_the_size_at_least_two_hours() -> None:
    s = load_settings({"STREAMER_WINDOWS": "5m,6h,1h"})
    assert s.retention_ms["5m"] == 7_200_000  # max(10 min, 2 h)
    assert s.retention_ms["6h"] == 43_200_000  # 12 h
    assert s.retention_ms["1h"] == 1_209_600_000  # the documented 1h default, 14 d
    for name in s.window_names:
        assert name in s.retention_ms


def test_retention_for_a_custom_window() -> None:
    s = load_settings({"STREAMER_WINDOWS": "15m,1h", "STREAMER_RETENTION": "15m=1d"})
    assert s.retention_ms["15m"] == 86_400_000


@pytest.mark.parametrize("value", ["1m", "1m=", "1m:3h"])
def test_retention_needs_window_equals_duration(value: str) -> None:
    with pytest.raises(ConfigError, match="STREAMER_RETENTION"):
        load_settings({"STREAMER_RETENTION": value})


def test_retention_bad_duration_is_named() -> None:
    with pytest.raises(ConfigError, match="STREAMER_RETENTION"):
        load_settings({"STREAMER_RETENTION": "1m=3 hours"})


# -- spread_over_windows ----------------------------------------------------------------

WINDOWS = (("1m", MINUTE), ("1h", HOUR), ("1d", DAY))
_fields = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(1, 1_000), max_size=3)


@SETTINGS
@given(bases=st.dictionaries(st.integers(0, 3 * DAY // MINUTE).map(lambda m: m * MINUTE),
                             _fields, max_size=6),
       extra=st.dictionaries(st.tuples(st.sampled_from([w for w, _ in WINDOWS]),
                                       st.integers(0, 3 * DAY // MINUTE).map(
                                           lambda m: m * MINUTE)),
                             _fields, max_size=4))
def test_spreading_sums_every_base_window_into_each_size(
        bases: dict[int, dict[str, int]],
        extra: dict[tuple[str, int], dict[str, int]]) -> None:
    from collections import Counter

    from streamer.windows import spread_over_windows

    before = {base: dict(fields) for base, fields in bases.items()}
    extra_before = {key: dict(fields) for key, fields in extra.items()}
    expected: dict[tuple[str, int], Counter[str]] = {}
    for base, fields in bases.items():
        for name, size in WINDOWS:
            if fields:  # floor division, not the code's modulo
                expected.setdefault((name, base // size * size), Counter()).update(fields)
    for key, fields in extra.items():
        expected.setdefault(key, Counter()).update(fields)

    spread = spread_over_windows(bases, WINDOWS, extra)
    assert {key: dict(fields) for key, fields in spread.items()} == {
        key: dict(fields) for key, fields in expected.items()}
    assert bases == before and extra == extra_before  # shared dicts are never summed into


def test_one_base_window_shares_its_fields_with_every_size() -> None:
    from streamer.windows import spread_over_windows

    fields = {"play|trk-1": 3}
    spread = spread_over_windows({ms(2024, 3, 1, 10, 7): fields}, WINDOWS, {})
    assert spread == {("1m", ms(2024, 3, 1, 10, 7)): fields, ("1h", ms(2024, 3, 1, 10)): fields,
                      ("1d", ms(2024, 3, 1)): fields}
    assert all(value is fields for value in spread.values())  # no copy when nothing meets
