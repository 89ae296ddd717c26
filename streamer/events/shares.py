"""Exact rights shares: decimals in (0, 1] with at most 6 places, held as integer micro-shares.

Money is split by these numbers, so they never pass through binary floating point:
a JSON number is re-read from its shortest decimal repr, a string is read as a decimal.

``share_to_micro_reference`` is that rule, with Decimal (about 3 us a share).
``share_to_micro`` reads the common forms with integer arithmetic and hands everything
else, every rejection included, to the reference, so both give the same micro-shares
and the same errors for every input (tests/unit/test_shares.py proves it).
"""

from __future__ import annotations

import re
from decimal import Decimal

MICRO = 1_000_000
"""One whole right, in micro-shares: the weights of one use add up to exactly this."""


# The grammar of the published schema: ASCII digits, at most 6 decimals, no sign or exponent.
_SHARE_STRING = re.compile(r"0(\.[0-9]{1,6})?|1(\.0{1,6})?|\.[0-9]{1,6}")


class ShareError(ValueError):
    """Why a share is not acceptable, in words a producer can act on."""


# Scale of a fraction of n written digits to millionths: "25" in "0.25" is 250_000.
_SCALE = (0, 100_000, 10_000, 1_000, 100, 10, 1)


def share_to_micro(value: object) -> int:
    """Return the share as an integer number of millionths, or raise ShareError.

    Fast, exact forms (anything else, and every rejection, is the reference's):

    * a float ``x`` in (0, 1] with ``m / 10**6 == x`` for ``m = round(x * 10**6)``:
      then ``x`` is the double nearest to m millionths, and the shortest repr of that
      double is m millionths itself (two different decimals of at most 7 significant
      digits in [1e-6, 1] are much further apart than a double's rounding), so the
      reference's Decimal(repr(x)) is exactly m millionths too;
    * the int 1 and the string "1";
    * a string "0.<1-6 ASCII digits>" or ".<1-6 ASCII digits>", not all zeros: the
      reference's grammar, and its Decimal value is the digits scaled to millionths.
    """
    if type(value) is float:
        if 0.0 < value <= 1.0:
            micro = round(value * MICRO)
            if micro / MICRO == value:
                return micro
    elif type(value) is str:
        if value[:2] == "0.":
            digits = value[2:]
        elif value[:1] == ".":
            digits = value[1:]
        elif value == "1":
            return MICRO
        else:
            digits = ""
        if 0 < len(digits) <= 6 and digits.isascii() and digits.isdigit():
            micro = int(digits) * _SCALE[len(digits)]
            if micro:
                return micro
    elif type(value) is int and value == 1:
        return MICRO
    return share_to_micro_reference(value)


def share_to_micro_reference(value: object) -> int:
    """The rule itself, with Decimal: ``share_to_micro`` must agree with it everywhere."""
    if isinstance(value, bool):
        raise ShareError("must be a number or a decimal string, not a boolean")
    if isinstance(value, int):
        decimal = Decimal(value)
    elif isinstance(value, float):
        decimal = Decimal(repr(value))
    elif isinstance(value, str):
        if not _SHARE_STRING.fullmatch(value):
            raise ShareError(
                f"not a share string: {value[:40]!r} "
                "(write a decimal from 0 to 1 such as '0.25', at most 6 decimal places)"
            )
        decimal = Decimal(value)
    else:
        raise ShareError(f"must be a number or a decimal string, not {type(value).__name__}")
    if not decimal.is_finite():
        raise ShareError("must be finite")
    micro = decimal * MICRO
    if micro != micro.to_integral_value():
        raise ShareError(f"{value!r} has more than 6 decimal places")
    micro_int = int(micro)
    if not 0 < micro_int <= MICRO:
        raise ShareError(f"{value!r} is outside (0, 1]")
    return micro_int
