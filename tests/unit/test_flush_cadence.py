"""FlushCadence: short rounds while the worker keeps up, long ones while it drains a backlog.

The short round sets end-to-end latency; the long one the drain rate of a backlog
(fewer, larger flushes). The test drives it with records read, records waiting and a
clock, as the flush loop does after each round.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamer.pipeline.cadence import FlushCadence

SHORT, LONG = 0.5, 1.0


def test_a_worker_that_keeps_up_gets_short_rounds() -> None:
    cadence = FlushCadence(SHORT, LONG)
    assert cadence.next_interval(0, 0, now=10.0) == SHORT          # idle
    # 200 records read in 0.5 s; 150 waiting take 0.375 s to read: keeping up.
    assert cadence.next_interval(200, 150, now=10.5) == SHORT
    # 400 more read in 0.5 s; 800 waiting take 1.0 s: still within a long round.
    assert cadence.next_interval(600, 800, now=11.0) == SHORT


def test_a_backlog_gets_long_rounds_until_it_is_read() -> None:
    cadence = FlushCadence(SHORT, LONG)
    assert cadence.next_interval(0, 150_000, now=0.0) == LONG       # no rate yet
    assert cadence.next_interval(300, 149_900, now=1.0) == LONG     # 500 s to read
    assert cadence.next_interval(600, 301, now=2.0) == LONG         # 1.003 s to read
    assert cadence.next_interval(900, 300, now=3.0) == SHORT        # 1.0 s to read


def test_waiting_records_with_nothing_read_are_a_backlog() -> None:
    cadence = FlushCadence(SHORT, LONG)
    cadence.next_interval(500, 0, now=0.0)
    assert cadence.next_interval(500, 10, now=1.0) == LONG          # stalled or paused
    # Fewer records read than before (partitions revoked): no rate to judge by.
    assert cadence.next_interval(100, 10, now=2.0) == LONG
    assert cadence.next_interval(100, 0, now=3.0) == SHORT


# Clock readings in ticks of 1/1024 s: binary fractions, exact as floats, so the round
# length the cadence sees is exactly the one the test means.
TICK = 1 / 1024
LONG_TICKS = 1024


def _second_round(read: int, waiting: int, ticks: int) -> float:
    """The interval after a round of ``ticks`` in which ``read`` records were read."""
    cadence = FlushCadence(SHORT, LONG)
    cadence.next_interval(10**9, 0, now=0.0)
    return cadence.next_interval(10**9 + read, waiting, now=ticks * TICK)


@given(read=st.integers(1, 10**9), waiting=st.integers(1, 10**9),
       ticks=st.integers(1, 60 * LONG_TICKS))
def test_rounds_are_short_exactly_when_the_wait_reads_within_a_long_round(
        read: int, waiting: int, ticks: int) -> None:
    # The oracle counts records, in integers: at the last round's pace (read records
    # per ticks) a long round reads read * LONG_TICKS / ticks; short rounds if that
    # covers what waits.
    covered = read * LONG_TICKS >= waiting * ticks
    assert _second_round(read, waiting, ticks) == (SHORT if covered else LONG)


@given(per_tick=st.integers(1, 10**5), ticks=st.integers(1, 60 * LONG_TICKS),
       beyond=st.sampled_from([-1, 0, 1]))
def test_a_wait_of_exactly_one_long_round_is_still_keeping_up(
        per_tick: int, ticks: int, beyond: int) -> None:
    """At the boundary: ``per_tick * LONG_TICKS`` records is exactly one long round."""
    waiting = per_tick * LONG_TICKS + beyond
    expected = LONG if beyond > 0 else SHORT
    assert _second_round(per_tick * ticks, waiting, ticks) == expected
