"""Rate cards: what a period's usage is worth, read from TOML and validated whole.

A card (format in docs/STATEMENTS.md, example in deploy/examples/rates.toml) has
``[[rate]]`` entries (an amount per weighted use), ``[[pool]]`` entries (an amount shared
pro rata to weighted uses) and ``[[levy]]`` entries (an amount per use of AI-origin tracks,
shared among named holders). Every problem is collected and reported at once, each naming
the file, the entry and the rule; a card with a problem yields no ``RateCard``, so nothing
is ever computed from it.

Which entry prices a line (period, territory, use, right, ai_origin): among the entries of
the period with that use and right, a specific territory beats the default ``"*"``, then a
specific ai_origin beats an entry without one. Two entries with the same selectors are an
error, so the choice is never ambiguous.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from streamer.reports.money import (
    MoneyError,
    decimal_places,
    exponent,
    parse_decimal,
    to_minor,
)

USES = ("create", "play")
RIGHTS = ("master", "publishing")
AI_ORIGINS = ("human", "ai_assisted", "ai_generated")
LEVY_ORIGINS = ("ai_assisted", "ai_generated")
ANY = "*"
MAX_RATE_PLACES = 12
MAX_RATE = Decimal(1_000_000)
_PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_TERRITORY = re.compile(r"[A-Z]{2}")
_HOLDER = re.compile(r"[^\x00-\x1f]{1,128}")
_TOP_KEYS = {"currency", "rate", "pool", "levy"}
_ENTRY_KEYS = {
    "rate": {"period", "territory", "use", "right", "ai_origin", "per_use", "currency"},
    "pool": {"period", "territory", "use", "right", "ai_origin", "amount", "currency"},
    "levy": {"period", "territory", "use", "ai_origin", "per_use", "currency", "shares"},
}


class RateCardError(ValueError):
    """A card that does not validate; ``problems`` lists every broken rule."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        shown = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)"
                                            if len(problems) > 5 else "")
        super().__init__(f"{path}: {shown}")


@dataclass(frozen=True, slots=True)
class Entry:
    """A ``[[rate]]`` or ``[[pool]]``: ``entry_id`` is ``rate#3`` (the third ``[[rate]]``)."""

    entry_id: str
    kind: Literal["rate", "pool"]
    period: str
    territory: str
    use: str
    right: str
    ai_origin: str | None
    currency: str
    per_use: Decimal | None = None
    amount_minor: int | None = None

    def selectors(self) -> tuple[str, str, str, str, str]:
        return (self.period, self.territory, self.use, self.right, self.ai_origin or ANY)


@dataclass(frozen=True, slots=True)
class Levy:
    entry_id: str
    period: str
    territory: str
    use: str | None
    ai_origin: str
    per_use: Decimal
    currency: str
    shares: tuple[tuple[str, Decimal], ...]
    """(holder_id, share) sorted by holder; the shares add up to exactly 1."""

    def selectors(self) -> tuple[str, str, str, str]:
        return (self.period, self.territory, self.use or ANY, self.ai_origin)


@dataclass(frozen=True, slots=True)
class RateCard:
    path: str
    sha256: str
    currency: str
    entries: tuple[Entry, ...]
    levies: tuple[Levy, ...]
    _index: dict[tuple[str, str, str, str, str], Entry] = field(repr=False, compare=False)

    def resolve(self, period: str, territory: str, use: str, right: str,
                ai_origin: str | None) -> Entry | None:
        """The entry that prices a line, by the precedence in the module doc."""
        for where in (territory, ANY):
            for origin in (ai_origin or ANY, ANY):
                entry = self._index.get((period, where, use, right, origin))
                if entry is not None:
                    return entry
        return None

    def resolve_levy(self, period: str, territory: str, use: str,
                     ai_origin: str | None) -> Levy | None:
        if ai_origin not in LEVY_ORIGINS:
            return None
        for levy in sorted((levy for levy in self.levies
                            if levy.period == period and levy.ai_origin == ai_origin
                            and levy.territory in (territory, ANY)
                            and levy.use in (use, None)),
                           key=lambda levy: (levy.territory == ANY, levy.use is None)):
            return levy
        return None

    def all_entries(self) -> tuple[Entry | Levy, ...]:
        return (*self.entries, *self.levies)

    def currency_of(self, period: str, territory: str) -> str:
        """The currency a period's lines in a territory are stated in."""
        for where in (territory, ANY):
            for entry in self.all_entries():
                if entry.period == period and entry.territory == where:
                    return entry.currency
        return self.currency

    def periods(self) -> set[str]:
        return {entry.period for entry in self.all_entries()}


