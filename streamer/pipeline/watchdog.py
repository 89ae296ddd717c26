"""Noticing a worker that stays up but stopped reading: records wait, none arrive.

Kafka clients recover from broker restarts by themselves, and Faust restarts its fetch
loop after a rebalance; a bug on either side (or ours) can still leave a process that
answers HTTP and flushes, yet never gets another record. Nothing crashes, so nothing
restarts it. The flush loop calls ``observe`` once a pass (no per-record cost): when
the input partitions lag and nothing moved for ``stall_after_s`` (no record counted,
and with direct delivery no fetch round begun), the worker reports itself unhealthy
(so an orchestrator restarts it; Redis keeps the offsets) and logs where the fetch loop
waits, once per stall. Counting fetch rounds keeps an idle partition that ends in a
transaction marker (an offset that is never delivered) from looking stalled.
"""

from __future__ import annotations

import io
import logging

from streamer.pipeline.faust_compat import FetchLoop

log = logging.getLogger(__name__)


class DeliveryWatch:
    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        # The direct-delivery fetch loop, when there is one (set once it is installed).
        self.fetch_loop: FetchLoop | None = None
        self._progress = -1
        self._since = 0.0  # when progress last changed (or records last stopped waiting)
        self._quiet = False
        self._reported = False

    def observe(self, progress: int, lagging: bool, rebalancing: bool, now: float) -> None:
        """``progress``: the sum of the partitions' next offsets; ``lagging``: records wait."""
        if progress != self._progress or not lagging or rebalancing:
            self._progress = progress
            self._since = now
            self._quiet = self._reported = False
            return
        self._quiet = True
        if self.stalled(now) and not self._reported:
            self._reported = True
            log.error("no record delivered for %.0f s while the input partitions lag; "
                      "reporting unhealthy. Fetch loop: %s", self.stalled_for(now),
                      self.describe_fetch_loop())

    def fetch_rounds(self) -> int:
        """Fetch rounds begun so far (0 without direct delivery): progress too."""
        return self.fetch_loop.fetches if self.fetch_loop is not None else 0

    def stalled_for(self, now: float) -> float:
        return now - self._since if self._quiet else 0.0

    def stalled(self, now: float) -> bool:
        return self.stalled_for(now) >= self.stall_after_s

    def describe_fetch_loop(self) -> str:
        if self.fetch_loop is None:
            return "Faust's own (not direct delivery)"
        task = self.fetch_loop.task
        if task is None:
            return "not started"
        if task.done():
            if task.cancelled():
                return "ended: cancelled"
            return f"ended: {task.exception()!r}"
        stack = io.StringIO()
        task.print_stack(file=stack)
        return "waiting in\n" + stack.getvalue()
