"""``explain``'s pool arithmetic (counted in DuckDB) against the largest-remainder rule
applied here by hand to ground truth from the generated events."""

from __future__ import annotations

import re
from collections import defaultdict
from fractions import Fraction

from streamer.reports.explain import explain
from streamer.reports.pricing import Pricing
from tests.reports.conftest import ClosedMonth
from tests.reports.test_statements import expected_lines, price_of

LINE = re.compile(r"line: holder (.+), track (\S+), territory (\w+), use (\w+), right (\w+), "
                  r"catalog version (\S+) \(ai_origin \w+\)")
POOL = re.compile(r"  priced by (pool#\d): a pool of [\d.]+ EUR over ([\d.]+) weighted uses "
                  r"in (\d+) lines")
RANK = re.compile(r"  largest remainder: (\d+) units left after the floors; this line's "
                  r"remainder ranks (\d+) .* -> \+([01])")
AMOUNT = re.compile(r"  amount = ([\d.]+) EUR")


def reference_places(closed: ClosedMonth) -> dict[str, tuple[int, int, dict[tuple[str, ...],
                                                                           int]]]:
    """pool -> (lines, units left after the floors, line key -> place by remainder)."""
    origin_of = {e.entry.version: e.entry.ai_origin for e in closed.month.events
                 if e.entry is not None and e.entry.ai_origin is not None}
    members: dict[str, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
    amounts: dict[str, int] = {}
    for key, (_, weighted) in closed.month.holder_lines().items():
        kind, what = price_of(key[2], key[3], key[4], origin_of.get(key[5], "unknown"))
        if kind == "pool":
            members[what[0]].append((key, weighted))
            amounts[what[0]] = what[1]
    out = {}
    for pool, lines in members.items():
        total = sum(w for _, w in lines)
        quota = {key: Fraction(amounts[pool] * w, total) for key, w in lines}
        left = amounts[pool] - sum(int(q) for q in quota.values())
        order = sorted(quota, key=lambda k: (-(quota[k] - int(quota[k])), k))
        out[pool] = (len(lines), left, {key: n for n, key in enumerate(order, start=1)})
    return out


def test_pool_lines_are_explained_with_the_reference_rank_and_amount(
        closed_month: ClosedMonth, pricing: Pricing) -> None:
    places = reference_places(closed_month)
    amounts = expected_lines(closed_month)
    checked = 0
    for holder in ("label-a", "pub-x", "_unclaimed", "mystery\tholder"):
        for track in sorted({k[1] for k in amounts if k[0] == holder})[:6]:
            text = explain(pricing, holder, track)
            assert "DIFFERS" not in "\n".join(text)
            for index, line in enumerate(text):
                head = LINE.fullmatch(line)
                if not head:
                    continue
                key = tuple(head.groups())
                pool = next((POOL.match(x) for x in text[index:index + 9] if POOL.match(x)),
                            None)
                if pool is None:
                    continue
                lines, left, place = places[pool[1]]
                rank = next(RANK.match(x) for x in text[index:index + 12] if RANK.match(x))
                amount = next(AMOUNT.match(x) for x in text[index:index + 12]
                              if AMOUNT.match(x))
                assert int(pool[3]) == lines
                assert (int(rank[1]), int(rank[2])) == (left, place[key]), key
                assert rank[3] == ("1" if place[key] <= left else "0")
                assert round(Fraction(amount[1]) * 100) == amounts[key][2], key
                checked += 1
    assert checked >= 10
