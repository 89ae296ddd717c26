"""Expected against actual counters: what was lost, what was counted twice, what differs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CounterKey = tuple[Any, ...]


@dataclass(slots=True)
class Reconciliation:
    """The outcome of ``compare``.

    ``lost`` and ``double`` are summed over every ``"track"`` counter (all windows), so a
    use missing from three windows adds 3. ``events_expected``/``events_counted`` are the
    uses in one window (each use is counted once per window): the window with the most
    expected uses.
    """

    lost: int = 0
    double: int = 0
    mismatches: list[tuple[CounterKey, int, int]] = field(default_factory=list)
    events_expected: int = 0
    events_counted: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.lost == 0 and self.double == 0

    def summary(self, limit: int = 0) -> str:
        """One line; with ``limit`` > 0 also the first mismatching counters, one per line."""
        text = (f"events expected {self.events_expected}, counted {self.events_counted}, "
                f"lost {self.lost}, double {self.double}, "
                f"mismatched counters {len(self.mismatches)}")
        if limit > 0 and self.mismatches:
            shown = sorted(self.mismatches, key=repr)[:limit]
            lines = [f"  {key}: expected {expected}, actual {actual}"
                     for key, expected, actual in shown]
            if len(self.mismatches) > limit:
                lines.append(f"  ... and {len(self.mismatches) - limit} more")
            text += "\n" + "\n".join(lines)
        return text

    def __str__(self) -> str:
        return self.summary(limit=20)


def compare(expected: Mapping[CounterKey, int], actual: Mapping[CounterKey, int]) -> Reconciliation:
    """Every counter of either side that differs, and the lost/double uses per track."""
    result = Reconciliation()
    expected_per_window: defaultdict[Any, int] = defaultdict(int)
    actual_per_window: defaultdict[Any, int] = defaultdict(int)
    for key in expected.keys() | actual.keys():
        want = int(expected.get(key, 0))
        got = int(actual.get(key, 0))
        if key and key[0] == "track":
            expected_per_window[key[1]] += want
            actual_per_window[key[1]] += got
            if got < want:
                result.lost += want - got
            elif got > want:
                result.double += got - want
        if want != got:
            result.mismatches.append((key, want, got))
    if expected_per_window or actual_per_window:
        window = max(expected_per_window.keys() | actual_per_window.keys(),
                     key=lambda name: (expected_per_window.get(name, 0), str(name)))
        result.events_expected = expected_per_window.get(window, 0)
        result.events_counted = actual_per_window.get(window, 0)
    return result
