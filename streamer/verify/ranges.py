"""Date-range answers of the query API against ground truth, over HTTP.

For each id asked about (tracks, holders, genres), with ``from``/``to`` over the given
days:

* the ``by=territory`` answer's territories = the truth's ledger rows of those days;
* its totals = the plain answer's totals (no ``by``) = the sum over its territories;
* the range's answer = the sum of its days' one-day answers (totals and territories);
* each day's one-day range answer (from the ledger once the day is complete there) =
  its ``window=1d`` answer (always from Redis): the same whoever serves the day.

The truth is what ``GroundTruth.expected_ledger`` gives (per day, country), which the
API must answer whether Redis or the ledger serves a day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import aiohttp

CounterKey = tuple[Any, ...]
ROUTES = {"track": "/v1/tracks/{}/usage", "holder": "/v1/holders/{}/usage",
          "genre": "/v1/genres/{}/usage"}
COUNTS = {"track": "uses", "holder": "rights", "genre": "uses_by_origin"}


def _flat(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Nested dicts of ints as ``{path: value}`` without zeros."""
    if isinstance(value, Mapping):
        out: dict[tuple[str, ...], int] = {}
        for name, inner in value.items():
            out.update(_flat(inner, (*prefix, str(name))))
        return out
    return {prefix: int(value)} if int(value) else {}


def expected_answer(kind: str, key: str, rows: Mapping[CounterKey, int],
                    days: Iterable[date]) -> tuple[dict[tuple[str, ...], int],
                                                   dict[tuple[str, ...], int]]:
    """(totals, territories) of one id over ``days``, flattened, from ledger-shaped rows."""
    starts = {int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1000
              for d in days}
    totals: Counter[tuple[str, ...]] = Counter()
    territories: Counter[tuple[str, ...]] = Counter()
    table = {"track": "tracks", "holder": "holders", "genre": "genres"}[kind]
    for row, value in rows.items():
        if row[0] != table or row[1] not in starts or row[2] != key:
            continue
        if kind == "track":
            _, _, _, country, use = row
            path: tuple[str, ...] = (use,)
        elif kind == "holder":
            _, _, _, right, use, country, measure = row
            path = (right, measure, use)
        else:
            _, _, _, origin, use, country = row
            path = (origin, use)
        totals[path] += value
        territories[(country, *path)] += value
    return +totals, +territories


@dataclass(slots=True)
class RangeCheck:
    answers: int = 0            # HTTP answers compared
    ids: int = 0
    closed_days: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_ranges(base_url: str, rows: Mapping[CounterKey, int], days: Sequence[date],
                       ids: Mapping[str, Iterable[str]], *, token: str | None = None,
                       timeout_s: float = 60.0, redis_days: bool = True) -> RangeCheck:
    """Ask the API about every id in ``ids`` ({"track": [...], "holder": [...], "genre":
    [...]}) over ``days`` (consecutive UTC days) and check the answers (module docstring).
    With ``redis_days`` each day's ``window=1d`` answer too, which Redis serves (its
    territory counters stay a grace after the day is in the ledger)."""
    check = RangeCheck()
    first, last = days[0].isoformat(), days[-1].isoformat()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    session_timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=session_timeout, headers=headers) as session:

        async def get(kind: str, key: str, params: dict[str, str]) -> dict[str, Any]:
            url = base_url.rstrip("/") + ROUTES[kind].format(key)
            async with session.get(url, params=params) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise AssertionError(f"{url} {params}: {response.status} {body}")
                check.answers += 1
                return dict(body)

        for kind, keys in ids.items():
            for key in keys:
                check.ids += 1
                name = f"{kind} {key} {first}..{last}"
                body = await get(kind, key, {"from": first, "to": last, "by": "territory"})
                plain = await get(kind, key, {"from": first, "to": last})
                totals, territories = _flat(body[COUNTS[kind]]), _flat(body["territories"])
                check.closed_days[name] = int(body.get("closed_days", -1))
                want_totals, want_territories = expected_answer(kind, key, rows, days)
                if territories != want_territories:
                    diff = sorted(k for k in territories.keys() | want_territories.keys()
                                  if territories.get(k, 0) != want_territories.get(k, 0))
                    check.problems.append(
                        f"{name}: territories differ from the truth in {len(diff)} counts, "
                        "e.g. " + ", ".join(f"{k}: api {territories.get(k, 0)}, truth "
                                            f"{want_territories.get(k, 0)}" for k in diff[:3]))
                if totals != want_totals:
                    check.problems.append(f"{name}: totals {totals} != truth {want_totals}")
                if _flat(plain[COUNTS[kind]]) != totals:
                    check.problems.append(f"{name}: by=territory totals != plain totals")
                summed: Counter[tuple[str, ...]] = Counter()
                for path, value in territories.items():
                    summed[path[1:]] += value
                if +summed != totals:
                    check.problems.append(f"{name}: totals != the sum over territories")
                day_totals: Counter[tuple[str, ...]] = Counter()
                day_territories: Counter[tuple[str, ...]] = Counter()
                for day in days:
                    one = await get(kind, key, {"from": day.isoformat(), "to": day.isoformat(),
                                                "by": "territory"})
                    day_totals.update(_flat(one[COUNTS[kind]]))
                    day_territories.update(_flat(one["territories"]))
                    if redis_days:
                        # The day's 1d window: always Redis' territory counters.
                        start = int(datetime(day.year, day.month, day.day,
                                             tzinfo=UTC).timestamp()) * 1000
                        window = await get(kind, key, {"window": "1d", "at": str(start),
                                                       "by": "territory"})
                        if (_flat(window[COUNTS[kind]]), _flat(window["territories"])) != (
                                _flat(one[COUNTS[kind]]), _flat(one["territories"])):
                            check.problems.append(
                                f"{kind} {key} {day}: the 1d window (Redis) != the one-day "
                                f"range ({one.get('closed_days')} closed day)")
                if +day_totals != totals or +day_territories != territories:
                    check.problems.append(f"{name}: the range's answer != the sum of its days")
    return check
