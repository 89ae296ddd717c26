"""From a ledger snapshot and a rate card to priced statement lines, in DuckDB.

A statement line is one holder's part of one track's uses in a territory, for one use,
right and catalog version (the version that attributed the uses: a track whose shares
changed during the period has a line per version). Its uses are the track's uses, its
weighted uses the uses x the holder's share in that version (exact millionths).

Amounts are exact integers of minor units, computed in DuckDB's 128-bit integers (which
raise on overflow, never wrap) by the rules of money.py: a per-use line is rounded once,
half to even; a pool is split over all lines it prices, of every holder, by largest
remainder, so its lines add up to the pool exactly whoever's statement is printed. The
Python functions in money.py are the reference these queries are tested against.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from streamer.events.shares import MICRO
from streamer.reports.money import exponent, largest_remainder, per_use_minor, rate_fraction
from streamer.reports.rates import RateCard
from streamer.reports.source import ReportInputError, Snapshot

UNKNOWN_ORIGIN = "unknown"
"""The ai_origin of uses whose track never got metadata (``_unattributed``)."""
LINE_KEY = ("holder_id", "track_id", "territory", "use", "right", "catalog_version")
"""A line's key, and the order that breaks ties between equal pool remainders."""


class LedgerMismatch(ReportInputError):
    """The ledger's holder rows disagree with the lines rebuilt from attributions and
    catalog: the ledger is damaged (``streamer ledger verify`` says where)."""


@dataclass(frozen=True, slots=True)
class LevyLine:
    """One levy in one territory, and one recipient's share of it."""

    levy_id: str
    territory: str
    use: str | None
    ai_origin: str
    uses: int
    per_use: Decimal
    currency: str
    levy_minor: int
    holder_id: str
    share: Decimal
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Pool:
    entry_id: str
    currency: str
    amount_minor: int
    weighted_micro: int
    allocated_minor: int
    lines: int


DEFAULT_MEMORY_LIMIT = "4GB"
"""DuckDB's share of memory for a build; beyond it, working tables spill to disk (a
month of 20M uses: docs/STATEMENTS.md)."""


@dataclass(slots=True)
class Pricing:
    """The priced lines (DuckDB table ``priced``) and everything reported beside them."""

    snapshot: Snapshot
    card: RateCard
    con: duckdb.DuckDBPyConnection
    pools: dict[str, Pool]
    levies: list[LevyLine]
    unpriced_uses: int
    holders: list[str] = field(default_factory=list)
    workspace: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        """Close DuckDB and remove its working files."""
        self.con.close()
        if self.workspace is not None:
            self.workspace.cleanup()

    def __enter__(self) -> Pricing:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def levies_of(self, holder_id: str, territory: str | None = None) -> list[LevyLine]:
        return [line for line in self.levies if line.holder_id == holder_id
                and (territory is None or line.territory == territory)]


_LINES = f"""
CREATE TEMP TABLE lines AS
WITH a AS (SELECT track_id, country, use, catalog_version, sum(uses)::BIGINT AS uses
           FROM attributions GROUP BY ALL),
     k AS (SELECT DISTINCT track_id, catalog_version, "right", holder_id, share_micro,
                  coalesce(ai_origin, '{UNKNOWN_ORIGIN}') AS ai_origin FROM catalog)
SELECT k.holder_id, a.track_id, a.country AS territory, a.use, k."right", a.catalog_version,
       k.ai_origin, k.share_micro, a.uses,
       (a.uses::HUGEINT * k.share_micro)::BIGINT AS weighted_micro
FROM a JOIN k USING (track_id, catalog_version)
"""

_CROSS_CHECK = """
WITH rebuilt AS (SELECT holder_id, "right", use, territory AS country, sum(uses) AS uses,
                        sum(weighted_micro) AS w FROM lines GROUP BY ALL),
     stored AS (SELECT holder_id, "right", use, country, sum(uses) AS uses,
                       sum(weighted_micro) AS w FROM holders GROUP BY ALL)
SELECT holder_id, "right", use, country, rebuilt.uses, stored.uses, rebuilt.w, stored.w
FROM rebuilt FULL JOIN stored USING (holder_id, "right", use, country)
WHERE rebuilt.uses IS DISTINCT FROM stored.uses OR rebuilt.w IS DISTINCT FROM stored.w
LIMIT 1
"""


_ORDER = ", ".join(f'l."{column}"' for column in LINE_KEY)
_KEY_COLUMNS = ", ".join(f'"{column}"' for column in LINE_KEY)

