"""Statements against ground truth computed event by event from the generated month, with
the example card's prices applied by hand (not through rates.resolve)."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import pytest

from streamer.reports.parties import Parties
from streamer.reports.pricing import Pricing
from streamer.reports.statements import CSV_COLUMNS, write_statements
from tests.reports.conftest import ClosedMonth

MICRO = 1_000_000
CENT = Decimal("0.01")


def price_of(territory: str, use: str, right: str, origin: str) -> tuple[str, Any]:
    """The example card (deploy/examples/rates.toml) written out as plain rules."""
    if right == "master" and use == "play":
        if territory == "DE":
            return "rate", Decimal("0.0006") if origin == "ai_generated" else Decimal("0.0024")
        return "rate", Decimal("0.0018")
    if use == "create":
        return "rate", Decimal("0.00375") if right == "master" else Decimal("0.00025")
    return ("pool", ("pool#2", 41000)) if territory == "DE" else ("pool", ("pool#1", 125000))


def expected_lines(closed: ClosedMonth) -> dict[tuple[str, ...], tuple[int, int, int]]:
    """(holder, track, territory, use, right, version) -> (uses, weighted_micro, cents)."""
    truth = closed.month.holder_lines()
    origin_of: dict[str, str] = {}
    for event in closed.month.events:
        if event.entry is not None and event.entry.ai_origin is not None:
            origin_of[event.entry.version] = event.entry.ai_origin
    amounts: dict[tuple[str, ...], int] = {}
    pools: dict[str, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
    key: tuple[str, ...]
    totals: dict[str, int] = {}
    for key, (_, weighted) in truth.items():
        _, _, territory, use, right, version = key
        kind, what = price_of(territory, use, right, origin_of.get(version, "unknown"))
        if kind == "rate":
            amount = (Decimal(weighted) / MICRO * what).quantize(CENT, ROUND_HALF_EVEN)
            amounts[key] = int(amount / CENT)
        else:
            pools[what[0]].append((key, weighted))
            totals[what[0]] = what[1]
    for pool, members in pools.items():
        total = totals[pool]
        denominator = sum(w for _, w in members)
        quotas = {key: Fraction(total * w, denominator) for key, w in members}
        floors = {key: int(q) for key, q in quotas.items()}
        order = sorted(quotas, key=lambda k: (-(quotas[k] - floors[k]), k))
        for key in order[:total - sum(floors.values())]:
            floors[key] += 1
        amounts.update(floors)
    return {key: (uses, weighted, amounts[key]) for key, (uses, weighted) in truth.items()}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def written(pricing: Pricing, parties: Parties,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("statements")
    write_statements(pricing, parties, out)
    return out


def all_lines(out: Path) -> dict[tuple[str, ...], dict[str, str]]:
    lines = {}
    for path in sorted(out.glob("statement_*.csv")):
        for row in read_csv(path):
            key = tuple(row[c] for c in CSV_COLUMNS[:6])
            assert key not in lines
            lines[key] = row
    return lines


def test_every_line_matches_ground_truth(closed_month: ClosedMonth, written: Path) -> None:
    expected = expected_lines(closed_month)
    lines = all_lines(written)
    assert set(lines) == set(expected)
    for key, (uses, weighted, cents) in expected.items():
        row = lines[key]
        assert int(row["uses"]) == uses, key
        assert Decimal(row["weighted_uses"]) * MICRO == weighted, key
        assert Decimal(row["amount"]) == Decimal(cents) * CENT, key


def test_each_pool_adds_up_to_its_amount_exactly(written: Path) -> None:
    by_pool: dict[str, Decimal] = defaultdict(Decimal)
    for row in all_lines(written).values():
        if row["basis"] == "pool":
            by_pool[row["entry"]] += Decimal(row["amount"])
    assert by_pool == {"pool#1": Decimal("1250.00"), "pool#2": Decimal("410.00")}
    manifest = json.loads((written / "statements_2026-11.manifest.json").read_text())
    assert manifest["pools"]["pool#1"]["allocated"] == "1250.00"


def test_holder_uses_equal_the_ledgers_holder_rows(closed_month: ClosedMonth,
                                                   written: Path) -> None:
    """Per holder, right, use and territory: the statement's uses and weighted uses = the
    ledger's holder rows (read here straight from the Delta table)."""
    con = duckdb.connect()
    con.register("h", closed_month.location.open("holders").to_pyarrow_dataset())
    ledger = {(h, r, u, c): (int(n), int(w)) for h, r, u, c, n, w in con.execute(
        "SELECT holder_id, \"right\", use, country, sum(uses), sum(weighted_micro) FROM h "
        "WHERE day BETWEEN DATE '2026-11-01' AND DATE '2026-11-30' GROUP BY ALL").fetchall()}
    stated: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in all_lines(written).values():
        cell = stated[(row["holder_id"], row["right"], row["use"], row["territory"])]
        cell[0] += int(row["uses"])
        cell[1] += int(Decimal(row["weighted_uses"]) * MICRO)
    assert {k: tuple(v) for k, v in stated.items()} == ledger


