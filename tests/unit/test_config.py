"""Settings declared once (streamer/config/): loading, bounds, choices, types, several
problems at once, secrets kept out of messages and the unknown-variable warning.

Bad values are checked against the declared bounds with an oracle written here, and the
defaults against their own declarations (each shown default must load back to itself).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.config import ConfigError, Settings, env_names, load_settings, unknown_variables
from streamer.config.declare import Setting, declaration
from streamer.config.kinds import Choice, Duration, DurationSeconds, Int, JsonObject, Seconds
from streamer.config.load import TOOL_PREFIXES, declarations

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {declared.env: declared for declared in declarations()}
# Fields that are constants of the code, not deployment settings.
FIXED = {"max_record_bytes", "max_batch_events"}


def problems_of(env: dict[str, str]) -> dict[str, str]:
    """Variable -> its problem's text; fails the test if loading succeeds."""
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    found = {problem.env: str(problem) for problem in info.value.problems}
    assert len(found) == len(info.value.problems), "one problem per variable"
    assert str(info.value) == "; ".join(str(p) for p in info.value.problems)
    return found


def declared_of(kind: type[Any]) -> list[Setting[Any]]:
    """Declarations of this kind with no rule between settings (tested on their own)."""
    return [declared for declared in DECLARED.values()
            if isinstance(declared.kind, kind) and declared.resolve is None]


# ------------------------------------------------------------------ the declarations


def test_every_setting_field_is_declared_once() -> None:
    names = env_names()
    assert len(names) == len(set(names)), "a variable declared twice"
    for cls in (Settings, type(Settings().kafka)):
        for field in dataclasses.fields(cls):
            if field.name in FIXED or field.name == "kafka":
                continue
            assert declaration(field) is not None, f"{cls.__name__}.{field.name} undeclared"
    for name, declared in DECLARED.items():
        assert re.fullmatch(r"STREAMER_[A-Z0-9_]+", name), name
        assert not name.startswith(TOOL_PREFIXES), f"{name} uses a prefix reserved for tools"
        assert declared.doc.endswith(".") and "\n" not in declared.doc, name
        assert declared.kind.accepts(), name


def test_shown_defaults_load_back_to_the_defaults() -> None:
    """Each default, written as a variable, passes its own rules and means the same."""
    defaults = Settings()
    env = {}
    for cls, instance in ((Settings, defaults), (type(defaults.kafka), defaults.kafka)):
        for field in dataclasses.fields(cls):
            declared, value = declaration(field), getattr(instance, field.name)
            if declared is not None and value is not None:
                env[declared.env] = declared.kind.show(value)
    assert len(env) >= 30
    assert load_settings(env) == defaults


def test_whitespace_only_counts_as_unset() -> None:
    assert load_settings({"STREAMER_WEB_PORT": "  ", "STREAMER_WINDOWS": "\t"}) == Settings()


# ------------------------------------------------------------------ bounds and types


def within(declared: Setting[Any], value: float) -> bool:
    kind = declared.kind
    assert isinstance(kind, Int | Seconds)
    if kind.zero is not None and value == 0:
        return True
    above = isinstance(kind, Seconds) and kind.above
    low_ok = kind.min is None or (value > kind.min if above else value >= kind.min)
    return low_ok and (kind.max is None or value <= kind.max)


@given(st.sampled_from(declared_of(Int)),
       st.integers(-(1 << 40), 1 << 40) | st.integers(-5, 70_000))
def test_integers_are_accepted_exactly_within_their_bounds(declared: Setting[Any],
                                                            value: int) -> None:
    env = {declared.env: str(value)}
    if within(declared, value):
        settings = load_settings(env)
        found = [getattr(obj, f.name) for obj in (settings, settings.kafka)
                 for f in dataclasses.fields(obj) if declaration(f) is declared]
        assert found == [value]
    else:
        problem = problems_of(env)[declared.env]
        assert re.search(r"must be (at least|at most)", problem), problem
        assert problem.endswith(f"got '{value}'")


@given(st.sampled_from(declared_of(Seconds)),
       st.floats(allow_nan=True, allow_infinity=True) | st.floats(-2, 70))
def test_seconds_are_accepted_exactly_when_finite_and_within_bounds(declared: Setting[Any],
                                                                    value: float) -> None:
    env = {declared.env: repr(value)}
    if math.isfinite(value) and within(declared, value):
        load_settings(env)
    else:
        assert declared.env in problems_of(env)


UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@given(st.sampled_from(declared_of(Duration) + declared_of(DurationSeconds)),
       st.integers(0, 100_000), st.sampled_from(sorted(UNIT_MS)))
