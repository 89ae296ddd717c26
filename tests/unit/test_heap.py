"""HeapTrimmer: freed heap memory goes back to the OS, on a timer."""

from __future__ import annotations

import ctypes
import sys

import pytest

from streamer.config import ConfigError, Settings, load_settings
from streamer.pipeline.heap import HeapTrimmer, malloc_trim


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_trimming_returns_freed_heap_pages_to_the_os() -> None:
    """Blocks freed in the middle of the heap stay resident until a trim: one block
    kept at the top pins the heap, so glibc cannot shrink it by itself."""
    trim = malloc_trim()
    assert trim is not None
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    blocks = [libc.malloc(4000) for _ in range(50_000)]  # ~200 MB below the mmap threshold
    for block in blocks:
        libc.memset(block, 1, 4000)  # make the pages resident
    for block in blocks[:-1]:
        libc.free(block)
    freed = _rss_kb()
    trimmer = HeapTrimmer(5.0, trim)
    assert trimmer.due(now=trimmer._last + 5.0)
    trimmer.trim()
    after = _rss_kb()
    libc.free(blocks[-1])
    assert freed - after > 100_000, (freed, after)  # KB: most of the ~200 MB came back
    assert trimmer.trims == 1


def test_trims_at_most_once_per_interval() -> None:
    calls: list[int] = []
    trimmer = HeapTrimmer(10.0, lambda: calls.append(1) or 1)
    start = trimmer._last
    assert not trimmer.due(now=start + 9.9)
    assert trimmer.due(now=start + 10.0)
    assert not trimmer.due(now=start + 15.0)  # the interval restarts at each trim
    assert trimmer.due(now=start + 20.0)


def test_zero_turns_trimming_off() -> None:
    calls: list[int] = []
    trimmer = HeapTrimmer(0.0, lambda: calls.append(1) or 1)
    assert not trimmer.enabled
    assert not trimmer.due(now=1e12)
    trimmer.trim()
    assert calls == []


def test_interval_setting_is_checked() -> None:
    assert Settings().malloc_trim_interval_s == 10.0
    assert load_settings({"STREAMER_MALLOC_TRIM_INTERVAL_S": "0"}).malloc_trim_interval_s == 0
    for bad in ("-1", "often", "nan"):
        with pytest.raises(ConfigError, match="STREAMER_MALLOC_TRIM_INTERVAL_S"):
            load_settings({"STREAMER_MALLOC_TRIM_INTERVAL_S": bad})
