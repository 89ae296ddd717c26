"""Quix Streams, stateless pre-aggregation: counts per record, summed per checkpoint.

Each record is aggregated in one step to its (track, use, one-minute window of
``occurred_at``) counts; the batching sink sums a checkpoint's counts and writes them
with one Redis pipeline. No state store, no changelog, no repartition; Quix's default
commit interval. No dedupe, no lateness rule, no attribution.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from quixstreams.dataframe import StreamingDataFrame

from benchmarks.peers.common import count_cells, parse_args
from benchmarks.peers.quix_common import Cells, run_peer


def pipeline(sdf: StreamingDataFrame) -> tuple[StreamingDataFrame, Cells]:
    def cells(key: Any, value: Counter[tuple[int, str]]) -> Counter[tuple[int, str]]:
        return value

    return sdf.apply(count_cells), cells


def main() -> None:
    run_peer(parse_args(), key_deserializer="bytes", split=False, pipeline=pipeline)


if __name__ == "__main__":
    main()