def test_durations_are_accepted_exactly_when_positive_and_within_bounds(
        declared: Setting[Any], number: int, unit: str) -> None:
    kind = declared.kind
    assert isinstance(kind, Duration | DurationSeconds)
    ms = number * UNIT_MS[unit]
    env = {declared.env: f"{number}{unit}"}
    if ms > 0 and (kind.min_ms is None or ms >= kind.min_ms) and (
            kind.max_ms is None or ms <= kind.max_ms):
        settings = load_settings(env)
        expected = ms if isinstance(kind, Duration) else ms / 1000
        assert expected in [getattr(settings, f.name) for f in dataclasses.fields(settings)
                            if declaration(f) is declared]
    else:
        assert problems_of(env)[declared.env].endswith(f"got '{number}{unit}'")


@pytest.mark.parametrize(("env", "rule"), [
    ({"STREAMER_WEB_PORT": "99999"}, "must be at most 65535, got '99999'"),
    ({"STREAMER_WEB_PORT": "0"}, "must be at least 1, got '0'"),
    ({"STREAMER_REPLICATION_FACTOR": "0"}, "must be at least 1, got '0'"),
    ({"STREAMER_CATALOG_CACHE_MB": "-5"}, "must be at least 1, got '-5'"),
    ({"STREAMER_MAX_UNFLUSHED_EVENTS": "-1"}, "must be at least 1, got '-1'"),
    ({"STREAMER_KAFKA_MAX_PARTITION_FETCH_BYTES": "1000"}, "must be at least 1048576"),
    ({"STREAMER_KAFKA_SESSION_TIMEOUT": "500ms"}, "must be at least 2s, got '500ms'"),
    ({"STREAMER_KAFKA_SESSION_TIMEOUT": "1h"}, "must be at most 30m, got '1h'"),
    ({"STREAMER_MALLOC_MMAP_THRESHOLD": "100"},
     "must be at least 4096, or 0 (glibc's dynamic threshold), got '100'"),
    ({"STREAMER_PARTITIONS": "eight"}, "must be an integer, got 'eight'"),
    ({"STREAMER_FLUSH_INTERVAL_S": "1s"}, "must be a number of seconds, got '1s'"),
    ({"STREAMER_DELIVERY_STALL_AFTER_S": "inf"}, "must be a finite number of seconds"),
    ({"STREAMER_DIRECT_DELIVERY": "yes"}, "must be 0 or 1, got 'yes'"),
    ({"STREAMER_DEDUPE_HORIZON": "5 minutes"}, "must be a positive whole number with a unit"),
    ({"STREAMER_USES_TOPIC": "sounds used"}, "must be a Kafka topic name"),
    ({"STREAMER_KAFKA_BOOTSTRAP": "kafka://broker:9092"}, "must be comma-separated host:port"),
    ({"STREAMER_KAFKA_BOOTSTRAP": "broker:99999"}, "ports 1 to 65535"),
    ({"STREAMER_KAFKA_BOOTSTRAP": "a:9092,broker"}, "must be comma-separated host:port"),
    ({"STREAMER_WINDOWS": "1m,90s"}, "multiples of the smallest window 1m: 90s is not"),
    ({"STREAMER_RETENTION": "1m=3w"}, "must give durations"),
])
def test_each_rule_is_named_with_the_variable(env: dict[str, str], rule: str) -> None:
    ((name, _),) = env.items()
    assert rule in problems_of(env)[name]


def test_values_within_bounds_are_read() -> None:
    s = load_settings({"STREAMER_WEB_PORT": "65535", "STREAMER_REPLICATION_FACTOR": "3",
                       "STREAMER_KAFKA_SESSION_TIMEOUT": "30m", "STREAMER_MALLOC_ARENA_MAX": "0",
                       "STREAMER_KAFKA_BOOTSTRAP": " a:1 , b.example:9093 ",
                       "STREAMER_DIRECT_DELIVERY": "TRUE"})
    assert (s.web_port, s.replication_factor, s.kafka_session_timeout_s) == (65535, 3, 1800.0)
    assert (s.kafka.bootstrap, s.direct_delivery) == ("a:1,b.example:9093", True)


@given(st.sampled_from(declared_of(Choice)), st.data())
def test_choices_in_any_case(declared: Setting[Any], data: st.DataObject) -> None:
    assert isinstance(declared.kind, Choice)
    choice = data.draw(st.sampled_from(declared.kind.choices))
    spelled = "".join(data.draw(st.sampled_from([c.lower(), c.upper()])) for c in choice)
    env = {declared.env: spelled, "STREAMER_KAFKA_SASL_USERNAME": "u",
           "STREAMER_KAFKA_SASL_PASSWORD": "p", "STREAMER_KAFKA_SASL_MECHANISM": "plain"}
    settings = load_settings({**env, declared.env: spelled})
    kafka = settings.kafka
    assert choice in (kafka.security_protocol, kafka.sasl_mechanism, settings.log_format)


