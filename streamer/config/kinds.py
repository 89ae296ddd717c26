"""Kinds of setting: each parses a variable's text into a value, raising ValueError
with the rule the text broke, and says in words which values it accepts (for the doc).
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from streamer.windows import parse_duration

T = TypeVar("T")


class Kind(ABC, Generic[T]):
    """A type of setting: parses a variable's text, says what it accepts, shows a value."""

    @abstractmethod
    def parse(self, text: str) -> T:
        """The value of ``text`` (stripped, not empty); ValueError("must be ...") if none."""

    @abstractmethod
    def accepts(self) -> str:
        """The values accepted, in words, for docs/CONFIGURATION.md."""

    def show(self, value: T) -> str:
        return str(value)

    # Whether a variable set to nothing (``NAME=``) means something of its own, parsed
    # from "" (a list that may be empty: "off"); otherwise it counts as unset.
    empty_is_value = False


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_num(low)} to {_num(high)}"
    if low is not None:
        return f"at least {_num(low)}"
    return f"at most {_num(high)}" if high is not None else "any"


def _check_range(value: float, low: float | None, high: float | None, *, above: bool = False,
                 zero: str | None = None) -> None:
    if zero is not None and value == 0:
        return
    off = f", or 0 ({zero})" if zero is not None else ""
    if low is not None and (value <= low if above else value < low):
        raise ValueError(f"must be {'more than' if above else 'at least'} {_num(low)}{off}")
    if high is not None and value > high:
        raise ValueError(f"must be at most {_num(high)}{off}")


@dataclass(frozen=True, slots=True)
class Int(Kind[int]):
    min: int | None = None
    max: int | None = None
    zero: str | None = None  # what 0 means, when 0 turns the feature off outside the bounds

    def parse(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("must be an integer") from None
        _check_range(value, self.min, self.max, zero=self.zero)
        return value

    def accepts(self) -> str:
        zero = f"; 0: {self.zero}" if self.zero is not None else ""
        return f"integer, {_range(self.min, self.max)}{zero}"


@dataclass(frozen=True, slots=True)
class Seconds(Kind[float]):
    min: float | None = None
    max: float | None = None
    above: bool = False  # min itself is not allowed
    zero: str | None = None

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        _check_range(value, self.min, self.max, above=self.above, zero=self.zero)
        return value

    def accepts(self) -> str:
        bounds = []
        if self.min is not None:
            bounds.append(f"{'more than' if self.above else 'at least'} {self.min:g}")
        if self.max is not None:
            bounds.append(f"at most {self.max:g}")
        zero = f"; 0: {self.zero}" if self.zero is not None else ""
        return f"seconds, {', '.join(bounds) or 'any'}{zero}"

    def show(self, value: float) -> str:
        return f"{value:g}"


_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))


def show_duration(ms: int) -> str:
    return next(f"{ms // size}{unit}" for unit, size in _UNITS if ms % size == 0)


def _duration_ms(text: str, low_ms: int | None, high_ms: int | None) -> int:
    try:
        value = parse_duration(text)
    except ValueError:
        raise ValueError("must be a positive whole number with a unit: ms, s, m, h or d "
                         "(e.g. 30s)") from None
    if low_ms is not None and value < low_ms:
        raise ValueError(f"must be at least {show_duration(low_ms)}")
    if high_ms is not None and value > high_ms:
        raise ValueError(f"must be at most {show_duration(high_ms)}")
    return value


def _duration_accepts(low_ms: int | None, high_ms: int | None) -> str:
    low = show_duration(low_ms) if low_ms is not None else None
    high = show_duration(high_ms) if high_ms is not None else None
    bounds = f"{low} to {high}" if low and high else (f"at least {low}" if low else "positive")
    return f"duration (500ms, 30s, 5m, 1h, 1d), {bounds}"


@dataclass(frozen=True, slots=True)
class Duration(Kind[int]):
    """A duration such as ``5m``, held in milliseconds."""

    min_ms: int | None = None
    max_ms: int | None = None

    def parse(self, text: str) -> int:
        return _duration_ms(text, self.min_ms, self.max_ms)

    def accepts(self) -> str:
        return _duration_accepts(self.min_ms, self.max_ms)

    def show(self, value: int) -> str:
        return show_duration(value)


@dataclass(frozen=True, slots=True)
class DurationSeconds(Kind[float]):
    """A duration such as ``10s``, held in seconds (for settings Faust takes in seconds)."""

    min_ms: int | None = None
    max_ms: int | None = None

    def parse(self, text: str) -> float:
        return _duration_ms(text, self.min_ms, self.max_ms) / 1000

    def accepts(self) -> str:
        return _duration_accepts(self.min_ms, self.max_ms)

    def show(self, value: float) -> str:
        return show_duration(round(value * 1000))