_PRICED = f"""
CREATE TEMP TABLE priced AS
WITH l AS (SELECT l.*, p.entry_id, p.kind, p.currency, p.unit, p.rate_text,
                  p.rate_num::HUGEINT AS rate_num, p.rate_den::HUGEINT AS rate_den,
                  p.pool_minor::HUGEINT AS pool_minor
           FROM lines l JOIN pricing p USING (territory, use, "right", ai_origin)),
     per_use AS (SELECT l.*, l.weighted_micro::HUGEINT * l.rate_num AS n FROM l
                 WHERE kind = 'rate'),
     pooled AS (SELECT l.*, sum(l.weighted_micro::HUGEINT) OVER (PARTITION BY entry_id) AS w
                FROM l WHERE kind = 'pool'),
     shares AS (SELECT *, (pool_minor * weighted_micro) // w AS floor,
                       (pool_minor * weighted_micro) % w AS remainder FROM pooled),
     ranked AS (SELECT *, pool_minor - sum(floor) OVER (PARTITION BY entry_id) AS left_over,
                       row_number() OVER (PARTITION BY entry_id
                                          ORDER BY remainder DESC, {_ORDER}) AS place
                FROM shares l)
SELECT {_KEY_COLUMNS}, ai_origin, share_micro, uses, weighted_micro, entry_id, kind,
       currency, unit, rate_text, NULL::HUGEINT AS pool_weighted,
       (n // rate_den + CASE WHEN 2 * (n % rate_den) > rate_den
                              OR (2 * (n % rate_den) = rate_den AND (n // rate_den) % 2 = 1)
                             THEN 1 ELSE 0 END)::BIGINT AS amount_minor
FROM per_use
UNION ALL
SELECT {_KEY_COLUMNS}, ai_origin, share_micro, uses, weighted_micro, entry_id, kind,
       currency, unit, rate_text, w AS pool_weighted,
       (floor + CASE WHEN place <= left_over THEN 1 ELSE 0 END)::BIGINT AS amount_minor
FROM ranked
UNION ALL
SELECT {_KEY_COLUMNS}, ai_origin, share_micro, uses, weighted_micro, NULL, 'none',
       currency, unit, NULL, NULL, 0::BIGINT FROM l WHERE kind = 'none'
"""


def price(snapshot: Snapshot, card: RateCard, memory_limit: str = DEFAULT_MEMORY_LIMIT,
          work_dir: str | None = None) -> Pricing:
    """Build every line of the period and price it (all holders: a pool's split needs
    them all, so one holder's figures never depend on who else is printed). The working
    tables live in a DuckDB file under ``work_dir`` (default: the system's temporary
    folder), removed by ``Pricing.close``."""
    period = snapshot.period.text
    if period not in card.periods():
        raise ReportInputError(f"rate card {card.path} has no entry for period {period}")
    workspace = tempfile.TemporaryDirectory(prefix="streamer-report-", dir=work_dir)
    try:
        con = snapshot.connect(os.path.join(workspace.name, "work.duckdb"), memory_limit)
        return _price(snapshot, card, con, workspace)
    except BaseException:
        workspace.cleanup()
        raise


def _price(snapshot: Snapshot, card: RateCard, con: duckdb.DuckDBPyConnection,
           workspace: tempfile.TemporaryDirectory[str]) -> Pricing:
    period = snapshot.period.text
    con.execute(_LINES)
    mismatch = con.execute(_CROSS_CHECK).fetchall()
    if mismatch:
        raise LedgerMismatch(f"ledger holder rows differ from attributions x catalog at "
                             f"{mismatch[0][:4]}: uses {mismatch[0][4]} vs {mismatch[0][5]}, "
                             f"weighted {mismatch[0][6]} vs {mismatch[0][7]}")
    combos = con.execute('SELECT DISTINCT territory, use, "right", ai_origin FROM lines '
                         "ORDER BY ALL").fetchall()
    rows: dict[str, list[Any]] = {name: [] for name in (
        "territory", "use", "right", "ai_origin", "entry_id", "kind", "currency",
        "rate_text", "rate_num", "rate_den", "pool_minor", "unit")}
    for territory, use, right, origin in combos:
        entry = card.resolve(period, territory, use, right,
                             None if origin == UNKNOWN_ORIGIN else origin)
        currency = entry.currency if entry else card.currency_of(period, territory)
        num, den, pool, text = "0", "1", "0", None
        if entry is not None and entry.kind == "rate":
            assert entry.per_use is not None
            numerator, places = rate_fraction(entry.per_use)
            num = str(numerator * 10 ** exponent(currency))
            den = str(MICRO * 10**places)
            text = str(entry.per_use)
        elif entry is not None:
            pool = str(entry.amount_minor)
        for name, value in (("territory", territory), ("use", use), ("right", right),
                            ("ai_origin", origin),
                            ("entry_id", entry.entry_id if entry else None),
                            ("kind", entry.kind if entry else "none"),
                            ("currency", currency), ("rate_text", text), ("rate_num", num),
                            ("rate_den", den), ("pool_minor", pool),
                            ("unit", str(10 ** exponent(currency)))):
            rows[name].append(value)
    con.register("pricing_arrow", pa.table(rows, schema=pa.schema(
        [(name, pa.string()) for name in rows])))
    con.execute("CREATE TEMP TABLE pricing AS SELECT * REPLACE (unit::BIGINT AS unit) "
                "FROM pricing_arrow")
    con.execute(_PRICED)
    con.execute("DROP TABLE lines")  # priced has every column it had
    pools = _pools(con, card, period)
    unpriced = con.execute("SELECT coalesce(sum(uses), 0) FROM priced WHERE kind = 'none' "
                           "AND \"right\" = 'master'").fetchall()[0][0]
    holders = [row[0] for row in con.execute(
        "SELECT DISTINCT holder_id FROM priced ORDER BY 1").fetchall()]
    levies = _levies(con, card, period)
    # Levy recipients get a statement too, even without usage lines of their own.
    holders = sorted(set(holders) | {line.holder_id for line in levies})
    return Pricing(snapshot, card, con, pools, levies, int(unpriced), holders, workspace)


