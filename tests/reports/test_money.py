"""The rounding rules, against arithmetic done another way (Fraction, Decimal contexts)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.reports.money import (
    MINOR_UNITS,
    MoneyError,
    divide_half_even,
    format_micro,
    format_minor,
    format_percent_micro,
    largest_remainder,
    parse_decimal,
    per_use_minor,
    to_minor,
)


def test_iso_4217_exponents_of_common_currencies() -> None:
    assert (MINOR_UNITS["EUR"], MINOR_UNITS["JPY"], MINOR_UNITS["KWD"], MINOR_UNITS["CLF"]) == (
        2, 0, 3, 4)
    with pytest.raises(MoneyError, match="ISO 4217"):
        to_minor(Decimal(1), "XAU")


@given(st.integers(-10**15, 10**15), st.sampled_from(["EUR", "JPY", "KWD", "CLF"]))
def test_format_minor_reads_back(minor: int, currency: str) -> None:
    assert to_minor(Decimal(format_minor(minor, currency)), currency) == minor


def test_floats_and_finer_digits_are_refused() -> None:
    with pytest.raises(MoneyError, match="decimal string"):
        parse_decimal(0.1)
    with pytest.raises(MoneyError, match="more than 2 decimals"):
        to_minor(Decimal("1.005"), "EUR")
    assert format_micro(1_500_001) == "1.500001"
    assert [format_percent_micro(m) for m in (1_000_000, 250_000, 333_333, 1)] == [
        "100", "25", "33.3333", "0.0001"]


@given(st.integers(0, 10**30), st.integers(1, 10**20))
def test_half_even_matches_decimal(numerator: int, denominator: int) -> None:
    context = Context(prec=80)
    expected = int(context.divide(Decimal(numerator), Decimal(denominator))
                   .quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=context))
    assert divide_half_even(numerator, denominator) == expected
    assert abs(Fraction(numerator, denominator) - expected) <= Fraction(1, 2)


@given(st.integers(0, 10**13), st.decimals(min_value=0, max_value=1000, places=8,
                                             allow_nan=False, allow_infinity=False),
       st.sampled_from(["EUR", "JPY", "KWD"]))
def test_per_use_line_rounds_once_half_even(weighted_micro: int, rate: Decimal,
                                             currency: str) -> None:
    context = Context(prec=80)
    exact = context.multiply(context.divide(Decimal(weighted_micro), Decimal(1_000_000)), rate)
    places = Decimal(1).scaleb(-MINOR_UNITS[currency])
    expected = exact.quantize(places, rounding=ROUND_HALF_EVEN, context=context)
    assert per_use_minor(weighted_micro, rate, currency) == to_minor(expected, currency)


pools = st.tuples(
    st.integers(0, 10**12),
    st.lists(st.tuples(st.text(min_size=1, max_size=4), st.integers(0, 10**9)),
             min_size=1, max_size=40, unique_by=lambda pair: pair[0]),
).filter(lambda pool: sum(w for _, w in pool[1]) > 0)


@given(pools)
def test_largest_remainder_adds_up_exactly(pool: tuple[int, list[tuple[str, int]]]) -> None:
    total, weights = pool
    split = largest_remainder(total, weights)
    assert sum(split.values()) == total
    denominator = sum(w for _, w in weights)
    for key, weight in weights:
        quota = Fraction(total * weight, denominator)
        assert quota - 1 < split[key] < quota + 1  # floor or floor + 1 of the exact quota


@given(pools, st.randoms())
def test_largest_remainder_ignores_input_order(pool: tuple[int, list[tuple[str, int]]],
                                               rng: object) -> None:
    total, weights = pool
    shuffled = list(weights)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert largest_remainder(total, shuffled) == largest_remainder(total, weights)


def test_largest_remainder_ties_go_to_the_smaller_key() -> None:
    # 100 over three equal weights: 33 each, one unit left, the smallest key gets it.
    assert largest_remainder(100, [("c", 1), ("a", 1), ("b", 1)]) == {"a": 34, "b": 33,
                                                                      "c": 33}
    # Larger remainders first: 10 over 1, 2, 4 (quotas 1.43, 2.86, 5.71) -> 1, 3, 6.
    assert largest_remainder(10, [("x", 1), ("y", 2), ("z", 4)]) == {"x": 1, "y": 3, "z": 6}
