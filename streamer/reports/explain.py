"""``streamer report explain``: how one statement line's figure came from ledger rows.

Prints, for each line of a holder and track (optionally one territory, use, right): the
ledger rows that attributed the uses (day, partition, uses; the catalog version and the
holder's share in it), the weighted uses, the rate-card entry that priced the line and
the arithmetic from there to the amount, recomputed and checked against the statement's
figure: a per-use line with money.py's reference rounding; a pool line from the pool's
totals and the line's place among its remainders, counted in DuckDB (a pool of a 20M-use
month has millions of lines: only its totals and the explained line reach Python).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from streamer.reports.money import (
    exponent,
    format_micro,
    format_minor,
    format_percent_micro,
    per_use_minor,
)
from streamer.reports.pricing import LINE_KEY, Pricing
from streamer.reports.source import ReportInputError

_KEY_COLUMNS = ", ".join(f'"{column}"' for column in LINE_KEY)


def explain(pricing: Pricing, holder: str, track: str, territory: str | None = None,
            use: str | None = None, right: str | None = None) -> list[str]:
    """The explanation, as lines of text; raises ReportInputError if no line matches."""
    clauses = ["holder_id = $holder", "track_id = $track"]
    params: dict[str, Any] = {"holder": holder, "track": track}
    for column, name, value in (("territory", "territory", territory), ("use", "use", use),
                                ('"right"', "right", right)):
        if value is not None:
            clauses.append(f"{column} = ${name}")
            params[name] = value
    where = " AND ".join(clauses)
    con = pricing.con
    lines = con.execute(
        f"SELECT * FROM priced WHERE {where} "
        'ORDER BY territory, use, "right", catalog_version', params)
    names = [d[0] for d in lines.description]
    rows = [dict(zip(names, row, strict=True)) for row in lines.fetchall()]
    if not rows:
        raise ReportInputError(f"no statement line for holder {holder!r} and track {track!r} "
                               f"in {pricing.snapshot.period.text} with those filters")
    versions = pricing.snapshot.versions
    out = [f"period {pricing.snapshot.period.text}, ledger {pricing.snapshot.location.url} at "
           f"versions {', '.join(f'{k}={v}' for k, v in sorted(versions.items()))}"
           + (" (PROVISIONAL)" if pricing.snapshot.provisional else "")]
    pools = {entry_id: _PoolSplit.of(pricing, entry_id, where, params)
             for entry_id in sorted({row["entry_id"] for row in rows if row["kind"] == "pool"})}
    days: dict[tuple[str, str, str], list[tuple[Any, int, int]]] = {}
    for day, partition, country, use_, version, uses in con.execute(
            "SELECT day, partition, country, use, catalog_version, uses FROM attributions "
            "WHERE track_id = ? ORDER BY day, partition", [track]).fetchall():
        days.setdefault((country, use_, version), []).append((day, partition, int(uses)))
    for row in rows:
        out += ["", *_explain_line(pricing, row, pools, days)]
    return out


@dataclass(frozen=True, slots=True)
class _PoolSplit:
    """What explaining a pool's lines needs, computed in DuckDB: the pool's totals and
    the explained lines' places among its remainders. The pool's lines never come to
    Python (a default-territory pool of a 20M-use month has millions)."""

    denominator: int
    lines: int
    left: int
    place: dict[tuple[Any, ...], int]

    @classmethod
    def of(cls, pricing: Pricing, entry_id: str, where: str,
           params: dict[str, Any]) -> _PoolSplit:
        """``where`` (with ``params``) selects the explained lines among the pool's."""
        amount = pricing.pools[entry_id].amount_minor
        con = pricing.con
        values = {"entry": entry_id, "amount": str(amount)}
        denominator, lines, floors = con.execute(_POOL_TOTALS, values).fetchall()[0]
        places = con.execute(_PLACES.format(where=where), {
            **values, **params, "denominator": str(denominator)}).fetchall()
        return cls(int(denominator), int(lines), amount - int(floors),
                   {tuple(row[:-1]): int(row[-1]) for row in places})