def _pools(con: duckdb.DuckDBPyConnection, card: RateCard, period: str) -> dict[str, Pool]:
    found = {row[0]: row[1:] for row in con.execute(
        "SELECT entry_id, sum(weighted_micro)::HUGEINT, sum(amount_minor)::HUGEINT, count(*) "
        "FROM priced WHERE kind = 'pool' GROUP BY entry_id").fetchall()}
    pools = {}
    for entry in card.entries:
        if entry.kind != "pool" or entry.period != period:
            continue
        assert entry.amount_minor is not None
        weighted, allocated, lines = found.get(entry.entry_id, (0, 0, 0))
        pools[entry.entry_id] = Pool(entry.entry_id, entry.currency, entry.amount_minor,
                                     int(weighted), int(allocated), int(lines))
    return pools


def _levies(con: duckdb.DuckDBPyConnection, card: RateCard, period: str) -> list[LevyLine]:
    """Per levy and territory: uses x per-use amount (rounded once, half to even), split
    among its holders by their shares (largest remainder, ties by holder id)."""
    if not any(levy.period == period for levy in card.levies):
        return []
    uses = con.execute(f"""
        SELECT a.country, a.use, coalesce(v.ai_origin, '{UNKNOWN_ORIGIN}'), sum(a.uses)
        FROM attributions a JOIN (SELECT DISTINCT track_id, catalog_version, ai_origin
                                  FROM catalog) v USING (track_id, catalog_version)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    totals: dict[tuple[str, str], int] = {}
    for territory, use, origin, count in uses:
        levy = card.resolve_levy(period, territory, use, origin)
        if levy is not None:
            totals[(levy.entry_id, territory)] = totals.get((levy.entry_id, territory), 0) + int(
                count)
    by_id = {levy.entry_id: levy for levy in card.levies}
    lines = []
    for (levy_id, territory), count in sorted(totals.items()):
        levy = by_id[levy_id]
        levy_minor = per_use_minor(count * MICRO, levy.per_use, levy.currency)
        weights = [(holder, int(share * MICRO)) for holder, share in levy.shares]
        split = largest_remainder(levy_minor, weights) if levy_minor else dict.fromkeys(
            (h for h, _ in weights), 0)
        for holder, share in levy.shares:
            lines.append(LevyLine(levy_id, territory, levy.use, levy.ai_origin, count,
                                  levy.per_use, levy.currency, levy_minor, holder, share,
                                  split[holder]))
    return lines


def iter_lines(pricing: Pricing, holder: str | None = None, territory: str | None = None,
               batch_rows: int = 200_000) -> Iterator[pa.RecordBatch]:
    """The priced lines in statement order (holder, track, territory, use, right,
    version), streamed, optionally for one holder and territory."""
    where, params = _filters(holder, territory)
    yield from pricing.con.sql(f"SELECT * FROM priced {where} ORDER BY {_KEY_COLUMNS}",
                               params=params).to_arrow_reader(batch_rows)


def _filters(holder: str | None, territory: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if holder is not None:
        clauses.append("holder_id = ?")
        params.append(holder)
    if territory is not None:
        clauses.append("territory = ?")
        params.append(territory)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
