"""A load generator run sent flat out to a test pipeline's topics, with its ground truth.

The truth follows the worker's rules: windows, territory windows and allowed lateness
come from the pipeline's settings, never from the generator's defaults.
"""

from __future__ import annotations

from typing import Any

from streamer.config import load_settings
from streamer.loadgen.config import LoadConfig
from streamer.loadgen.plan import LoadResult
from streamer.loadgen.sender import SendPlan, run_inline
from streamer.verify.truth import PartitionedTruth
from support.pipeline import Pipeline


async def send_generated(pipe: Pipeline, partitions: int,
                         **load: Any) -> tuple[LoadResult, PartitionedTruth]:
    """``load``: LoadConfig fields (seed, start_ms, duration_s, use_rate, catalog, ...)."""
    settings = load_settings(pipe.env())
    cfg = LoadConfig(windows=settings.windows, territory_windows=settings.territory,
                     allowed_lateness_ms=settings.allowed_lateness_ms, **load)
    plan = SendPlan(cfg=cfg, kafka={"bootstrap_servers": pipe.kafka_bootstrap},
                    tracks_topic=pipe.tracks_topic, uses_topic=pipe.uses_topic,
                    partitions=partitions, speed=0, catalog_ms=cfg.start_ms)
    result = await run_inline(plan)
    assert not result.errors and result.truth is not None, result.errors
    return result, result.truth
