"""Settings from the environment: every bad variable reported at once, typos warned about.

Only the declarations in settings.py are read; an empty variable counts as unset, unless
its kind gives nothing a meaning (``empty_is_value``: an empty list, "off").
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from streamer.config.declare import ConfigError, Problem, Setting, declaration
from streamer.config.settings import Settings

ENV_PREFIX = "STREAMER_"
# STREAMER_* variables that are no worker setting: no typo warning for them.
# STREAMER_LOCAL_*: deploy/local/ scripts and the Makefile (docs/LOCAL_STACK.md);
# STREAMER_TEST_* and STREAMER_FAULTS_*: the test suite; STREAMER_BENCH_*: benchmarks;
# STREAMER_BUILD_*: facts the image build records (e.g. the commit), not settings.
TOOL_PREFIXES = ("STREAMER_LOCAL_", "STREAMER_TEST_", "STREAMER_FAULTS_", "STREAMER_BENCH_",
                 "STREAMER_BUILD_")

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")

log = logging.getLogger(__name__)


def declarations(cls: type[DataclassInstance] = Settings) -> Iterator[Setting[Any]]:
    """Every declared setting, in declaration order, nested groups (``kafka``) in place."""
    for dataclass_field in dataclasses.fields(cls):
        declared, group = declaration(dataclass_field), group_of(dataclass_field)
        if declared is not None:
            yield declared
        elif group is not None:
            yield from declarations(group)


def env_names() -> list[str]:
    return [declared.env for declared in declarations()]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default: the process environment).

    Raises ConfigError listing every variable that breaks its rule; logs a warning for
    each STREAMER_* variable that is no setting (a likely typo), naming the closest one.
    """
    env = os.environ if env is None else env
    for warning in unknown_variables(env):
        # The text is the template: the log's repeat limiter treats one template as one
        # run, and each mistyped variable must be shown.
        log.warning(warning.replace("%", "%%"))
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


def group_of(dataclass_field: dataclasses.Field[Any]) -> type[DataclassInstance] | None:
    """The dataclass of a nested group of settings (``Settings.kafka``), if this field is one."""
    factory = dataclass_field.default_factory
    if isinstance(factory, type) and dataclasses.is_dataclass(factory):
        return factory
    return None


def _load(cls: type[D], env: Mapping[str, str], problems: list[Problem]) -> D:
    """Read each declared field of ``cls``, then resolve those that depend on others."""
    values: dict[str, Any] = {}
    given: dict[str, Any] = {}
    wrong: set[str] = set()
    for dataclass_field in dataclasses.fields(cls):
        name, declared, group = (dataclass_field.name, declaration(dataclass_field),
                                 group_of(dataclass_field))
        if group is not None and declared is None:
            values[name] = _load(group, env, problems)
        text = (env.get(declared.env) or "").strip() if declared is not None else ""
        if declared is None or not (text or (declared.kind.empty_is_value
                                             and declared.env in env)):
            continue
        try:
            values[name] = given[name] = declared.kind.parse(text)
        except ValueError as exc:
            problems.append(_problem(declared, str(exc), text))
            wrong.add(name)
    loaded = cls(**values)
    for dataclass_field in dataclasses.fields(cls):
        name, declared = dataclass_field.name, declaration(dataclass_field)
        if declared is None or declared.resolve is None or wrong & {name, *declared.needs}:
            continue
        try:
            value = declared.resolve(loaded, given.get(name))
        except ValueError as exc:
            problems.append(_problem(declared, str(exc), env.get(declared.env, "").strip()))
            continue
        loaded = dataclasses.replace(loaded, **{name: value})
    return loaded


def _problem(declared: Setting[Any], rule: str, text: str) -> Problem:
    if text and not declared.secret:
        rule = f"{rule}, got {text!r}"
    return Problem(declared.env, rule)
