"""Settings from the environment: every bad variable reported at once, typos warned about.

Only the declarations in settings.py are read; an empty variable counts as unset.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from streamer.config.declare import ConfigError, Problem, Setting, declaration
from streamer.config.settings import Settings

ENV_PREFIX = "STREAMER_"
# STREAMER_* variables that tools read, not the worker: no typo warning for them.
# STREAMER_LOCAL_*: deploy/local/ scripts and the Makefile (docs/LOCAL_STACK.md);
# STREAMER_TEST_* and STREAMER_FAULTS_*: the test suite; STREAMER_BENCH_*: benchmarks.
TOOL_PREFIXES = ("STREAMER_LOCAL_", "STREAMER_TEST_", "STREAMER_FAULTS_", "STREAMER_BENCH_")

D = TypeVar("D")

log = logging.getLogger(__name__)


def declarations(cls: type[Any] = Settings) -> Iterator[Setting[Any]]:
    """Every declared setting, in declaration order, nested groups (``kafka``) in place."""
    for dataclass_field in dataclasses.fields(cls):
        declared = declaration(dataclass_field)
        if declared is not None:
            yield declared
        elif _is_group(dataclass_field):
            yield from declarations(dataclass_field.default_factory)  # type: ignore[arg-type]


def env_names() -> list[str]:
    return [declared.env for declared in declarations()]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default: the process environment).

    Raises ConfigError listing every variable that breaks its rule; logs a warning for
    each STREAMER_* variable that is no setting (a likely typo), naming the closest one.
    """
    env = os.environ if env is None else env
    for warning in unknown_variables(env):
        log.warning("%s", warning)
    problems: list[Problem] = []
    settings = _load(Settings, env, problems)
    if problems:
        raise ConfigError(problems)
    return settings


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One message per STREAMER_* variable that no setting or tool reads."""
    known = env_names()
    messages = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(TOOL_PREFIXES):
            continue
        # Compared without the prefix, which every name shares and would make all alike.
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX),
                                          [k.removeprefix(ENV_PREFIX) for k in known], n=1)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        messages.append(f"{name} is not a streamer setting and is ignored{hint}")
    return messages


def _is_group(dataclass_field: dataclasses.Field[Any]) -> bool:
    factory = dataclass_field.default_factory
    return isinstance(factory, type) and dataclasses.is_dataclass(factory)


def _load(cls: type[D], env: Mapping[str, str], problems: list[Problem]) -> D:
    values: dict[str, Any] = {}
    given: dict[str, Any] = {}
    wrong: set[str] = set()
    resolved: list[tuple[str, Setting[Any]]] = []
    for dataclass_field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name, declared = dataclass_field.name, declaration(dataclass_field)
        if declared is None:
            if _is_group(dataclass_field):
                values[name] = _load(dataclass_field.default_factory, env, problems)  # type: ignore[arg-type]
            continue
        if declared.resolve is not None:
            resolved.append((name, declared))
        text = (env.get(declared.env) or "").strip()
        if not text:
            continue
        try:
            values[name] = given[name] = declared.kind.parse(text)
        except ValueError as exc:
            problems.append(_problem(declared, str(exc), text))
            wrong.add(name)
    settings = cls(**values)
    for name, declared in resolved:
        if wrong & {name, *declared.needs}:
            continue
        assert declared.resolve is not None
        try:
            value = declared.resolve(settings, given.get(name))
        except ValueError as exc:
            problems.append(_problem(declared, str(exc), env.get(declared.env, "").strip()))
            continue
        settings = dataclasses.replace(settings, **{name: value})  # type: ignore[type-var]
    return settings


def _problem(declared: Setting[Any], rule: str, text: str) -> Problem:
    if text and not declared.secret:
        rule = f"{rule}, got {text!r}"
    return Problem(declared.env, rule)
