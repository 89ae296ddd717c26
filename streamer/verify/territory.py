"""Reconciling territory: Redis' territory counters, the ledger's files and the range
answers of the API, each against the generator's ground truth, one partition at a time.

``reconcile_territory`` checks, for a drained run:

1. per partition, the territory counters in Redis (``tt``/``th``/``tg``) = the truth's;
2. per partition, the ledger's rows of the closed days = the truth's rows of those days;
3. the ledger's own invariants and, per closed (day, partition), its rows summed over
   countries = that partition's plain ``1d`` counters in Redis
   (``ledger_files.ledger_problems``);
4. with a worker's URL, the range answers (``ranges.check_ranges``) for the largest
   tracks, holders and genres over the closed days.

Replaced tracks' holders (``rpl-...``) are folded as ``fold_replaced_holders`` does:
which uses the old or new split got depends on how the worker interleaved two topics.
Several truths (a load's and its latency probes') are checked as their sum. Lost and
double uses are reported per counter family too (``territory_families``): a use missing
from ``th`` but not ``tt`` points at attribution, not at counting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from streamer.verify.ledger_files import closed, ledger_counters, ledger_problems
from streamer.verify.ranges import check_ranges
from streamer.verify.reconcile import Reconciliation, compare
from streamer.verify.redis_counters import read_counters, read_territory_counters
from streamer.verify.truth import (
    REPLACED_HOLDER_PREFIX,
    PartitionedTruth,
    fold_replaced_holders,
    merge_expected,
)

CounterKey = tuple[Any, ...]


def _day_of(start_ms: int) -> date:
    return datetime.fromtimestamp(start_ms // 1000, UTC).date()


def _largest(rows: Mapping[CounterKey, int], table: str, at: int, count: int) -> list[str]:
    totals: Counter[str] = Counter()
    for key, value in rows.items():
        if key[0] == table and (table != "holders" or key[-1] == "uses"):
            totals[str(key[at])] += value
    return [name for name, _ in totals.most_common()
            if not name.startswith(REPLACED_HOLDER_PREFIX)][:count]


TERRITORY_FAMILIES = ("ttrack", "tholder", "tgenre")


def family_diff(mismatches: Iterable[tuple[CounterKey, int, int]]) -> dict[str, dict[str, int]]:
    """Uses lost and double, and mismatched counters, per territory counter family.

    Uses are the counters' values, for ``tholder`` those of its ``uses`` measure (a
    ``weighted_micro`` that differs shows as a mismatched counter only).
    """
    families = {name: {"lost": 0, "double": 0, "mismatched_counters": 0}
                for name in TERRITORY_FAMILIES}
    for key, want, got in mismatches:
        family = families.get(key[0])
        if family is None:
            continue
        family["mismatched_counters"] += 1
        if key[0] == "tholder" and key[-1] != "uses":
            continue
        family["lost" if got < want else "double"] += abs(got - want)
    return families


async def reconcile_territory(redis: Any, key_prefix: str, partitions: int,
                              truth: PartitionedTruth | Sequence[PartitionedTruth],
                              ledger_url: str | None = None, *,
                              base_url: str | None = None, ids_per_kind: int = 5,
                              token: str | None = None) -> dict[str, Any]:
    """See the module docstring; returns figures and ``problems`` (empty when exact)."""
    truths = (truth,) if isinstance(truth, PartitionedTruth) else tuple(truth)
    territory = Reconciliation()
    ledger = Reconciliation()
    problems: list[str] = []
    redis_1d: dict[int, dict[CounterKey, int]] = {}
    closed_pairs = closed(ledger_url) if ledger_url else {}
    counters = 0
    for partition in range(partitions):
        expected = fold_replaced_holders(merge_expected(
            part.expected_territory_for(partition) for part in truths))
        actual = fold_replaced_holders(await read_territory_counters(redis, key_prefix,
                                                                     partition))
        territory.add(compare(expected, actual))
        counters += len(actual)
        if ledger_url is None:
            continue
        days = {day for day, p in closed_pairs if p == partition}
        starts = {int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1000
                  for d in days}
        want = {k: v for k, v in merge_expected(
                    part.expected_ledger_for(partition) for part in truths).items()
                if k[1] in starts}
        got = ledger_counters(ledger_url, partition)
        ledger.add(compare(fold_replaced_holders(want), fold_replaced_holders(got)))
        redis_1d[partition] = await read_counters(redis, key_prefix, partition)
    if not territory.ok:
        problems.append(f"territory counters: {territory.summary(limit=5)}")
    if not ledger.ok:
        problems.append(f"ledger rows: {ledger.summary(limit=5)}")
    report: dict[str, Any] = {
        "territory_counters": counters, "territory_lost": territory.lost,
        "territory_double": territory.double,
        "territory_mismatches": len(territory.mismatches),
        "territory_families": family_diff(territory.mismatches),
        "countries": len(set().union(*(part.countries for part in truths))),
    }
    if ledger_url is not None:
        check = ledger_problems(ledger_url, redis_1d)
        problems += check.problems
        closed_days = sorted({day for day, _ in closed_pairs})
        report.update({
            "ledger_closed_pairs": len(closed_pairs), "ledger_days": len(closed_days),
            "ledger_rows": check.rows, "ledger_uses": check.uses,
            "ledger_lost": ledger.lost, "ledger_double": ledger.double,
            "ledger_mismatches": len(ledger.mismatches),
            "ledger_vs_redis_days": check.redis_days_compared})
        complete = [d for d in closed_days
                    if sum(1 for (day, _p) in closed_pairs if day == d) == partitions]
        if base_url is not None and complete:
            first, last = complete[0], complete[-1]
            span = [first + timedelta(days=n) for n in range((last - first).days + 1)]
            rows = fold_replaced_holders(merge_expected(
                part.expected_ledger() for part in truths))
            ids = {"track": _largest(rows, "tracks", 2, ids_per_kind),
                   "holder": _largest(rows, "holders", 2, ids_per_kind),
                   "genre": _largest(rows, "genres", 2, ids_per_kind)}
            ranges = await check_ranges(base_url, rows, span, ids, token=token)
            problems += ranges.problems
            report.update({"range_ids": ranges.ids, "range_answers": ranges.answers,
                           "range_days": len(span),
                           "range_closed_days": min(ranges.closed_days.values(), default=0)})
    report["problems"] = problems
    report["ok"] = not problems
    return report
