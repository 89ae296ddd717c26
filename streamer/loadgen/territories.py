"""Where uses happen: a few large markets and a long tail of small ones.

Short-video music use is concentrated: the largest market alone is about a fifth of
uses, the top five about half, the top 25 some 85 %, and well over a hundred countries
share the rest. ``MARKETS`` gives the large ones explicit weights (rough shares of
monthly active users of the big short-video apps); every other ISO 3166-1 alpha-2 code
in ``TAIL`` gets a weight falling as 1 / (rank + 10) behind them, scaled so that the tail
together is ``TAIL_SHARE`` of all uses. ``LoadConfig.countries`` keeps the first N
territories of that ranking (the default keeps them all: 211).

The country of a use is drawn from the model's main random stream (one draw per use,
as before), so it is deterministic by seed and the same in every sending process.
"""

from __future__ import annotations

from itertools import accumulate

# (ISO 3166-1 alpha-2, weight): the large markets, largest first.
MARKETS: tuple[tuple[str, float], ...] = (
    ("US", 20.0), ("BR", 9.0), ("IN", 9.0), ("ID", 7.0), ("MX", 6.0), ("GB", 4.5),
    ("PH", 3.5), ("DE", 3.5), ("FR", 3.3), ("JP", 3.2), ("TR", 2.8), ("VN", 2.6),
    ("TH", 2.4), ("ES", 2.2), ("NG", 1.8), ("EG", 1.6), ("KR", 1.5), ("IT", 1.5),
    ("CA", 1.4), ("AU", 1.2), ("PK", 1.2), ("SA", 1.1), ("AR", 1.1), ("CO", 1.0),
    ("PL", 0.9))

# Every other territory, roughly by market size: the long tail.
_TAIL_TEXT = """
NL SE ZA MY CL PE RU UA BD KE MA DZ IQ AE RO BE PT CZ GR HU AT CH IL NZ IE DK NO FI SG
HK TW KZ EC GT VE DO BO UY PY CR PA SV HN NI CU JM TT PR GH CI SN CM ET TZ UG ZM ZW AO
MZ MG RW SD TN LY JO LB SY KW QA BH OM YE IR AF UZ AZ GE AM BY MD RS HR SI SK BA MK AL
ME XK BG LT LV EE IS LU MT CY NP LK MM KH LA MN BN FJ PG BT MV BJ BF ML NE TD GN SL LR
TG GA CG CD CF GQ ER DJ SO SS BW NA LS SZ MW MU SC KM CV ST GM GW MR BI HT BS BB LC VC
GD AG DM KN BZ GY SR TL NC PF GU WS TO VU SB KI FM MH PW NR TV AD MC SM LI VA GL FO GI
IM JE GG AW CW SX BM KY VG AI MS TC
"""
TAIL: tuple[str, ...] = tuple(_TAIL_TEXT.split())

TAIL_SHARE = 0.12
# The tail's weights fall as 1 / (rank + TAIL_OFFSET): its largest stays below the
# smallest large market.
TAIL_OFFSET = 10
ALL_TERRITORIES = len(MARKETS) + len(TAIL)


def territory_weights(count: int = ALL_TERRITORIES) -> list[tuple[str, float]]:
    """The first ``count`` territories with their shares of uses (adding up to 1)."""
    if not 1 <= count <= ALL_TERRITORIES:
        raise ValueError(f"countries must be within [1, {ALL_TERRITORIES}], got {count}")
    head = sum(weight for _, weight in MARKETS)
    tail_raw = [1.0 / (rank + TAIL_OFFSET) for rank in range(1, len(TAIL) + 1)]
    tail_scale = head * TAIL_SHARE / (1 - TAIL_SHARE) / sum(tail_raw)
    ranked = [*MARKETS, *((code, w * tail_scale) for code, w in zip(TAIL, tail_raw,
                                                                     strict=True))]
    chosen = ranked[:count]
    total = sum(weight for _, weight in chosen)
    return [(code, weight / total) for code, weight in chosen]


class CountryPicker:
    """A use's country from one uniform draw in [0, 1)."""

    def __init__(self, count: int = ALL_TERRITORIES) -> None:
        weights = territory_weights(count)
        self.names = [code for code, _ in weights]
        self.cumulative = list(accumulate(weight for _, weight in weights))
        self.cumulative[-1] = 1.0  # a draw just below 1 never runs past the last

    def pick(self, u: float) -> str:
        from bisect import bisect

        return self.names[min(bisect(self.cumulative, u), len(self.names) - 1)]