def load_rate_card(path: str | Path) -> RateCard:
    """Read and validate a card; raises ``RateCardError`` listing every problem."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RateCardError(name, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RateCardError(name, [f"not valid TOML: {exc}"]) from None
    return parse_rate_card(document, name, hashlib.sha256(raw).hexdigest())


def parse_rate_card(document: dict[str, Any], name: str, sha256: str = "") -> RateCard:
    problems: list[str] = []
    for key in sorted(set(document) - _TOP_KEYS):
        problems.append(f"unknown key {key!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    currency = document.get("currency")
    if not isinstance(currency, str):
        problems.append("currency: required, an ISO 4217 code such as \"EUR\"")
        currency = ""
    else:
        try:
            exponent(currency)
        except MoneyError as exc:
            problems.append(f"currency: {exc}")
    entries: list[Entry] = []
    levies: list[Levy] = []
    for kind in ("rate", "pool", "levy"):
        items = document.get(kind, [])
        if not isinstance(items, list):
            problems.append(f"{kind}: write entries as [[{kind}]] tables")
            continue
        for number, item in enumerate(items, start=1):
            where = f"[[{kind}]] #{number}"
            if not isinstance(item, dict):
                problems.append(f"{where}: not a table")
                continue
            checker = _EntryReader(where, item, currency, problems)
            if kind == "levy":
                levy = checker.levy(f"levy#{number}")
                if levy is not None:
                    levies.append(levy)
            else:
                entry = checker.entry(f"{kind}#{number}", kind)  # type: ignore[arg-type]
                if entry is not None:
                    entries.append(entry)
    index: dict[tuple[str, str, str, str, str], Entry] = {}
    for entry in entries:
        other = index.get(entry.selectors())
        if other is not None:
            problems.append(f"{_where(entry.entry_id)}: same period, territory, use, right and "
                            f"ai_origin as {_where(other.entry_id)} (which one applies would "
                            "be ambiguous)")
        else:
            index[entry.selectors()] = entry
    seen_levies: dict[tuple[str, str, str, str], Levy] = {}
    for levy in levies:
        twin = seen_levies.get(levy.selectors())
        if twin is not None:
            problems.append(f"{_where(levy.entry_id)}: same period, territory, use and "
                            f"ai_origin as {_where(twin.entry_id)}")
        else:
            seen_levies[levy.selectors()] = levy
    problems += _currency_problems(entries, levies)
    if problems:
        raise RateCardError(name, problems)
    return RateCard(name, sha256, currency, tuple(entries), tuple(levies), index)


def _where(entry_id: str) -> str:
    kind, number = entry_id.split("#")
    return f"[[{kind}]] #{number}"


def _currency_problems(entries: list[Entry], levies: list[Levy]) -> list[str]:
    """One currency per period and territory (a default entry may price any territory, so
    it must agree with each specific one): a statement line and a DSR summary are in one
    currency."""
    problems = []
    by_key: dict[tuple[str, str], tuple[str, str]] = {}
    everything: list[Entry | Levy] = [*entries, *levies]
    for entry in everything:
        key = (entry.period, entry.territory)
        first = by_key.setdefault(key, (entry.currency, entry.entry_id))
        if first[0] != entry.currency:
            problems.append(f"{_where(entry.entry_id)}: currency {entry.currency} differs from "
                            f"{first[0]} of {_where(first[1])} for period {entry.period}, "
                            f"territory {entry.territory} (one currency per period and "
                            "territory)")
    for (period, territory), (currency, entry_id) in sorted(by_key.items()):
        default = by_key.get((period, ANY))
        if territory != ANY and default is not None and default[0] != currency:
            problems.append(f"{_where(entry_id)}: currency {currency} differs from the default "
                            f"territory's {default[0]} ({_where(default[1])}) in period "
                            f"{period} (one currency per period and territory)")
    return problems


class _EntryReader:
    def __init__(self, where: str, item: dict[str, Any], currency: str,
                 problems: list[str]) -> None:
        self.where = where
        self.item = item
        self.default_currency = currency
        self.problems = problems
        self.ok = True

    def fail(self, rule: str) -> None:
        self.problems.append(f"{self.where}: {rule}")
        self.ok = False

    def choice(self, key: str, allowed: tuple[str, ...], required: bool = True) -> str | None:
        value = self.item.get(key)
        if value is None and not required:
            return None
        if value not in allowed:
            self.fail(f"{key}: {'required, ' if value is None else f'{value!r} is not '}"
                      f"one of {', '.join(allowed)}")
            return None
        return str(value)

    def common(self, kind: str) -> tuple[str, str, str]:
        for key in sorted(set(self.item) - _ENTRY_KEYS[kind]):
            self.fail(f"unknown key {key!r} (known: {', '.join(sorted(_ENTRY_KEYS[kind]))})")
        period = self.item.get("period")
        if not isinstance(period, str) or not _PERIOD.fullmatch(period):
            self.fail(f"period: {period!r} is not a month YYYY-MM")
            period = ""
        territory = self.item.get("territory")
        if not isinstance(territory, str) or not (territory == ANY
                                                  or _TERRITORY.fullmatch(territory)):
            self.fail(f"territory: {territory!r} is not an ISO 3166-1 alpha-2 code (two "
                      "capital letters) or \"*\" for the default")
            territory = ""
        currency = self.item.get("currency", self.default_currency)
        try:
            exponent(str(currency))
        except MoneyError as exc:
            self.fail(f"currency: {exc}")
        return period, territory, str(currency)

    def per_use(self) -> Decimal | None:
        value = self.item.get("per_use")
        if value is None:
            self.fail("per_use: required, the amount per weighted use as a decimal string")
            return None
        try:
            rate = parse_decimal(value)
        except MoneyError as exc:
            self.fail(f"per_use: {exc}")
            return None
        if rate < 0 or rate >= MAX_RATE or decimal_places(rate) > MAX_RATE_PLACES:
            self.fail(f"per_use: {value!r} must be >= 0, below {MAX_RATE} and have at most "
                      f"{MAX_RATE_PLACES} decimals")
            return None
        return rate

    def entry(self, entry_id: str, kind: Literal["rate", "pool"]) -> Entry | None:
        period, territory, currency = self.common(kind)
        use = self.choice("use", USES)
        right = self.choice("right", RIGHTS)
        ai_origin = self.choice("ai_origin", AI_ORIGINS, required=False)
        per_use: Decimal | None = None
        amount_minor: int | None = None
        if kind == "rate":
            per_use = self.per_use()
        else:
            value = self.item.get("amount")
            try:
                amount = parse_decimal(value if value is not None else "")
                amount_minor = to_minor(amount, currency)
                if amount_minor <= 0 or amount_minor >= 10**18:
                    self.fail(f"amount: {value!r} must be positive and below 10^18 minor "
                              "units")
            except MoneyError as exc:
                self.fail(f"amount: {exc}" if value is not None
                          else "amount: required, the pool as a decimal string")
        if not self.ok or use is None or right is None:
            return None
        return Entry(entry_id, kind, period, territory, use, right, ai_origin, currency,
                     per_use, amount_minor)

    def levy(self, entry_id: str) -> Levy | None:
        period, territory, currency = self.common("levy")
        use = self.choice("use", USES, required=False)
        ai_origin = self.choice("ai_origin", LEVY_ORIGINS)
        per_use = self.per_use()
        raw = self.item.get("shares")
        shares: list[tuple[str, Decimal]] = []
        if not isinstance(raw, dict) or not raw:
            self.fail("shares: required, a table of holder_id = \"share\" (adding up to 1)")
        else:
            for holder, value in sorted(raw.items()):
                if not _HOLDER.fullmatch(holder):
                    self.fail(f"shares: {holder!r} is not a holder id")
                    continue
                try:
                    share = parse_decimal(value)
                except MoneyError as exc:
                    self.fail(f"shares.{holder}: {exc}")
                    continue
                if not 0 < share <= 1 or decimal_places(share) > 6:
                    self.fail(f"shares.{holder}: {value!r} must be in (0, 1] with at most 6 "
                              "decimals")
                    continue
                shares.append((holder, share))
            if self.ok and sum(share for _, share in shares) != 1:
                self.fail(f"shares: add up to {sum(s for _, s in shares)}, not exactly 1")
        if not self.ok or ai_origin is None or per_use is None:
            return None
        return Levy(entry_id, period, territory, use, ai_origin, per_use, currency,
                    tuple(shares))
