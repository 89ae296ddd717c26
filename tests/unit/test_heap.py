"""HeapTrimmer: freed heap memory goes back to the OS, on a timer."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from streamer.config import ConfigError, Settings, load_settings
from streamer.pipeline.heap import HeapTrimmer, configure_malloc, malloc_trim


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


def _in_subprocess(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """mallopt settings are process-wide and one-way: each check gets a process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *argv],
                          capture_output=True, text=True, timeout=60, check=True)


_LARGE_BLOCKS = """
    import ctypes, sys
    from streamer.pipeline.heap import configure_malloc
    if sys.argv[-1] == "configure":
        assert configure_malloc(128 << 10, 0) == ["mmap_threshold=131072"]
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    class Info(ctypes.Structure):  # struct mallinfo2
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = Info
    # A freed 4 MiB block (a fetch buffer) raises glibc's dynamic threshold past 4 MiB:
    # the next one would come from the heap, and stay there once freed.
    libc.free(libc.malloc(4 << 20))
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    print(libc.mallinfo2().hblks - before)  # 1 if the block got a mapping of its own
    libc.free(block)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_a_fixed_mmap_threshold_keeps_large_blocks_out_of_the_heap() -> None:
    dynamic = _in_subprocess(_LARGE_BLOCKS)
    fixed = _in_subprocess(_LARGE_BLOCKS, "configure")
    assert dynamic.stdout.split() == ["0"]  # glibc's default: carved from the heap
    assert fixed.stdout.split() == ["1"]  # its own mapping, unmapped when freed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_arena_limit_holds_for_threads_started_after_it() -> None:
    code = """
        import ctypes, sys, threading
        from streamer.pipeline.heap import configure_malloc
        if sys.argv[-1] == "configure":
            assert configure_malloc(0, 2) == ["arena_max=2"]
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        barrier = threading.Barrier(6)

        def allocate():
            barrier.wait()  # all six at once: each new thread asks for an arena
            for _ in range(1000):
                libc.malloc(200)

        threads = [threading.Thread(target=allocate) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        libc.malloc_stats()  # one "Arena N:" paragraph per arena, on stderr
    """

    def arenas(*argv: str) -> int:
        done = _in_subprocess(code, *argv)
        return sum(line.startswith("Arena ") for line in done.stderr.splitlines())

    assert arenas("configure") == 2
    assert arenas() > 2


def test_zero_leaves_glibc_its_own_settings() -> None:
    assert configure_malloc(0, 0) == []


def test_malloc_settings_are_checked() -> None:
    defaults = Settings()
    assert (defaults.malloc_mmap_threshold_bytes, defaults.malloc_arena_max) == (0, 0)
    loaded = load_settings({"STREAMER_MALLOC_MMAP_THRESHOLD": "131072",
                            "STREAMER_MALLOC_ARENA_MAX": "2"})
    assert (loaded.malloc_mmap_threshold_bytes, loaded.malloc_arena_max) == (131072, 2)
    for bad in ("-1", "100", str(64 << 20), "big"):
        with pytest.raises(ConfigError, match="STREAMER_MALLOC_MMAP_THRESHOLD"):
            load_settings({"STREAMER_MALLOC_MMAP_THRESHOLD": bad})
    with pytest.raises(ConfigError, match="STREAMER_MALLOC_ARENA_MAX"):
        load_settings({"STREAMER_MALLOC_ARENA_MAX": "-2"})
