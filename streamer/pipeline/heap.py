"""Give freed heap memory back to the operating system, every few seconds.

glibc keeps memory that Python freed inside its arenas: a backlog's Kafka fetch
buffers (several MiB each, allocated in the consumer's thread) and the records parsed
from them leave hundreds of MB free but resident. One ``malloc_trim(0)``, which returns
every free page of every arena, brought a drained worker's RSS down by over a quarter
(docs/BENCHMARKS.md).

Two glibc settings can keep such memory from piling up between trims
(``configure_malloc``, applied before the worker starts its threads; off by default).
Faust runs the Kafka consumer in a thread of its own, so fetch buffers and parsed
records come from a thread arena (in a 1M-track backlog the thread arenas held more
than the main heap). And glibc raises its mmap threshold to the size of each large block
freed (up to 32 MiB), so after the first fetch buffer is freed, later ones are carved
from the arenas too. A fixed threshold keeps large blocks in mappings of their own,
unmapped when freed; with 2 arenas it gives a lower peak but a slower drain (mapping and
faulting in every large block); measured in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

# mallopt parameters (glibc's malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def configure_malloc(mmap_threshold: int, arena_max: int) -> list[str]:
    """Fix glibc's mmap threshold and cap its arenas (0 leaves a setting to glibc).

    Returns the settings applied, for the log; none where the C library has no
    ``mallopt`` (musl, macOS).
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = []
    for name, param, value in (("mmap_threshold", _M_MMAP_THRESHOLD, mmap_threshold),
                               ("arena_max", _M_ARENA_MAX, arena_max)):
        if value and mallopt(param, value) == 1:
            applied.append(f"{name}={value}")
    return applied


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    """Trims at most once per ``interval_s``; 0 turns it off.

    ``trim`` blocks its caller for the call (tens of ms for hundreds of MB): the flush
    loop runs it in a thread, and ctypes releases the GIL meanwhile.
    """

    def __init__(self, interval_s: float, trim: Callable[[], int] | None = None) -> None:
        self.interval_s = interval_s
        self._trim = (trim or malloc_trim()) if interval_s > 0 else None
        self._last = time.monotonic()
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self._trim is not None

    def due(self, now: float | None = None) -> bool:
        """True at most once per interval (the clock restarts here, not in ``trim``)."""
        if self._trim is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last < self.interval_s:
            return False
        self._last = now
        return True

    def trim(self) -> None:
        if self._trim is not None:
            self._trim()
            self.trims += 1
