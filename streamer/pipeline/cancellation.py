"""Telling our own cancellation from that of a task we awaited.

``await task`` raises CancelledError both when the awaiting task is cancelled and when
the awaited task is (a claim cancelled by a revocation). Only the first must propagate:
with direct delivery the awaiting task is Faust's fetch loop, and a CancelledError
escaping it outside a shutdown ends the loop quietly, leaving a healthy worker that
never counts again (a CI run caught that after a broker SIGKILL).
"""

from __future__ import annotations

import asyncio


def cancelling() -> bool:
    """Whether the current task was asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
