"""Fixtures of the fault-injection suite (tests/faults/).

Scenarios that restart, kill or freeze Kafka or Redis get private ones
(``private_kafka`` / ``private_redis``: deploy/local scripts on their own ports, data
under ``$STREAMER_FAULTS_DIR``, default ``$TMPDIR/streamer-faults``), started fresh and
always stopped and deleted at the end. The shared stack (``kafka_bootstrap`` /
``redis_url`` from tests/conftest.py) is only ever used as a client.

At the end of the session the figures of every scenario that ran are printed (the same
lines are appended to ``$STREAMER_FAULTS_DIR/results.jsonl``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from fault_harness import RESULTS, PrivateKafka, PrivateRedis


@pytest.fixture
def private_redis(request: pytest.FixtureRequest) -> Iterator[PrivateRedis]:
    server = PrivateRedis(f"redis-{request.node.name[:40]}")
    server.fresh()
    try:
        server.run("up", timeout=60)
        yield server
    finally:
        try:
            with contextlib.suppress(OSError, ValueError):
                server.thaw()  # in case a test failed while it was frozen
            server.run("down", timeout=60)
        finally:
            server.fresh()


@pytest.fixture
def private_kafka(request: pytest.FixtureRequest) -> Iterator[PrivateKafka]:
    broker = PrivateKafka(f"kafka-{request.node.name[:40]}")
    broker.fresh()
    try:
        broker.run("up", timeout=180)
        yield broker
    finally:
        try:
            broker.run("down", timeout=120)
        finally:
            broker.fresh()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault-injection figures")
    write(f"{'scenario':<48} {'events':>8} {'malformed':>9} {'faults':>6} {'lost':>5} "
          f"{'double':>6} {'DLQ exp/found/miss':>19} {'secs':>5}")
    totals = {"events_sent": 0, "faults": 0, "lost": 0, "double": 0, "malformed": 0}
    for row in RESULTS:
        for key in totals:
            totals[key] += row[key]
        dlq = f"{row['dlq_expected']}/{row['dlq_found']}/{row['dlq_missing']}"
        write(f"{str(row['scenario']) + '. ' + row['title']:<48.48} {row['events_sent']:>8} "
              f"{row['malformed']:>9} {row['faults']:>6} {row['lost']:>5} {row['double']:>6} "
              f"{dlq:>19} {row['seconds']:>5.0f}")
    write(f"{'total':<48} {totals['events_sent']:>8} {totals['malformed']:>9} "
          f"{totals['faults']:>6} {totals['lost']:>5} {totals['double']:>6}")
