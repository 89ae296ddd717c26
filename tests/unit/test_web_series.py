"""Ranges of windows for the AI-share series, and the page's static files (no services)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.api.page import SECURITY_HEADERS, load_static, render_index
from streamer.api.series import (
    MAX_POINTS,
    RangeError,
    WindowRange,
    ai_share,
    parse_instant,
)

HOUR = 3_600_000
DAY = 86_400_000


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
           second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("text", "end_of_day", "expected"), [
    ("2026-12-07", False, utc_ms(2026, 12, 7)),
    ("2026-12-07", True, utc_ms(2026, 12, 8) - 1),
    ("2026-12-07T10:30", False, utc_ms(2026, 12, 7, 10, 30)),
    ("2026-12-07T10:30Z", True, utc_ms(2026, 12, 7, 10, 30)),
    ("2026-12-07T10:30:15Z", False, utc_ms(2026, 12, 7, 10, 30, 15)),
    ("1796659200000", False, 1_796_659_200_000),
    (" 0 ", False, 0),
])
def test_instants_in_utc(text: str, end_of_day: bool, expected: int) -> None:
    assert parse_instant("from", text, end_of_day=end_of_day) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2026-02-30", "from is not a valid UTC date or time"),
    ("2026-12-07T24:00", "from is not a valid UTC date or time"),
    ("07.12.2026", "from must be YYYY-MM-DD"),
    ("-5", "from must be"),
    ("", "from must be"),
    ("9" * 17, "from must be"),
    ("9007199254740993", "from is out of range"),
    ("2026-12-07T10:30+01:00", "from must be"),
])
def test_bad_instants_name_the_parameter(text: str, message: str) -> None:
    with pytest.raises(RangeError, match=message):
        parse_instant("from", text, end_of_day=False)


@given(st.sampled_from([60_000, HOUR, DAY]), st.integers(0, 2**45), st.integers(0, 600 * DAY))
def test_window_range_is_every_window_meeting_the_range(size: int, from_ms: int,
                                                        length: int) -> None:
    to_ms = from_ms + length
    # Brute force, independently: windows whose span [s, s + size) meets [from, to].
    first = from_ms // size * size
    count = to_ms // size - from_ms // size + 1
    if count > MAX_POINTS:
        with pytest.raises(RangeError, match="at most 500 points"):
            WindowRange.between("w", size, from_ms, to_ms)
        return
    windows = WindowRange.between("w", size, from_ms, to_ms)
    starts = list(windows.starts)
    assert starts == [first + i * size for i in range(count)]
    assert all(s <= to_ms and s + size > from_ms for s in starts)
    assert starts[0] <= from_ms < starts[0] + size and starts[-1] <= to_ms < starts[-1] + size
    assert windows.as_dict() == {"window": "w", "from_ms": starts[0],
                                 "to_ms": starts[-1] + size, "points": count}


def test_reversed_range_and_defaults() -> None:
    with pytest.raises(RangeError, match="to is before from"):
        WindowRange.between("1h", HOUR, 10 * HOUR, 9 * HOUR)
    latest = WindowRange.ending("1h", HOUR, 100 * HOUR + 5)
    assert list(latest.starts) == [h * HOUR for h in range(77, 101)]
    assert list(WindowRange.ending("1d", DAY, 5).starts) == [0]


def test_ai_share_counts_assisted_and_generated_creates() -> None:
    assert ai_share([]) == 0.0
    assert ai_share([(3, "human"), (1, "ai_assisted"), (4, "ai_generated"),
                     (2, "unknown")]) == 0.5


def test_every_page_file_is_served_and_the_licence_kept() -> None:
    files = load_static()
    assert {"index.html", "app.js", "style.css", "start.js", "vendor/uPlot.iife.min.js",
            "vendor/uPlot.min.css", "vendor/uPlot.LICENSE"} <= set(files)
    index = files["index.html"][0].decode()
    # Every script and stylesheet the page names is one of the served files (no CDN).
    import re

    for ref in re.findall(r'(?:src|href)="(/[^"]+)"', index):
        assert ref.removeprefix("/static/") in files, ref
    assert "MIT" in files["vendor/uPlot.LICENSE"][0].decode()
    assert "http" not in SECURITY_HEADERS["Content-Security-Policy"]


def test_index_carries_the_window_names_escaped() -> None:
    template = load_static()["index.html"][0]
    page = render_index(template, ["1m", "1h", "1d"]).decode()
    assert '<meta name="streamer-windows" content="1m,1h,1d">' in page
    assert 'content="a&quot;b"' in render_index(template, ['a"b']).decode()
    with pytest.raises(ValueError, match="meta tag"):
        render_index(b"<html></html>", ["1h"])
