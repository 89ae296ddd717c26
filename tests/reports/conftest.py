from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamer.ledger import LedgerLocation
from streamer.reports.parties import Parties, load_parties
from streamer.reports.pricing import Pricing, price
from streamer.reports.rates import RateCard, load_rate_card
from streamer.reports.source import Period, open_snapshot
from tests.reports.fixture import Month, make_month

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
RATES = EXAMPLES / "rates.toml"
PARTIES = EXAMPLES / "parties.toml"


@dataclass
class ClosedMonth:
    month: Month
    location: LedgerLocation
    root: Path


@pytest.fixture(scope="session")
def closed_month(tmp_path_factory: pytest.TempPathFactory) -> ClosedMonth:
    """November 2026, one partition, every day closed (built once: closing is slow)."""
    root = tmp_path_factory.mktemp("reports")
    month = make_month(seed=21, partitions=1)
    location = LedgerLocation(str(root / "ledger"))
    month.close_into(location)
    return ClosedMonth(month, location, root)


@pytest.fixture(scope="session")
def card() -> RateCard:
    return load_rate_card(RATES)


@pytest.fixture(scope="session")
def parties() -> Parties:
    return load_parties(PARTIES)


@pytest.fixture(scope="session")
def pricing(closed_month: ClosedMonth, card: RateCard) -> Pricing:
    snapshot = open_snapshot(closed_month.location, 1, Period.parse("2026-11"))
    return price(snapshot, card)


def copy_ledger(closed: ClosedMonth, target: Path) -> LedgerLocation:
    shutil.copytree(closed.location.url, target)
    return LedgerLocation(str(target))
