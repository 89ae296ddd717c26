"""Run ``streamer worker`` under a profiler and write the profile when it stops (SIGTERM).

    python -m benchmarks.profiled_worker cprofile OUT_DIR
    python -m benchmarks.profiled_worker pyinstrument OUT_DIR
    python -m benchmarks.profiled_worker tracemalloc OUT_DIR

cProfile writes ``worker.pstats`` and ``worker-cprofile.txt`` (top functions by own time
and by cumulative time); pyinstrument (sampling, 1 ms, main thread, low overhead) writes
``worker-pyinstrument.txt`` and ``worker-pyinstrument.html``; tracemalloc (memory, not
time; the worker runs about half as fast) writes ``worker-tracemalloc.txt``: the traced
peak and the live allocations at stop, by file and by line.
"""

from __future__ import annotations

import contextlib
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any


def _run_worker() -> None:
    from streamer.cli import main

    with contextlib.suppress(SystemExit):
        main(["worker", "--loglevel", "warn"])


def main(argv: list[str]) -> int:
    kind, out = argv[0], Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if kind == "cprofile":
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            _run_worker()
        finally:
            profiler.disable()
            profiler.dump_stats(out / "worker.pstats")
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            text.write("== top 45 by own time (tottime) ==\n")
            stats.sort_stats("tottime").print_stats(45)
            text.write("\n== top 45 by cumulative time ==\n")
            stats.sort_stats("cumulative").print_stats(45)
            (out / "worker-cprofile.txt").write_text(text.getvalue())
    elif kind == "pyinstrument":
        from pyinstrument import Profiler

        sampling = Profiler(interval=0.001, async_mode="disabled")
        sampling.start()
        try:
            _run_worker()
        finally:
            sampling.stop()
            (out / "worker-pyinstrument.txt").write_text(
                sampling.output_text(unicode=False, color=False, show_all=False))
            (out / "worker-pyinstrument.html").write_text(sampling.output_html())
    elif kind == "tracemalloc":
        import threading
        import tracemalloc

        tracemalloc.start(1)
        largest: list[Any] = [0, None]  # traced bytes, snapshot

        def watch() -> None:
            """Keep a snapshot near the peak: memory may be freed again by the stop."""
            while True:
                time.sleep(5)
                current = tracemalloc.get_traced_memory()[0]
                if current > largest[0] * 1.05:
                    largest[:] = [current, tracemalloc.take_snapshot()]

        threading.Thread(target=watch, daemon=True).start()
        try:
            _run_worker()
        finally:
            current, peak = tracemalloc.get_traced_memory()
            lines = [f"traced now {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB"]
            snapshots = [("at stop", tracemalloc.take_snapshot())]
            if largest[1] is not None:
                snapshots.insert(0, (f"largest seen ({largest[0] / 2**20:.1f} MiB)", largest[1]))
            for title, snapshot in snapshots:
                lines += ["", f"== {title}: top 25 files =="]
                lines += [str(stat) for stat in snapshot.statistics("filename")[:25]]
                lines += ["", f"== {title}: top 30 lines =="]
                lines += [str(stat) for stat in snapshot.statistics("lineno")[:30]]
            (out / "worker-tracemalloc.txt").write_text("\n".join(lines) + "\n")
    else:
        print(f"unknown profiler {kind!r} (cprofile, pyinstrument or tracemalloc)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
