"""Expected against actual counters: what was lost, what was counted twice, what differs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CounterKey = tuple[Any, ...]


@dataclass(slots=True)
class Reconciliation:
    """The outcome of ``compare``; ``add`` sums the outcomes of several shards.

    ``lost`` and ``double`` are summed over every per-track counter (all windows; the
    territory counters ``"ttrack"`` and the ledger's ``"tracks"`` rows too, when compared),
    so a use missing from three windows adds 3. ``events_expected``/``events_counted`` are the
    uses in one window (each use is counted once per window): the window with the most
    expected uses.
    """

    lost: int = 0
    double: int = 0
    mismatches: list[tuple[CounterKey, int, int]] = field(default_factory=list)
    # window -> uses in its "track" counters
    expected_per_window: dict[Any, int] = field(default_factory=dict)
    actual_per_window: dict[Any, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.lost == 0 and self.double == 0

    @property
    def _window(self) -> Any:
        windows = self.expected_per_window.keys() | self.actual_per_window.keys()
        if not windows:
            return None
        return max(windows, key=lambda name: (self.expected_per_window.get(name, 0), str(name)))

    @property
    def events_expected(self) -> int:
        return self.expected_per_window.get(self._window, 0)

    @property
    def events_counted(self) -> int:
        return self.actual_per_window.get(self._window, 0)

    def add(self, other: Reconciliation) -> None:
        self.lost += other.lost
        self.double += other.double
        self.mismatches.extend(other.mismatches)
        for mine, theirs in ((self.expected_per_window, other.expected_per_window),
                             (self.actual_per_window, other.actual_per_window)):
            for window, uses in theirs.items():
                mine[window] = mine.get(window, 0) + uses

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


# Counter families whose keys count uses per track: plain, territory, ledger rows.
_PER_TRACK = frozenset({"track", "ttrack", "tracks"})


def compare(expected: Mapping[CounterKey, int], actual: Mapping[CounterKey, int]) -> Reconciliation:
    """Every counter of either side that differs, and the lost/double uses per track."""
    result = Reconciliation()
    expected_per_window: defaultdict[Any, int] = defaultdict(int)
    actual_per_window: defaultdict[Any, int] = defaultdict(int)
    if expected == actual:  # the usual outcome, compared in C; only the sums remain
        for key, value in expected.items():
            if key and key[0] == "track":
                expected_per_window[key[1]] += int(value)
        result.expected_per_window = dict(expected_per_window)
        result.actual_per_window = dict(expected_per_window)
        return result
    for key in expected.keys() | actual.keys():
        want = int(expected.get(key, 0))
        got = int(actual.get(key, 0))
        if key and key[0] in _PER_TRACK:
            if key[0] == "track":
                expected_per_window[key[1]] += want
                actual_per_window[key[1]] += got
            if got < want:
                result.lost += want - got
            elif got > want:
                result.double += got - want
        if want != got:
            result.mismatches.append((key, want, got))
    result.expected_per_window = dict(expected_per_window)
    result.actual_per_window = dict(actual_per_window)
    return result
