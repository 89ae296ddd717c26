"""Royalty statements: per holder a CSV of priced lines and a JSON summary.

The CSV has one line per track, territory, use, right and catalog version (uses, weighted
uses, share, the rate or pool that priced it, amount); the JSON sums them per territory,
use, right and ai_origin, lists levies separately and names the ledger table versions,
rate card and party registry it was built from. Files carry no clock reading: the same
inputs give byte-identical files. A run also writes a manifest: every file with its
SHA-256, unknown holders, pools (amount, weighted uses, allocated), unpriced uses.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from streamer.reports.money import format_micro, format_minor, to_minor
from streamer.reports.parties import RESIDUAL_HOLDERS, Parties
from streamer.reports.pricing import LINE_KEY, Pricing, _filters

FORMAT = 1
CSV_COLUMNS = ("holder_id", "track_id", "territory", "use", "right", "catalog_version",
               "ai_origin", "share_percent", "uses", "weighted_uses", "basis", "entry",
               "per_use_rate", "pool_weighted_uses", "currency", "amount")

_MICRO_TEXT = "(({x}) // 1000000)::VARCHAR || '.' || lpad((({x}) % 1000000)::VARCHAR, 6, '0')"
_CSV_SQL = f"""
SELECT {', '.join(f'"{c}"' for c in LINE_KEY)}, ai_origin,
       (share_micro // 10000)::VARCHAR
         || CASE WHEN share_micro % 10000 = 0 THEN ''
                 ELSE '.' || rtrim(lpad((share_micro % 10000)::VARCHAR, 4, '0'), '0') END
         AS share_percent,
       uses, {_MICRO_TEXT.format(x='weighted_micro')} AS weighted_uses,
       CASE kind WHEN 'rate' THEN 'per_use' WHEN 'pool' THEN 'pool' ELSE 'unpriced' END
         AS basis,
       coalesce(entry_id, '') AS entry, coalesce(rate_text, '') AS per_use_rate,
       CASE WHEN pool_weighted IS NULL THEN ''
            ELSE {_MICRO_TEXT.format(x='pool_weighted')} END AS pool_weighted_uses,
       currency,
       CASE WHEN unit = 1 THEN amount_minor::VARCHAR
            ELSE (amount_minor // unit)::VARCHAR || '.'
                 || lpad((amount_minor % unit)::VARCHAR,
                         (length(unit::VARCHAR) - 1)::INTEGER, '0') END
         AS amount
FROM priced {{where}} ORDER BY {', '.join(f'"{c}"' for c in LINE_KEY)}
"""


def file_stem(holder_id: str, period: str, territory: str | None, provisional: bool) -> str:
    """``statement_<holder>_<period>[_<territory>][_provisional]``; the holder id is
    percent-encoded (any character but letters, digits, '-', '.' and '_')."""
    parts = ["statement", urllib.parse.quote(holder_id, safe=""), period]
    if territory:
        parts.append(territory)
    if provisional:
        parts.append("provisional")
    return "_".join(parts)


@dataclass(slots=True)
class StatementsRun:
    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)
    """File name -> SHA-256."""
    holders: list[str] = field(default_factory=list)
    unknown_holders: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)


def _group(uses: int = 0, weighted: int = 0) -> dict[str, Any]:
    return {"uses": uses, "weighted_micro": weighted, "amount": {}}


def summaries(pricing: Pricing, parties: Parties, holders: Iterable[str] | None = None,
              territory: str | None = None) -> dict[str, dict[str, Any]]:
    """holder -> its statement summary (the JSON file's content, without file names)."""
    where, params = _filters(None, territory)
    rows = pricing.con.execute(f"""
        SELECT holder_id, territory, use, "right", ai_origin, currency,
               GROUPING(territory, use, "right", ai_origin) AS g,
               sum(uses)::BIGINT, sum(weighted_micro)::HUGEINT, sum(amount_minor)::HUGEINT,
               count(*)
        FROM priced {where}
        GROUP BY GROUPING SETS ((holder_id, currency), (holder_id, territory, currency),
                                (holder_id, use, currency), (holder_id, "right", currency),
                                (holder_id, ai_origin, currency))
        ORDER BY ALL""", params).fetchall()
    wanted = None if holders is None else set(holders)
    groups: dict[str, dict[str, Any]] = {}
    for holder, terr, use, right, origin, currency, g, uses, weighted, amount, count in rows:
        if wanted is not None and holder not in wanted:
            continue
        entry = groups.setdefault(holder, {"total": _group(), "lines": 0, "by_territory": {},
                                           "by_use": {}, "by_right": {}, "by_ai_origin": {}})
        # GROUPING's bits: territory 8, use 4, right 2, ai_origin 1 (1 = rolled up).
        name, key = {15: ("total", None), 7: ("by_territory", terr), 11: ("by_use", use),
                     13: ("by_right", right), 14: ("by_ai_origin", origin)}[g]
        target = entry[name] if key is None else entry[name].setdefault(key, _group())
        target["uses"] += int(uses)
        target["weighted_micro"] += int(weighted)
        target["amount"][currency] = format_minor(int(amount), currency)
        if key is None:
            entry["lines"] += int(count)
    out = {}
    for holder in sorted(pricing.holders if wanted is None else wanted):
        body = groups.get(holder) or {"total": _group(), "lines": 0, "by_territory": {},
                                      "by_use": {}, "by_right": {}, "by_ai_origin": {}}
        out[holder] = _summary(pricing, parties, holder, territory, body)
    return out


def _summary(pricing: Pricing, parties: Parties, holder: str, territory: str | None,
             body: dict[str, Any]) -> dict[str, Any]:
    party = parties.get(holder)
    levies = pricing.levies_of(holder, territory)
    levy_total: dict[str, int] = {}
    for line in levies:
        levy_total[line.currency] = levy_total.get(line.currency, 0) + line.amount_minor
    payable: dict[str, int] = dict(levy_total)
    for currency, text in body["total"]["amount"].items():
        payable[currency] = payable.get(currency, 0) + _minor(text, currency)

    def shown(group: dict[str, Any]) -> dict[str, Any]:
        return {"uses": group["uses"], "weighted_uses": format_micro(group["weighted_micro"]),
                "amount": dict(sorted(group["amount"].items()))}

    return {
        "kind": "streamer.statement", "format": FORMAT,
        "holder_id": holder, "name": party.name if party else holder,
        "dpid": party.dpid if party else None,
        "party": "known" if party else ("residual" if holder in RESIDUAL_HOLDERS
                                        else "unknown"),
        "period": pricing.snapshot.period.text, "territory": territory,
        "provisional": pricing.snapshot.provisional,
        "lines": body["lines"],
        "total": shown(body["total"]),
        **{name: {key: shown(group) for key, group in sorted(body[name].items())}
           for name in ("by_territory", "by_use", "by_right", "by_ai_origin")},
        "levies": [{"levy": line.levy_id, "territory": line.territory,
                    "use": line.use or "*", "ai_origin": line.ai_origin, "uses": line.uses,
                    "per_use": str(line.per_use), "currency": line.currency,
                    "levy_amount": format_minor(line.levy_minor, line.currency),
                    "share": str(line.share),
                    "amount": format_minor(line.amount_minor, line.currency)}
                   for line in levies],
        "levy_total": {c: format_minor(m, c) for c, m in sorted(levy_total.items())},
        "payable": {c: format_minor(m, c) for c, m in sorted(payable.items())},
        "ledger": pricing.snapshot.manifest(),
        "rate_card": {"file": os.path.basename(pricing.card.path),
                      "sha256": pricing.card.sha256},
        "parties": {"file": os.path.basename(parties.path), "sha256": parties.sha256},
    }


def _minor(text: str, currency: str) -> int:
    return to_minor(Decimal(text), currency)


def _dump(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_statements(pricing: Pricing, parties: Parties, out_dir: str | Path,
                     holder: str | None = None, territory: str | None = None) -> StatementsRun:
    """Write the statements of every holder (or one) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    snapshot = pricing.snapshot
    period, provisional = snapshot.period.text, snapshot.provisional
    run = StatementsRun(out)
    wanted = [holder] if holder is not None else None
    # Every holder with lines in the period gets a statement, empty in a territory
    # where it has none.
    bodies = summaries(pricing, parties, wanted, territory)
    csv_digests = _write_csvs(pricing, out, holder, territory, period, provisional, bodies)
    for name, body in sorted(bodies.items()):
        stem = file_stem(name, period, territory, provisional)
        csv_name, digest = csv_digests[name]
        body = {**body, "csv": {"file": csv_name, "sha256": digest}}
        data = _dump(body)
        (out / f"{stem}.json").write_bytes(data)
        run.files[csv_name] = digest
        run.files[f"{stem}.json"] = hashlib.sha256(data).hexdigest()
        run.holders.append(name)
    run.unknown_holders = parties.unknown(pricing.holders)
    run.manifest = {
        "kind": "streamer.statements_run", "format": FORMAT, "period": period,
        "territory": territory, "holder": holder, "provisional": provisional,
        "ledger": snapshot.manifest(),
        "rate_card": {"file": os.path.basename(pricing.card.path),
                      "sha256": pricing.card.sha256},
        "parties": {"file": os.path.basename(parties.path), "sha256": parties.sha256},
        "unknown_holders": run.unknown_holders,
        "unpriced_uses": pricing.unpriced_uses,
        "pools": {p.entry_id: {"currency": p.currency,
                               "amount": format_minor(p.amount_minor, p.currency),
                               "allocated": format_minor(p.allocated_minor, p.currency),
                               "weighted_uses": format_micro(p.weighted_micro),
                               "lines": p.lines}
                  for p in pricing.pools.values()},
        "files": dict(sorted(run.files.items())),
    }
    manifest_name = "_".join(["statements", period, *([territory] if territory else []),
                              *([urllib.parse.quote(holder, safe="")] if holder else []),
                              *(["provisional"] if provisional else [])]) + ".manifest.json"
    (out / manifest_name).write_bytes(_dump(run.manifest))
    return run


def _write_csvs(pricing: Pricing, out: Path, holder: str | None, territory: str | None,
                period: str, provisional: bool,
                bodies: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """One ordered pass over the lines, split into a file per holder."""
    where, params = _filters(holder, territory)
    reader = pricing.con.sql(_CSV_SQL.format(where=where), params=params).to_arrow_reader(
        200_000)
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    header = (",".join(CSV_COLUMNS) + "\n").encode()
    digests: dict[str, tuple[str, str]] = {}
    current: str | None = None
    handle: Any = None
    hasher: Any = None

    def finish() -> None:
        if current is not None:
            handle.close()
            name = f"{file_stem(current, period, territory, provisional)}.csv"
            digests[current] = (name, hasher.hexdigest())

    class _Hashing:
        def __init__(self, path: Path) -> None:
            self.file = open(path, "wb")  # noqa: SIM115
            self.hash = hashlib.sha256()

        def write(self, data: bytes) -> int:
            self.hash.update(data)
            return self.file.write(data)

        def close(self) -> None:
            self.file.close()

    for batch in reader:
        holders = batch.column(0)
        cuts = [0]
        if batch.num_rows > 1:
            changed = pc.not_equal(holders.slice(1), holders.slice(0, batch.num_rows - 1))
            cuts += [int(i) + 1 for i in pc.indices_nonzero(changed).to_pylist()]
        cuts.append(batch.num_rows)
        for start, stop in itertools.pairwise(cuts):
            if start == stop:
                continue
            name = holders[start].as_py()
            if name != current:
                finish()
                current = name
                stem = file_stem(name, period, territory, provisional)
                handle = _Hashing(out / f"{stem}.csv")
                hasher = handle.hash
                handle.write(header)
            sink = pa.BufferOutputStream()
            pacsv.write_csv(pa.Table.from_batches([batch.slice(start, stop - start)]), sink,
                            options)
            handle.write(sink.getvalue().to_pybytes())
    finish()
    for name in bodies:
        if name not in digests:  # no lines: a header-only CSV
            stem = file_stem(name, period, territory, provisional)
            (out / f"{stem}.csv").write_bytes(header)
            digests[name] = (f"{stem}.csv", hashlib.sha256(header).hexdigest())
    return digests


def holder_statement(pricing: Pricing, parties: Parties, holder: str,
                     territory: str | None = None) -> dict[str, Any]:
    """The summary ``GET /v1/holders/{id}/statement`` answers (no file names)."""
    return summaries(pricing, parties, [holder], territory)[holder]
