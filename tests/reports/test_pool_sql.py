"""The pool split in SQL (pricing.py) against the reference in money.py, on random pools."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.reports.money import largest_remainder
from streamer.reports.pricing import _PRICED, LINE_KEY

keys = st.tuples(st.sampled_from(["h1", "h2", "h\t3"]), st.sampled_from(["t1", "t2"]),
                 st.sampled_from(["DE", "US"]), st.sampled_from(["play", "create"]),
                 st.sampled_from(["master", "publishing"]), st.sampled_from(["v1", "v2"]))


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(1, 100), st.integers(1, 10**15)),
       # Small weights make equal remainders common: the tie order is exercised.
       st.dictionaries(keys, st.one_of(st.integers(0, 3), st.integers(0, 10**12)),
                       min_size=1, max_size=30),
       st.dictionaries(keys, st.integers(0, 10**9), max_size=10))
def test_sql_pool_split_equals_the_reference(pool: int, weights: dict[tuple[str, ...], int],
                                             other: dict[tuple[str, ...], int]) -> None:
    if not sum(weights.values()):
        weights[next(iter(weights))] = 1
    con = duckdb.connect()
    rows = [(*key, "human", 1, 1, w) for key, w in sorted(weights.items())]
    # A second, per-use entry on other territory names keeps the pools apart.
    rows += [(k[0], k[1], "FR", *k[3:], "human", 1, 1, w) for k, w in sorted(other.items())]
    columns = [*LINE_KEY, "ai_origin", "share_micro", "uses", "weighted_micro"]
    con.register("l", pa.table({name: [row[i] for row in rows]
                                for i, name in enumerate(columns)}))
    con.execute("CREATE TEMP TABLE lines AS SELECT * REPLACE (share_micro::BIGINT AS "
                "share_micro, uses::BIGINT AS uses, weighted_micro::BIGINT AS weighted_micro) "
                "FROM l")
    pricing: list[tuple[str, str, str, str, str, str, str, str | None, str, str, str, int]] = []
    for territory in ("DE", "US", "FR"):
        for use in ("play", "create"):
            for right in ("master", "publishing"):
                if territory == "FR":
                    pricing.append((territory, use, right, "human", "rate#1", "rate", "EUR",
                                    "0.5", "50", "1000000", "0", 100))
                else:
                    pricing.append((territory, use, right, "human", "pool#1", "pool", "EUR",
                                    None, "0", "1", str(pool), 100))
    names = ["territory", "use", "right", "ai_origin", "entry_id", "kind", "currency",
             "rate_text", "rate_num", "rate_den", "pool_minor", "unit"]
    con.register("p", pa.table({n: [r[i] for r in pricing] for i, n in enumerate(names)}))
    con.execute("CREATE TEMP TABLE pricing AS SELECT * FROM p")
    con.execute(_PRICED)
    got = {tuple(row[:-1]): row[-1] for row in con.execute(
        f"SELECT {', '.join(chr(34) + c + chr(34) for c in LINE_KEY)}, amount_minor "
        "FROM priced WHERE kind = 'pool'").fetchall()}
    assert got == largest_remainder(pool, sorted(weights.items()))
    assert sum(got.values()) == pool
