"""Synthetic, reproducible usage traffic with ground truth (``streamer load``).

* :class:`~streamer.loadgen.config.LoadConfig`: what to generate (rates, catalog,
  popularity, faults, record shape, seed).
* :class:`~streamer.loadgen.model.TrafficModel`: the deterministic event model.
* :class:`~streamer.loadgen.records.RecordBuilder`: ticks to Kafka records.
* :class:`~streamer.loadgen.sender.LoadRun` / :func:`~streamer.loadgen.sender.run_inline`:
  sending, paced or flat out, from one or several processes, with the merged truth.

Names are imported lazily, so ``streamer --help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LoadConfig": "streamer.loadgen.config",
    "TrafficModel": "streamer.loadgen.model",
    "RecordBuilder": "streamer.loadgen.records",
    "KafkaUnreachable": "streamer.loadgen.sender",
    "LoadResult": "streamer.loadgen.sender",
    "LoadRun": "streamer.loadgen.sender",
    "SendPlan": "streamer.loadgen.sender",
    "run_inline": "streamer.loadgen.sender",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
