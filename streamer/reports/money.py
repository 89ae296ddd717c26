"""Exact money: ISO 4217 minor units, one rounding rule per kind of amount.

Amounts are integers of the currency's minor unit (cents for EUR, yen for JPY, fils for
KWD) from the moment they are computed; Decimal is only the way they are read from a
rate card and written to a file. Nothing passes through binary floating point.

The rounding rules (docs/STATEMENTS.md):

* **Per-use lines**: the exact amount (weighted uses x rate) is rounded once per
  statement line to the minor unit, half to even; a total is the sum of its lines.
* **Pools and levy shares**: largest remainder. Every share gets the floor of its exact
  quota; the units left over (fewer than the number of shares) go one each to the
  largest remainders; equal remainders are ordered by the share's key, ascending (the
  caller's key: for statement lines holder, track, territory, use, right, catalog
  version). The allocations add up to the pool exactly: rounding creates or loses nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from decimal import Decimal, InvalidOperation
from typing import TypeVar

# ISO 4217 active currencies with their minor-unit exponent (the standard's list; funds
# and precious metals without a minor unit are left out: nothing is paid in them).
_EXPONENTS = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD "
       "BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP "
       "ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR "
       "JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU "
       "MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR "
       "RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
       "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG",
}
MINOR_UNITS: dict[str, int] = {code: exponent for exponent, codes in _EXPONENTS.items()
                               for code in codes.split()}
"""Currency code -> ISO 4217 exponent (digits after the decimal point)."""


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly; the message says why."""


def exponent(currency: str) -> int:
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency with a minor unit "
                         "(e.g. EUR, USD, JPY)") from None


def parse_decimal(value: object) -> Decimal:
    """A decimal from a string or an integer; floats are refused (they are binary)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MoneyError(f"write it as a decimal string such as \"0.0012\", not "
                         f"{type(value).__name__} {value!r}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise MoneyError(f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise MoneyError(f"{value!r} is not a finite number")
    return number


def decimal_places(number: Decimal) -> int:
    exp = number.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def to_minor(amount: Decimal, currency: str) -> int:
    """An amount as an integer of minor units; refused if it has finer digits."""
    places = exponent(currency)
    if decimal_places(amount) > places:
        raise MoneyError(f"{amount} has more than {places} decimals, the minor unit of "
                         f"{currency}")
    return int(amount.scaleb(places))


def format_minor(minor: int, currency: str) -> str:
    """Minor units as a plain decimal with exactly the currency's decimals ("12.30")."""
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def format_micro(micro: int) -> str:
    """Millionths (weighted uses, shares) as an exact decimal with 6 places."""
    whole, fraction = divmod(micro, 1_000_000)
    return f"{whole}.{fraction:06d}"


def format_percent_micro(share_micro: int) -> str:
    """A micro-share as a percentage: 250,000 -> "25", 333,333 -> "33.3333" (exact)."""
    return format(Decimal(share_micro).scaleb(-4).normalize(), "f")


def rate_fraction(rate: Decimal) -> tuple[int, int]:
    """A non-negative decimal rate as (numerator, power of ten): 0.0012 -> (12, 4)."""
    places = decimal_places(rate)
    return int(rate.scaleb(places)), places


def divide_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to an integer, half to even (denominator > 0)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def per_use_minor(weighted_micro: int, rate: Decimal, currency: str) -> int:
    """A per-use line's amount in minor units: weighted uses (millionths) x rate, rounded
    once, half to even."""
    numerator, places = rate_fraction(rate)
    return divide_half_even(weighted_micro * numerator * 10 ** exponent(currency),
                            1_000_000 * 10**places)


K = TypeVar("K", bound=Hashable)


def largest_remainder(total_minor: int, weights: Sequence[tuple[K, int]]) -> dict[K, int]:
    """Split ``total_minor`` over ``(key, weight)`` pairs pro rata to the weights, exactly
    (see the module doc for the tie order). Keys must be unique and orderable; weights
    non-negative with a positive sum."""
    denominator = sum(weight for _, weight in weights)
    if denominator <= 0 or any(weight < 0 for _, weight in weights):
        raise MoneyError("a pool needs non-negative weights with a positive sum")
    floors: dict[K, int] = {}
    remainders: list[tuple[int, K]] = []
    for key, weight in weights:
        floor, remainder = divmod(total_minor * weight, denominator)
        floors[key] = floor
        remainders.append((remainder, key))
    left = total_minor - sum(floors.values())
    remainders.sort(key=lambda pair: (-pair[0], pair[1]))
    for _, key in remainders[:left]:
        floors[key] += 1
    return floors
