"""Scenario 6: duplicates and a Hypothesis-driven fuzz of malformed input.

200,000 valid uses (5 % of them sent twice) are mixed with 100,000+ malformed records
drawn by Hypothesis (tests/faults/fuzz_strategies.py): bad elements inside batch
records and as records of their own, whole-record garbage, oversized records, batches
over the limit, invalid TrackCreated. The worker must not crash; every malformed input
must be in the dead-letter topic with a reason naming the rule (and the field), nothing
valid may land there, and every valid event must be counted exactly once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
from fault_harness import Scenario, Sender, log
from fault_workload import BadRecord, WorkloadBuilder
from fuzz_strategies import collect_malformed

PARTITIONS = 4
EVENTS = 200_000
# Hypothesis examples x items per example; each item is one malformed input.
FUZZ_EXAMPLES = int(os.environ.get("STREAMER_FAULTS_FUZZ_EXAMPLES", "1100"))
FUZZ_PER_EXAMPLE = 100
MIB = 1 << 20


def _oversized(builder: WorkloadBuilder, count: int) -> list[BadRecord]:
    """Batch records of valid-looking events, just over and well over the 1 MiB limit."""
    records = []
    for n in range(count):
        target = MIB + 1 + n * 300_000
        parts: list[bytes] = []
        size = 2
        i = 0
        while size < target:
            event = builder.use_event(i)
            event["event_id"] = f"oversized-{n}-{i}"
            encoded = orjson.dumps(event)
            parts.append(encoded)
            size += len(encoded) + 1
            i += 1
        records.append(BadRecord(b"[" + b",".join(parts) + b"]",
                                 frozenset({"record_too_large"})))
    return records


async def test_fuzz_malformed_records_and_duplicates(kafka_bootstrap: str, redis_url: str,
                                                     tmp_path: Path) -> None:
    scenario = Scenario(6, "duplicates (5%) + Hypothesis fuzz of malformed records",
                        kafka_bootstrap, redis_url, PARTITIONS, tmp_path)
    # Topics that accept records over the worker's 1 MiB limit, so it has to reject them.
    await scenario.setup(max_message_bytes=4 * MIB)
    sender = None
    try:
        now_ms = int(time.time() * 1000)
        builder = WorkloadBuilder(6006, PARTITIONS, EVENTS, tag=scenario.names.tag,
                                  now_ms=now_ms, dup_rate=0.05, single_ratio=0.05,
                                  bad_single_ratio=0.9)
        started = time.monotonic()
        elements, records = collect_malformed(now_ms, builder.t0_ms, FUZZ_EXAMPLES,
                                              FUZZ_PER_EXAMPLE)
        records.extend(_oversized(builder, 3))
        log(f"scenario 6: Hypothesis drew {len(elements)} bad elements and {len(records)} "
            f"bad records in {time.monotonic() - started:.0f}s")
        workload = builder.build(bad_elements=elements, bad_records=records)
        malformed_records = workload.malformed_records
        scenario.notes["malformed_records"] = malformed_records
        log(f"scenario 6: {malformed_records} of {len(workload.records)} records are malformed "
            f"({workload.expected_rejects} rejections expected)")
        worker = scenario.worker("worker")
        worker.start()
        await worker.wait_healthy(90)
        sender = Sender(kafka_bootstrap, scenario.names, workload, chunk_records=1000)
        sender.start()
        await sender.wait(300)
        outcome = await scenario.verify(workload, drain_timeout=300)
        assert worker.alive and worker.starts == 1, "the worker stopped or restarted"
        assert "Traceback" not in worker.log_path.read_text(errors="replace")
        scenario.assert_exact(outcome)
        assert malformed_records >= 100_000
        assert workload.stats.duplicates >= 0.04 * EVENTS
    finally:
        if sender is not None:
            await sender.close()
        await scenario.cleanup()
