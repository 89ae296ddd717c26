"""streamer's benchmark harness: ``python -m benchmarks <scenario> [options]``.

See docs/BENCHMARKS.md for what each scenario measures and how to read the results.
"""