def test_redis_url_schemes() -> None:
    for url in ("redis://h:6379/0", "rediss://:pw@h:6380/1", "unix:///run/redis.sock",
                "redis+cluster://h:7000", "REDIS+SENTINEL://s1:26379,s2:26379/main/0",
                "rediss+sentinel://:pw@s1:26379/main"):
        assert load_settings({"STREAMER_REDIS_URL": url}).redis_url == url
    for url in ("http://h:6379", "h:6379", "redis:/h", "redis+proxy://h"):
        assert "must start with redis://" in problems_of({"STREAMER_REDIS_URL": url})[
            "STREAMER_REDIS_URL"]


@given(st.dictionaries(st.text(), st.text()))
def test_json_objects_of_strings(value: dict[str, str]) -> None:
    kind = JsonObject()
    assert kind.parse(kind.show(value)) == value


@pytest.mark.parametrize("text", ["{not json", "[]", '{"a": 1}', '"a"', "null"])
def test_json_object_kind_rejects_others(text: str) -> None:
    with pytest.raises(ValueError, match="must be a JSON object of strings"):
        JsonObject().parse(text)


def test_a_wrong_choice_lists_the_choices() -> None:
    problem = problems_of({"STREAMER_KAFKA_SECURITY_PROTOCOL": "TLS"})
    assert problem["STREAMER_KAFKA_SECURITY_PROTOCOL"] == (
        "STREAMER_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
        "SASL_SSL, got 'TLS'")


# ------------------------------------------------------------------ several at once

BAD = {"STREAMER_WEB_PORT": "99999", "STREAMER_REPLICATION_FACTOR": "0",
       "STREAMER_CATALOG_CACHE_MB": "-1", "STREAMER_PARTITIONS": "many",
       "STREAMER_FLUSH_INTERVAL_S": "nan", "STREAMER_WINDOWS": "1m,90s",
       "STREAMER_ALLOWED_LATENESS": "0s", "STREAMER_KAFKA_SECURITY_PROTOCOL": "TLS",
       "STREAMER_REDIS_URL": "http://redis:6379", "STREAMER_DIRECT_DELIVERY": "2",
       "STREAMER_MALLOC_MMAP_THRESHOLD": "-4096", "STREAMER_DLQ_TOPIC": "dlq/1",
       "STREAMER_KAFKA_FETCH_MAX_WAIT_MS": "30001"}


@given(st.sets(st.sampled_from(sorted(BAD)), min_size=1), st.booleans())
def test_every_bad_variable_is_reported_at_once(bad: set[str], with_good: bool) -> None:
    env = {name: BAD[name] for name in bad}
    if with_good:
        env |= {"STREAMER_APP_ID": "other", "STREAMER_KAFKA_FETCH_MIN_BYTES": "1"}
    assert set(problems_of(env)) == bad


def test_rules_between_settings() -> None:
    sasl = {"STREAMER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    assert set(problems_of(sasl)) == {"STREAMER_KAFKA_SASL_MECHANISM",
                                      "STREAMER_KAFKA_SASL_USERNAME",
                                      "STREAMER_KAFKA_SASL_PASSWORD"}
    found = problems_of({"STREAMER_FLUSH_INTERVAL_S": "2",
                         "STREAMER_BACKLOG_FLUSH_INTERVAL_S": "1"})
    assert found == {"STREAMER_BACKLOG_FLUSH_INTERVAL_S": "STREAMER_BACKLOG_FLUSH_INTERVAL_S "
                     "must be at least STREAMER_FLUSH_INTERVAL_S (2), got '1'"}
    found = problems_of({"STREAMER_WINDOWS": "5m,1h", "STREAMER_RETENTION": "1m=1d,5m=1d"})
    assert "names 1m, not among STREAMER_WINDOWS (5m, 1h)" in found["STREAMER_RETENTION"]


def test_a_rule_between_settings_waits_for_the_settings_it_needs() -> None:
    """A setting that is itself wrong is reported alone, not again through another's rule."""
    assert set(problems_of({"STREAMER_FLUSH_INTERVAL_S": "soon",
                            "STREAMER_BACKLOG_FLUSH_INTERVAL_S": "0.1"})) == {
        "STREAMER_FLUSH_INTERVAL_S"}
    assert set(problems_of({"STREAMER_WINDOWS": "5m,7m", "STREAMER_RETENTION": "7m=1d"})) == {
        "STREAMER_WINDOWS"}
    assert set(problems_of({"STREAMER_KAFKA_SECURITY_PROTOCOL": "SASL_TLS"})) == {
        "STREAMER_KAFKA_SECURITY_PROTOCOL"}