def test_summary_totals_are_the_sum_of_lines(written: Path) -> None:
    for path in written.glob("statement_*.json"):
        summary = json.loads(path.read_text())
        rows = read_csv(written / summary["csv"]["file"])
        total = sum((Decimal(r["amount"]) for r in rows), Decimal("0.00"))
        assert Decimal(summary["total"]["amount"].get("EUR", "0")) == total
        assert summary["total"]["uses"] == sum(int(r["uses"]) for r in rows)
        for name, column in (("by_territory", "territory"), ("by_right", "right"),
                             ("by_use", "use"), ("by_ai_origin", "ai_origin")):
            assert sum(g["uses"] for g in summary[name].values()) == summary["total"]["uses"]
            for key, group in summary[name].items():
                assert Decimal(group["amount"]["EUR"]) == sum(
                    (Decimal(r["amount"]) for r in rows if r[column] == key), Decimal(0))
        levies = sum((Decimal(x["amount"]) for x in summary["levies"]), Decimal(0))
        assert Decimal(summary["payable"].get("EUR", "0")) == total + levies


def test_levies_follow_the_card(closed_month: ClosedMonth, written: Path) -> None:
    ai_generated: dict[str, int] = defaultdict(int)
    assisted_creates_de = 0
    for e in closed_month.month.events:
        if e.entry and e.entry.ai_origin == "ai_generated":
            ai_generated[e.country] += 1
        if e.entry and e.entry.ai_origin == "ai_assisted" and e.use == "create" and (
                e.country == "DE"):
            assisted_creates_de += 1
    gema = json.loads((written / "statement_cmo-gema_2026-11.json").read_text())
    sacem = json.loads((written / "statement_cmo-sacem_2026-11.json").read_text())
    for country, uses in ai_generated.items():
        levy = (Decimal(uses) * Decimal("0.0005")).quantize(CENT, ROUND_HALF_EVEN)
        mine = [x for x in gema["levies"] if x["territory"] == country and x["levy"] == "levy#1"]
        theirs = [x for x in sacem["levies"] if x["territory"] == country]
        assert mine[0]["uses"] == uses and Decimal(mine[0]["levy_amount"]) == levy
        assert Decimal(mine[0]["amount"]) + Decimal(theirs[0]["amount"]) == levy
    de = [x for x in gema["levies"] if x["levy"] == "levy#2"]
    assert de[0]["uses"] == assisted_creates_de
    assert gema["party"] == "known" and gema["lines"] == 0


def test_unknown_holders_are_reported_not_dropped(written: Path) -> None:
    manifest = json.loads((written / "statements_2026-11.manifest.json").read_text())
    assert manifest["unknown_holders"] == ["indie", "mystery\tholder"]
    summary = json.loads((written / "statement_mystery%09holder_2026-11.json").read_text())
    assert summary["party"] == "unknown" and summary["lines"] > 0
    residual = json.loads((written / "statement__unclaimed_2026-11.json").read_text())
    assert residual["party"] == "residual"


def test_outputs_name_the_ledger_versions(written: Path, pricing: Pricing) -> None:
    summary = json.loads((written / "statement_label-a_2026-11.json").read_text())
    assert summary["ledger"]["versions"] == pricing.snapshot.versions
    assert set(summary["ledger"]["versions"]) == {"attributions", "catalog", "closes",
                                                   "holders", "tracks"}
    assert summary["provisional"] is False and summary["rate_card"]["file"] == "rates.toml"


def test_one_holder_and_territory(pricing: Pricing, parties: Parties, written: Path,
                                  tmp_path: Path) -> None:
    write_statements(pricing, parties, tmp_path, holder="label-a", territory="DE")
    rows = read_csv(tmp_path / "statement_label-a_2026-11_DE.csv")
    everything = read_csv(written / "statement_label-a_2026-11.csv")
    assert rows == [r for r in everything if r["territory"] == "DE"]  # same pool shares
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "statement_label-a_2026-11_DE.csv", "statement_label-a_2026-11_DE.json",
        "statements_2026-11_DE_label-a.manifest.json"]


def test_csv_is_plain_rfc4180(written: Path) -> None:
    text = (written / "statement_mystery%09holder_2026-11.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_COLUMNS)
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    assert rows[1][0] == "mystery\tholder"
