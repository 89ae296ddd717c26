"""share_to_micro: rights shares as exact integer millionths, never via binary floats."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.events.shares import MICRO, ShareError, share_to_micro, share_to_micro_reference

SETTINGS = settings(max_examples=400, deadline=None)

micros = st.integers(min_value=1, max_value=1_000_000)


def six_places(m: int) -> str:
    """m millionths as a fixed 6-decimal string, built with integer arithmetic only."""
    return f"{m // 1_000_000}.{m % 1_000_000:06d}"


def test_micro_is_one_million() -> None:
    assert MICRO == 1_000_000


@SETTINGS
@given(micros)
def test_decimal_strings_with_up_to_six_places_are_exact(m: int) -> None:
    padded = six_places(m)
    trimmed = padded.rstrip("0").rstrip(".")
    assert share_to_micro(padded) == m
    assert share_to_micro(trimmed) == m
    if padded.startswith("0."):
        assert share_to_micro(padded[1:]) == m  # ".25" style


@SETTINGS
@given(micros)
def test_floats_are_exact(m: int) -> None:
    assert share_to_micro(m / 1e6) == m
    assert share_to_micro(m / 1_000_000) == m


@SETTINGS
@given(micros)
def test_json_numbers_as_a_producer_writes_them_are_exact(m: int) -> None:
    # What a producer in another language puts on the wire, read back as orjson does.
    for text in (six_places(m), six_places(m).rstrip("0").rstrip(".")):
        assert share_to_micro(orjson.loads(text)) == m


@SETTINGS
@given(st.integers(min_value=1, max_value=9_999_999).filter(lambda n: n % 10))
def test_seven_significant_decimals_rejected(n: int) -> None:
    text = f"0.{n:07d}"
    with pytest.raises(ShareError, match="decimal places"):
        share_to_micro(text)
    with pytest.raises(ShareError, match="decimal places"):
        share_to_micro(n / 1e7)


@SETTINGS
@given(st.integers(min_value=0, max_value=10**11), st.integers(min_value=1, max_value=9),
       st.integers(min_value=7, max_value=12))
def test_more_than_six_places_rejected_whatever_the_scale(
        tens: int, last_digit: int, places: int) -> None:
    # The last digit is not 0, so the value has exactly ``places`` (> 6) decimal places.
    value = Decimal(tens * 10 + last_digit).scaleb(-places)
    with pytest.raises(ShareError):
        share_to_micro(format(value, "f"))


def test_integers_zero_and_one() -> None:
    assert share_to_micro(1) == 1_000_000
    with pytest.raises(ShareError):
        share_to_micro(0)


@pytest.mark.parametrize(
    "value",
    [0, 0.0, -0.0, "0", "0.0", "0.000000", ".0", -1, -0.5, "-0.5", "-0", "-1", 2, 1.000001,
     1.5, "1.000001", "1.5", "2", 10**30, 1e300],
)
def test_outside_zero_one_rejected(value: object) -> None:
    with pytest.raises(ShareError):
        share_to_micro(value)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), "NaN", "nan", "sNaN", "Infinity", "inf",
     "-Infinity"],
)
def test_not_finite_rejected(value: object) -> None:
    with pytest.raises(ShareError):
        share_to_micro(value)


@pytest.mark.parametrize("value", ["5e-1", "5E-1", "0.5e0", "1e0", "1E0", "2.5e-1", "+0.5", "+1"])
def test_exponent_and_signed_strings_rejected(value: str) -> None:
    with pytest.raises(ShareError):
        share_to_micro(value)


@pytest.mark.parametrize("value", [True, False])
def test_booleans_rejected(value: bool) -> None:
    with pytest.raises(ShareError, match="boolean"):
        share_to_micro(value)


@pytest.mark.parametrize(
    "value",
    [None, [], [0.5], {}, {"share": 0.5}, b"0.5", Decimal("0.5"), "", " 0.5", "0.5 ", "0.5\n",
     "\t0.5", "abc", "0,5", "1/2", "50%", ".", "0.5.1", "1" * 33],
)
def test_other_junk_rejected(value: object) -> None:
    with pytest.raises(ShareError):
        share_to_micro(value)


def test_share_error_is_a_value_error() -> None:
    assert issubclass(ShareError, ValueError)


# The published schema (schemas/track_created.schema.json) spells a share string as
# ^(0(\.[0-9]{1,6})?|1(\.0{1,6})?|\.[0-9]{1,6})$; Python's Decimal() reads far more.
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("0.5000000", id="seven-decimals-trailing-zero"),
        pytest.param("1.0000000", id="one-seven-decimals"),
        pytest.param("0.2_5", id="underscore"),
        pytest.param("\u0660.\u0665", id="arabic-indic-digits"),
        pytest.param("\uff10.\uff15", id="fullwidth-digits"),
        pytest.param("00.5", id="leading-zeros"),
        pytest.param("01", id="leading-zero-one"),
        pytest.param("1.", id="trailing-dot"),
    ],
)
def test_strings_outside_the_published_grammar_rejected(value: str) -> None:
    with pytest.raises(ShareError):
        share_to_micro(value)


# -- the fast path agrees with the Decimal reference, for every input --------------------


def _verdict(parse: Any, value: object) -> tuple[str, object]:
    """("ok", micro-shares) or ("error", the exception's type and text)."""
    try:
        return "ok", parse(value)
    except ShareError as exc:
        return "error", f"{type(exc).__name__}: {exc}"


def assert_same(value: object) -> None:
    fast = _verdict(share_to_micro, value)
    assert fast == _verdict(share_to_micro_reference, value), value
    if fast[0] == "ok":
        assert type(fast[1]) is int


@st.composite
def near_micro_floats(draw: st.DrawFn) -> float:
    """m millionths as a float, or one of its neighbouring doubles, or scaled by 10**k."""
    m = draw(st.integers(min_value=-10, max_value=1_000_010))
    x = m / 1e6
    how = draw(st.sampled_from(["exact", "up", "down", "scaled"]))
    if how == "up":
        return math.nextafter(x, math.inf)
    if how == "down":
        return math.nextafter(x, -math.inf)
    if how == "scaled":
        return m / 10.0 ** draw(st.integers(min_value=0, max_value=12))
    return x


share_texts = (
    st.text(st.sampled_from("0123456789.-+eE _\n\t\u0660\uff10"), max_size=10)
    | st.from_regex(r"[+-]?0?\.[0-9]{0,8}", fullmatch=True)
    | st.from_regex(r"1(\.0{0,8})?", fullmatch=True)
    | st.integers(min_value=0, max_value=10**7).map(lambda n: f"0.{n:06d}")
    | st.integers(min_value=0, max_value=10**6).map(lambda n: f".{n}")
    | st.text(max_size=10)
)
any_share = (
    st.floats()
    | near_micro_floats()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 2, -1, 10**30, True, False, None, 0.1, 1e-06, 1.0000001,
                      5e-324, -0.0, 0.0, 1.0, 0.999999, 0.9999995, 1e-7, 1.000001,
                      float("nan"), float("inf"), -float("inf"), 2.5e-06, 0.30000000000000004,
                      "1.000000", ".5", "0.5", "1", "1.", "0.", ".", "", "0", "00.5", "0.0000005",
                      " 0.5", "0.5 ", "+0.5", "-0.5", "5e-1", "0.1e1", "1e0", "0.25\n",
                      "0.000000", ".000000", ".0000001", "0.1234567", "\u0660.\u0665",
                      "0.\uff15", "0.2_5", "01", "1.0000001", "1.000001"])
    | share_texts
)