_POOL_TOTALS = """
WITH t AS (SELECT sum(weighted_micro::HUGEINT) AS denominator, count(*) AS lines
           FROM priced WHERE entry_id = $entry)
SELECT t.denominator, t.lines,
       (SELECT sum(($amount::HUGEINT * weighted_micro) // t.denominator) FROM priced
        WHERE entry_id = $entry)
FROM t
"""
# A line's place among the pool's remainders, counted (not ranked by a window as
# pricing.py does): 1 + the lines with a larger remainder, + those with an equal one and a
# smaller key.
_PLACES = f"""
WITH p AS MATERIALIZED (
         SELECT {_KEY_COLUMNS}, ($amount::HUGEINT * weighted_micro) % $denominator::HUGEINT AS r
         FROM priced WHERE entry_id = $entry),
     m AS (SELECT {_KEY_COLUMNS}, ($amount::HUGEINT * weighted_micro) % $denominator::HUGEINT
                  AS r
           FROM priced WHERE entry_id = $entry AND {{where}})
SELECT {_KEY_COLUMNS},
       1 + (SELECT count(*) FROM p WHERE p.r > m.r)
         + (SELECT count(*) FROM p WHERE p.r = m.r
            AND ({", ".join(f'p."{c}"' for c in LINE_KEY)})
                < ({", ".join(f'm."{c}"' for c in LINE_KEY)}))
FROM m
"""


def _explain_line(pricing: Pricing, row: dict[str, Any], pools: dict[str, _PoolSplit],
                  by_version: dict[tuple[str, str, str], list[tuple[Any, int, int]]]
                  ) -> list[str]:
    currency = row["currency"]
    out = [f"line: holder {row['holder_id']}, track {row['track_id']}, territory "
           f"{row['territory']}, use {row['use']}, right {row['right']}, catalog version "
           f"{row['catalog_version']} (ai_origin {row['ai_origin']})",
           "  ledger rows (attributions: uses of this version by day and partition):"]
    days = by_version.get((row["territory"], row["use"], row["catalog_version"]), [])
    for day, partition, uses in days:
        out.append(f"    {day.isoformat()} p{partition}: {uses} uses")
    total = sum(int(uses) for _, _, uses in days)
    share = int(row["share_micro"])
    out += [f"  uses = {total} (statement: {row['uses']})",
            f"  share of {row['holder_id']} in {row['right']} of version "
            f"{row['catalog_version']} (ledger catalog) = {share} micro = "
            f"{format_percent_micro(share)} %",
            f"  weighted uses = {total} x {share} / 1,000,000 = "
            f"{format_micro(total * share)} (statement: {format_micro(row['weighted_micro'])})"]
    weighted = total * share
    entry_id, kind = row["entry_id"], row["kind"]
    if kind == "none":
        out.append(f"  no rate-card entry prices {row['territory']} {row['use']} "
                   f"{row['right']} {row['ai_origin']}: amount 0 (reported as unpriced)")
        expected = 0
    elif kind == "rate":
        rate = Decimal(row["rate_text"])
        exact = Decimal(weighted).scaleb(-6) * rate
        expected = per_use_minor(weighted, rate, currency)
        out += [f"  priced by {entry_id}: {rate} {currency} per weighted use",
                f"  exact amount = {format_micro(weighted)} x {rate} = {exact} {currency}",
                f"  rounded once to the minor unit (10^-{exponent(currency)}), half to even: "
                f"{format_minor(expected, currency)} {currency}"]
    else:
        pool = pricing.pools[entry_id]
        key = tuple(row[name] for name in LINE_KEY)
        split = pools[entry_id]
        denominator, left = split.denominator, split.left
        floor, remainder = divmod(pool.amount_minor * int(row["weighted_micro"]), denominator)
        place = split.place[key]
        expected = floor + (1 if place <= left else 0)

        out += [f"  priced by {entry_id}: a pool of {format_minor(pool.amount_minor, currency)} "
                f"{currency} over {format_micro(denominator)} weighted uses in "
                f"{split.lines} lines (all holders)",
                f"  quota = {pool.amount_minor} x {row['weighted_micro']} / {denominator} "
                f"minor units = {floor} remainder {remainder}/{denominator}",
                f"  largest remainder: {left} units left after the floors; this line's "
                f"remainder ranks {place} (ties by holder, track, territory, use, right, "
                f"version) -> {'+1' if place <= left else '+0'}",
                f"  amount = {format_minor(expected, currency)} {currency}"]
    actual = int(row["amount_minor"])
    verdict = "matches" if actual == expected and total == row["uses"] else "DIFFERS FROM"
    out.append(f"  recomputed {format_minor(expected, currency)} {verdict} the statement's "
               f"{format_minor(actual, currency)} {currency}")
    return out
