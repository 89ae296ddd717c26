"""How long the next flush round lasts: short while the worker keeps up, long in a backlog.

Each partition is flushed once per round, so while the worker keeps up an event waits
for its partition's turn (up to a round), then the flush: the round sets end-to-end
latency (p99 ≈ round + flush + delivery). In a backlog the events have already waited
longer than that in Kafka, and a longer round costs Redis less per event (a counter
touched twice in a round is written once).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class FlushCadence:
    keeping_up_s: float
    backlog_s: float
    _read_before: int | None = None
    _checked_at: float | None = None

    def next_interval(self, read: int, waiting: int, now: float) -> float:
        """The next round's length, from the records read so far (all owned partitions
        and topics), those waiting in Kafka past them, and the monotonic clock.

        A backlog: reading what waits would take longer than a long round at the rate
        of the last round. A rate measured from nothing read counts as a backlog while
        something waits; nothing waiting is never one.
        """
        read_since = None if self._read_before is None else read - self._read_before
        elapsed = None if self._checked_at is None else now - self._checked_at
        self._read_before, self._checked_at = read, now
        if waiting <= 0:
            return self.keeping_up_s
        if not read_since or read_since < 0 or not elapsed or elapsed <= 0:
            return self.backlog_s
        seconds_to_read = waiting * elapsed / read_since
        return self.keeping_up_s if seconds_to_read <= self.backlog_s else self.backlog_s
