"""``streamer report explain``: how one statement line's figure came from ledger rows.

Prints, for each line of a holder and track (optionally one territory, use, right): the
ledger rows that attributed the uses (day, partition, uses; the catalog version and the
holder's share in it), the weighted uses, the rate-card entry that priced the line and
the arithmetic from there to the amount, recomputed with the reference functions of
money.py and checked against the statement's figure.
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
    largest_remainder,
    per_use_minor,
)
from streamer.reports.pricing import LINE_KEY, Pricing
from streamer.reports.source import ReportInputError

_KEY_COLUMNS = ", ".join(f'"{column}"' for column in LINE_KEY)


def explain(pricing: Pricing, holder: str, track: str, territory: str | None = None,
            use: str | None = None, right: str | None = None) -> list[str]:
    """The explanation, as lines of text; raises ReportInputError if no line matches."""
    clauses = ["holder_id = ?", "track_id = ?"]
    params: list[Any] = [holder, track]
    for column, value in (("territory", territory), ("use", use), ('"right"', right)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    con = pricing.con
    lines = con.execute(
        f"SELECT * FROM priced WHERE {' AND '.join(clauses)} "
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
    pools: dict[str, _PoolSplit] = {}
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
    """A pool recomputed with the reference rule, once per explain call."""

    denominator: int
    left: int
    allocation: dict[tuple[Any, ...], int]
    place: dict[tuple[Any, ...], int]

    @classmethod
    def of(cls, pricing: Pricing, entry_id: str) -> _PoolSplit:
        amount = pricing.pools[entry_id].amount_minor
        members = pricing.con.execute(
            f"SELECT {_KEY_COLUMNS}, weighted_micro FROM priced WHERE entry_id = ?",
            [entry_id]).fetchall()
        weights = [(tuple(m[:-1]), int(m[-1])) for m in members]
        denominator = sum(w for _, w in weights)
        left = amount - sum(amount * w // denominator for _, w in weights)
        order = sorted(weights, key=lambda pair: (-(amount * pair[1] % denominator), pair[0]))
        return cls(denominator, left, largest_remainder(amount, weights),
                   {key: number for number, (key, _) in enumerate(order, start=1)})


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
        split = pools.get(entry_id) or pools.setdefault(entry_id, _PoolSplit.of(pricing,
                                                                                entry_id))
        denominator, left = split.denominator, split.left
        floor, remainder = divmod(pool.amount_minor * int(row["weighted_micro"]), denominator)
        place = split.place[key]
        expected = split.allocation[key]

        out += [f"  priced by {entry_id}: a pool of {format_minor(pool.amount_minor, currency)} "
                f"{currency} over {format_micro(denominator)} weighted uses in "
                f"{len(split.allocation)} lines (all holders)",
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