def test_secret_values_stay_out_of_problems() -> None:
    secret = "hunter2-secret"
    found = problems_of({"STREAMER_REDIS_URL": f"http://user:{secret}@redis:6379",
                         "STREAMER_WEB_PORT": secret})
    assert secret in found["STREAMER_WEB_PORT"]  # not a secret: the value helps
    assert found["STREAMER_REDIS_URL"].startswith("STREAMER_REDIS_URL must start with redis://")
    assert secret not in found["STREAMER_REDIS_URL"]


def test_the_cli_prints_every_problem_on_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from streamer.cli import main

    monkeypatch.setenv("STREAMER_WEB_PORT", "99999")
    monkeypatch.setenv("STREAMER_REPLICATION_FACTOR", "0")
    assert main(["query", "health"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("streamer: configuration error: ")
    assert "STREAMER_WEB_PORT must be at most 65535" in line
    assert "STREAMER_REPLICATION_FACTOR must be at least 1" in line


# ------------------------------------------------------------------ unknown variables


def test_a_typo_is_warned_about_naming_the_closest_setting(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamer.config"):
        settings = load_settings({"STREAMER_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
                                  "STREAMER_PARTITONS": "3", "STREAMER_ZZZ": "1"})
    assert settings == Settings()  # ignored, not guessed
    assert [record.getMessage() for record in caplog.records] == [
        "STREAMER_KAFKA_BOOTSTRAP_SERVERS is not a streamer setting and is ignored; "
        "did you mean STREAMER_KAFKA_BOOTSTRAP?",
        "STREAMER_PARTITONS is not a streamer setting and is ignored; "
        "did you mean STREAMER_PARTITIONS?",
        "STREAMER_ZZZ is not a streamer setting and is ignored"]


def test_typos_are_warned_about_even_when_loading_fails(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamer.config"):
        problems_of({"STREAMER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                     "STREAMER_KAFKA_SASL_USER": "streamer"})
    assert "did you mean STREAMER_KAFKA_SASL_USERNAME?" in caplog.text


def test_tools_variables_and_other_names_are_not_warned_about() -> None:
    env = {"STREAMER_LOCAL_KAFKA_PORT": "19092", "STREAMER_TEST_KEEP": "1",
           "STREAMER_FAULTS_DIR": "/tmp/f", "STREAMER_BENCH_OUT": "x", "PATH": "/bin",
           "STREAMER_BUILD_COMMIT": "abc123",
           "KAFKA_BOOTSTRAP": "x", "streamer_partitions": "3", **{n: "" for n in env_names()}}
    assert unknown_variables(env) == []


def _variables_named_in_the_repository() -> dict[str, set[str]]:
    # Files that spell a typo on purpose, as an example of the warning, and the
    # declarations themselves (with an example of a new setting in the docstring).
    skip = {"tests/unit/test_config.py", "tests/unit/test_config_doc.py",
            "docs/CONFIGURATION.md", "streamer/config/doc.py", "streamer/config/settings.py"}
    found: dict[str, set[str]] = {}
    for top in ("streamer", "tests", "benchmarks", "deploy", "docs", ".ci", "Makefile",
                "README.md"):
        paths = [ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*")
        for path in paths:
            where = str(path.relative_to(ROOT))
            if not path.is_file() or where in skip or path.suffix in (".pyc", ".jar"):
                continue
            text = path.read_text(errors="replace")
            for name in re.findall(r"\bSTREAMER_[A-Z0-9_]*[A-Z0-9]\b", text):
                found.setdefault(name, set()).add(where)
    return found


def test_every_streamer_variable_used_in_the_repository_is_known() -> None:
    """The typo warning stays quiet for every variable the project itself uses."""
    named = _variables_named_in_the_repository()
    assert {"STREAMER_LOCAL_KAFKA_PORT", "STREAMER_TEST_KEEP", "STREAMER_WEB_PORT"} <= named.keys()
    placeholders = {"STREAMER_NAME"}  # "--worker-env wants STREAMER_NAME=value" (benchmarks)
    unknown = {name: sorted(where) for name, where in named.items()
               if unknown_variables({name: "x"}) and name not in placeholders}
    assert not unknown, f"declare these in streamer/config/settings.py or use a tool prefix " \
                        f"({', '.join(TOOL_PREFIXES)}): {unknown}"


def test_territory_defaults_to_1d_only_when_1d_is_counted() -> None:
    assert load_settings({}).territory_windows == ("1d",)
    # Counting no 1d window leaves territory off by default instead of refusing to start.
    assert load_settings({"STREAMER_WINDOWS": "15m,1h"}).territory_windows == ()
    # Asked for explicitly, a window that is not counted is still an error.
    with pytest.raises(ConfigError, match="STREAMER_TERRITORY_WINDOWS names 1d"):
        load_settings({"STREAMER_WINDOWS": "15m,1h", "STREAMER_TERRITORY_WINDOWS": "1d"})