@dataclass(frozen=True, slots=True)
class Flag(Kind[bool]):
    def parse(self, text: str) -> bool:
        value = text.strip().lower()
        if value not in ("0", "1", "true", "false"):
            raise ValueError("must be 0 or 1")
        return value in ("1", "true")

    def accepts(self) -> str:
        return "0 or 1 (false or true)"

    def show(self, value: bool) -> str:
        return "1" if value else "0"


@dataclass(frozen=True, slots=True)
class Choice(Kind[str]):
    """One of a few names, in any case (held in upper case)."""

    choices: tuple[str, ...]

    def parse(self, text: str) -> str:
        value = text.strip().upper()
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return value

    def accepts(self) -> str:
        return "one of " + ", ".join(f"`{choice}`" for choice in self.choices)


@dataclass(frozen=True, slots=True)
class Text(Kind[str]):
    pattern: str | None = None  # a full match is required
    means: str = "text"  # what the pattern allows, in words

    def parse(self, text: str) -> str:
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise ValueError(f"must be {self.means}")
        return text

    def accepts(self) -> str:
        return self.means


@dataclass(frozen=True, slots=True)
class Url(Kind[str]):
    schemes: tuple[str, ...]

    def parse(self, text: str) -> str:
        scheme, separator, _ = text.partition("://")
        if not separator or scheme.lower() not in self.schemes:
            raise ValueError("must start with " + ", ".join(f"{s}://" for s in self.schemes))
        return text

    def accepts(self) -> str:
        return "URL: " + ", ".join(f"`{scheme}://`" for scheme in self.schemes)


@dataclass(frozen=True, slots=True)
class JsonObject(Kind[dict[str, str]]):
    """A JSON object of strings (options passed on to a library, e.g. storage options)."""

    def parse(self, text: str) -> dict[str, str]:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError('must be a JSON object of strings, e.g. {"key": "value"}')
        return value

    def accepts(self) -> str:
        return "JSON object of strings"

    def show(self, value: dict[str, str]) -> str:
        return json.dumps(value, sort_keys=True)


_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})")


@dataclass(frozen=True, slots=True)
class HostPorts(Kind[str]):
    """Comma-separated ``host:port`` pairs (Kafka's bootstrap servers)."""

    def parse(self, text: str) -> str:
        for server in text.split(","):
            match = _HOST_PORT.fullmatch(server.strip())
            if not match or not 1 <= int(match.group(1)) <= 65535:
                raise ValueError("must be comma-separated host:port pairs, ports 1 to 65535")
        return ",".join(server.strip() for server in text.split(","))

    def accepts(self) -> str:
        return "`host:port[,host:port...]`"


WindowSizes = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Windows(Kind[WindowSizes]):
    """Window names (``1m,1h,1d``), each a multiple of the smallest; held sorted by size."""

    def parse(self, text: str) -> WindowSizes:
        names = [part.strip() for part in text.split(",") if part.strip()]
        if not names:
            raise ValueError("must list at least one window, e.g. 1m,1h,1d")
        try:
            windows = sorted(((name, parse_duration(name)) for name in names),
                             key=lambda item: item[1])
        except ValueError as exc:
            raise ValueError(f"must list durations: {exc}") from None
        smallest, base = windows[0]
        for name, size in windows:
            if size % base:
                raise ValueError(f"must be multiples of the smallest window {smallest}: "
                                 f"{name} is not")
        return tuple(windows)

    def accepts(self) -> str:
        return "comma-separated durations, each a multiple of the smallest"

    def show(self, value: WindowSizes) -> str:
        return ",".join(name for name, _ in value)


@dataclass(frozen=True, slots=True)
class Retention(Kind[Mapping[str, int]]):
    """``WINDOW=DURATION`` pairs, in milliseconds by window name."""

    def parse(self, text: str) -> Mapping[str, int]:
        retention: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            if not value.strip() or not name.strip():
                raise ValueError(f"must be WINDOW=DURATION pairs, got {part!r} among them")
            try:
                retention[name.strip()] = parse_duration(value.strip())
            except ValueError as exc:
                raise ValueError(f"must give durations: {exc}") from None
        return retention

    def accepts(self) -> str:
        return "comma-separated `WINDOW=DURATION` pairs"

    def show(self, value: Mapping[str, int]) -> str:
        return ",".join(f"{name}={show_duration(ms)}" for name, ms in value.items())


@dataclass(frozen=True, slots=True)
class WindowNames(Kind[tuple[str, ...]]):
    """Some of the window names (``1d`` or ``1h,1d``); set to nothing: none (off)."""

    empty_is_value = True

    def parse(self, text: str) -> tuple[str, ...]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        try:
            sized = sorted({(name, parse_duration(name)) for name in names},
                           key=lambda item: item[1])
        except ValueError as exc:
            raise ValueError(f"must list window names: {exc}") from None
        return tuple(name for name, _ in sized)

    def accepts(self) -> str:
        return "comma-separated names among STREAMER_WINDOWS; empty: off"

    def show(self, value: tuple[str, ...]) -> str:
        return ",".join(value)