@settings(max_examples=3_000, deadline=None)
@given(any_share)
def test_fast_path_agrees_with_the_reference(value: object) -> None:
    assert_same(value)


@settings(max_examples=1_000, deadline=None)
@given(st.integers(min_value=1, max_value=1_000_000))
def test_every_written_form_agrees_with_the_reference(m: int) -> None:
    padded = six_places(m)
    for value in (padded, padded.rstrip("0").rstrip("."), padded[1:], m / 1e6, m / 1_000_000,
                  orjson.loads(padded), float(padded), f"{m / 1e6!r}"):
        assert_same(value)


@st.composite
def json_number_texts(draw: st.DrawFn) -> str:
    """Numbers as JSON's grammar writes them, -?int(.frac)?([eE][+-]?exp)?, kept within a
    double's range (orjson refuses 1e400 as not JSON); half of them m millionths (a valid
    share) or a neighbour written the ways other languages' encoders write numbers."""
    if draw(st.booleans()):
        m = draw(micros)
        zeros = "0" * draw(st.integers(min_value=0, max_value=3))
        return draw(st.sampled_from([
            six_places(m) + zeros, six_places(m).rstrip("0").rstrip("."),
            f"{m}e-6", f"{m}{zeros}E-{6 + len(zeros)}", f"{m}e-{7 + len(zeros)}",
            f"{m / 1e6!r}", f"{m / 1e6:.6e}", f"{m}{zeros}e-{5}"]))
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.just("0") | st.from_regex(r"[1-9][0-9]{0,24}", fullmatch=True))
    fraction = draw(st.just("") | st.from_regex(r"\.[0-9]{1,25}", fullmatch=True))
    exponent = ""
    if draw(st.booleans()):
        mark = draw(st.sampled_from(["e", "E"]))
        exp_sign = draw(st.sampled_from(["", "+", "-"]))
        size = draw(st.integers(min_value=0, max_value=400 if exp_sign == "-" else 280))
        zeros = "0" * draw(st.integers(min_value=0, max_value=2))
        exponent = f"{mark}{exp_sign}{zeros}{size}"
    return sign + whole + fraction + exponent


@settings(max_examples=1_000, deadline=None)
@given(json_number_texts())
def test_json_number_texts_agree_with_the_reference(text: str) -> None:
    """Whatever orjson makes of a number on the wire (float, int or big int)."""
    assert_same(orjson.loads(text))


def test_every_float_of_a_micro_share_is_exact() -> None:
    """All million float shares, and the doubles right next to them (rejected)."""
    for m in range(1, 1_000_001):
        x = m / 1e6
        assert share_to_micro(x) == m
    for m in range(1, 1_000_001, 997):
        x = m / 1e6
        for near in (math.nextafter(x, 0.0), math.nextafter(x, 2.0)):
            assert_same(near)
