"""How a setting is declared: variable, kind (type and bounds), default, one-line doc.

``setting()`` makes a dataclass field that carries its declaration in the field's
metadata, so ``Settings`` stays a plain frozen dataclass while loading (load.py) and
docs/CONFIGURATION.md (doc.py) are derived from the same declaration. The kinds
(kinds.py) parse a variable's text and say in words which values they accept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import Field, dataclass, field
from typing import Any, Generic, TypeVar, overload

from streamer.config.kinds import Kind

T = TypeVar("T")

_METADATA_KEY = "streamer.setting"


class ConfigError(ValueError):
    """Settings the worker cannot run with: every problem found, each naming its variable."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


@dataclass(frozen=True, slots=True)
class Problem:
    env: str
    rule: str  # the rule broken, e.g. "must be at most 65535, got '99999'"

    def __str__(self) -> str:
        return f"{self.env} {self.rule}"


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One setting's declaration (see ``setting()``)."""

    env: str
    kind: Kind[T]
    doc: str
    secret: bool = False
    shown_default: str | None = None
    resolve: Callable[[Any, T | None], T] | None = None
    needs: tuple[str, ...] = ()


@overload
def setting(env: str, default: None, kind: Kind[T], doc: str, *, secret: bool = ...,
            shown_default: str | None = ...,
            resolve: Callable[[Any, T | None], T | None] | None = ...,
            needs: tuple[str, ...] = ...) -> T | None: ...


@overload
def setting(env: str, default: T, kind: Kind[T], doc: str, *, secret: bool = ...,
            shown_default: str | None = ..., resolve: Callable[[Any, T | None], T] | None = ...,
            needs: tuple[str, ...] = ...) -> T: ...


def setting(env: str, default: Any, kind: Kind[Any], doc: str, *, secret: bool = False,
            shown_default: str | None = None, resolve: Callable[[Any, Any], Any] | None = None,
            needs: tuple[str, ...] = ()) -> Any:
    """A dataclass field read from the variable ``env``.

    ``resolve(owner, given)`` runs after every field of the owning dataclass is read,
    with ``given`` the parsed value or None when the variable is unset: it returns the
    final value (a default computed from other settings) or raises ValueError with the
    rule broken. It is skipped when one of ``needs`` (attribute names) is itself wrong.
    A secret's value is never shown: not in repr, errors or the doc.
    """
    declared = Setting(env, kind, doc, secret, shown_default, resolve, needs)
    metadata = {_METADATA_KEY: declared}
    if isinstance(default, (dict, list, set)):
        return field(default_factory=lambda: copy.copy(default), repr=not secret,
                     metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


def declaration(dataclass_field: Field[Any]) -> Setting[Any] | None:
    found: Setting[Any] | None = dataclass_field.metadata.get(_METADATA_KEY)
    return found
