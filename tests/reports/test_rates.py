"""Rate cards and the party registry: what validates, what is refused and how it is named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from streamer.reports.parties import PartiesError, load_parties, parse_parties
from streamer.reports.rates import RateCardError, load_rate_card, parse_rate_card
from tests.reports.conftest import PARTIES, RATES

RATE = {"period": "2026-11", "territory": "*", "use": "play", "right": "master",
        "per_use": "0.002"}


def card(**parts: object) -> dict[str, object]:
    return {"currency": "EUR", **parts}


def problems(document: dict[str, object]) -> list[str]:
    with pytest.raises(RateCardError) as info:
        parse_rate_card(document, "cards/r.toml")
    assert str(info.value).startswith("cards/r.toml: ")
    return info.value.problems


def test_the_example_card_validates_and_resolves_by_precedence() -> None:
    rates = load_rate_card(RATES)
    assert len(rates.sha256) == 64
    def entry_id(territory: str, right: str, origin: str | None) -> str | None:
        entry = rates.resolve("2026-11", territory, "play", right, origin)
        return entry.entry_id if entry else None

    # A specific territory beats the default; then a specific ai_origin beats none.
    assert entry_id("DE", "master", "ai_generated") == "rate#3"
    assert entry_id("DE", "master", "human") == "rate#2"
    assert entry_id("US", "master", "ai_generated") == "rate#1"
    assert entry_id("FR", "publishing", None) == "pool#1"
    assert rates.resolve("2026-12", "DE", "play", "master", None) is None
    levy = rates.resolve_levy("2026-11", "DE", "create", "ai_assisted")
    assert levy is not None and levy.shares == (("cmo-gema", Decimal(1)),)
    assert rates.resolve_levy("2026-11", "DE", "play", "ai_assisted") is None
    assert rates.resolve_levy("2026-11", "BR", "play", "human") is None


def test_every_problem_is_named_with_its_entry_and_rule() -> None:
    found = problems(card(
        rate=[{**RATE, "per_use": 0.002},                      # a float
              {**RATE, "territory": "Germany"},
              {**RATE, "use": "listen", "colour": "red"}],
        pool=[{**RATE, "per_use": None, "amount": "10.001"} | {"per_use": "1"}],
        levy=[{"period": "2026-11", "territory": "*", "ai_origin": "human",
               "per_use": "0.1", "shares": {"a": "0.5", "b": "0.4"}}],
        extra=1))
    text = "\n".join(found)
    assert "unknown key 'extra'" in text
    assert "[[rate]] #1: per_use: write it as a decimal string" in text
    assert "[[rate]] #2: territory: 'Germany' is not an ISO 3166-1 alpha-2 code" in text
    assert "[[rate]] #3: unknown key 'colour'" in text
    assert "[[rate]] #3: use: 'listen' is not one of create, play" in text
    assert "[[pool]] #1: unknown key 'per_use'" in text
    assert "[[levy]] #1: ai_origin: 'human' is not one of ai_assisted, ai_generated" in text
    assert "[[levy]] #1: shares: add up to 0.9, not exactly 1" not in text  # entry already bad


def test_pool_amounts_must_fit_the_minor_unit() -> None:
    found = problems(card(pool=[{**{k: v for k, v in RATE.items() if k != "per_use"},
                                 "amount": "10.001"}]))
    assert found == ["[[pool]] #1: amount: 10.001 has more than 2 decimals, the minor unit of "
                     "EUR"]


def test_levy_shares_must_add_up_to_one() -> None:
    found = problems(card(levy=[{"period": "2026-11", "territory": "*",
                                 "ai_origin": "ai_generated", "per_use": "0.1",
                                 "shares": {"a": "0.5", "b": "0.4"}}]))
    assert found == ["[[levy]] #1: shares: add up to 0.9, not exactly 1"]


def test_ambiguous_entries_are_refused() -> None:
    pool = {k: v for k, v in RATE.items() if k != "per_use"} | {"amount": "5"}
    found = problems(card(rate=[RATE], pool=[pool]))
    assert found == ["[[pool]] #1: same period, territory, use, right and ai_origin as "
                     "[[rate]] #1 (which one applies would be ambiguous)"]


def test_one_currency_per_period_and_territory() -> None:
    found = problems(card(rate=[RATE, {**RATE, "territory": "US", "right": "publishing",
                                       "currency": "USD"}]))
    assert len(found) == 1 and "currency USD differs from the default territory's EUR" in found[0]


def test_files_that_are_not_toml_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("currency = \n")
    with pytest.raises(RateCardError, match=r"bad.toml: not valid TOML"):
        load_rate_card(path)
    with pytest.raises(RateCardError, match=r"missing.toml: cannot read"):
        load_rate_card(tmp_path / "missing.toml")


def test_parties() -> None:
    registry = load_parties(PARTIES)
    assert registry.sender.rights_type("publishing") == "MechanicalRight"
    pub = registry.get("pub-x")
    assert pub is not None and pub.receives_dsr("DE") and not pub.receives_dsr("US")
    assert registry.unknown(["pub-x", "ghost", "_unclaimed"]) == ["ghost"]
    with pytest.raises(PartiesError) as info:
        parse_parties({"sender": {"dpid": "X", "name": "S", "service": "a_b"},
                       "party": [{"holder_id": "h", "dsr": True},
                                 {"holder_id": "h", "dpid": "PADPIDA1"},
                                 {"holder_id": "_unclaimed"}]}, "p.toml")
    text = "\n".join(info.value.problems)
    assert "[sender]: dpid 'X' is not a DDEX party id" in text
    assert "[sender]: service 'a_b' must be letters, digits and '-'" in text
    assert "[[party]] #1: dsr = true needs a dpid" in text
    assert "[[party]] #2: holder_id 'h' listed twice" in text
    assert "[[party]] #3: _unclaimed is the ledger's residual holder" in text
