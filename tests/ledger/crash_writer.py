"""A process that closes synthetic days into a ledger, for the crash test to SIGKILL.

Usage: python -m tests.ledger.crash_writer LEDGER_DIR SEED
Prints ``ready`` once imported and the days are built, ``done`` when every day is closed.
"""

from __future__ import annotations

import sys
from datetime import date

from streamer.ledger import DayPartition, LedgerLocation, LedgerWriter, close_days
from tests.ledger.days import Day, make_days

FIRST = date(2026, 11, 1)
DAYS = 3
PARTITIONS = 2


class SyntheticSource:
    """The pipeline's part, played by a fixed set of days."""

    def __init__(self, days: dict[tuple[date, int], Day]) -> None:
        self.days = days

    def closable_through(self, partition: int) -> date | None:
        return max(day for day, p in self.days if p == partition)

    def first_day(self, partition: int) -> date | None:
        return FIRST

    def read_day(self, day: date, partition: int) -> DayPartition:
        return self.days[(day, partition)].closed()


def days_of(seed: int) -> dict[tuple[date, int], Day]:
    return make_days(seed, FIRST, DAYS, PARTITIONS, 400)


def close_all(ledger_dir: str, seed: int) -> None:
    writer = LedgerWriter(LedgerLocation(ledger_dir), {"seed": seed}, code_version="crash")
    source = SyntheticSource(days_of(seed))
    for day_index in range(DAYS):
        for partition in range(PARTITIONS):
            close_days(writer, source, partition,
                       through=date.fromordinal(FIRST.toordinal() + day_index))


def main() -> None:
    ledger_dir, seed = sys.argv[1], int(sys.argv[2])
    days_of(seed)
    print("ready", flush=True)
    close_all(ledger_dir, seed)
    print("done", flush=True)


if __name__ == "__main__":
    main()
