"""Exact rights shares: decimals in (0, 1] with at most 6 places, held as integer micro-shares.

Money is split by these numbers, so they never pass through binary floating point:
a JSON number is re-read from its shortest decimal repr, a string is read as a decimal.
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


def share_to_micro(value: object) -> int:
    """Return the share as an integer number of millionths, or raise ShareError."""
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
