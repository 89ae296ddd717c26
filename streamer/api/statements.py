"""``GET /v1/holders/{id}/statement``: a holder's statement summary, from the ledger.

The answer is what ``streamer report statements`` writes as the holder's JSON summary
(docs/STATEMENTS.md), computed from the closed days of the ledger, never from Redis.
Pricing a month is seconds of synchronous DuckDB work, so it runs in a thread, and the
priced month is kept: the answer is a pure function of the period, the ledger table
versions, the rate card and the parties, which is what the cache is keyed on. A new
ledger commit or an edited rate card changes the key, so nothing stale is served.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from streamer.ledger.writer import LedgerLocation
from streamer.reports.parties import PartiesError, load_parties
from streamer.reports.pricing import LedgerMismatch, Pricing, price
from streamer.reports.rates import RateCard, RateCardError, load_rate_card
from streamer.reports.source import (
    Period,
    PeriodNotClosed,
    ReportInputError,
    Snapshot,
    open_snapshot,
)

PRICED_MONTHS_KEPT = 2
"""Priced months kept (each holds a DuckDB working file of the month's lines)."""
ANSWERS_KEPT = 1024


class StatementError(Exception):
    """A request the statement endpoint answers with an error: status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"])
        self.status = status
        self.body = body


@dataclass(slots=True)
class _Priced:
    pricing: Pricing
    lock: threading.Lock  # one DuckDB connection: one query at a time


class StatementService:
    """Answers statement summaries; ``rates_file`` and ``parties_file`` None: 503."""

    def __init__(self, location: LedgerLocation, partitions: int, rates_file: str | None,
                 parties_file: str | None) -> None:
        self.location = location
        self.partitions = partitions
        self.rates_file = rates_file
        self.parties_file = parties_file
        self._priced: OrderedDict[tuple[Any, ...], _Priced] = OrderedDict()
        self._answers: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    async def statement(self, holder_id: str, period_text: str, territory: str | None,
                        provisional: bool) -> dict[str, Any]:
        if self.rates_file is None or self.parties_file is None:
            missing = [name for name, value in (("STREAMER_RATES_FILE", self.rates_file),
                                                ("STREAMER_PARTIES_FILE", self.parties_file))
                       if value is None]
            raise StatementError(503, {"error": f"statements are not configured: set "
                                                f"{' and '.join(missing)}"})
        try:
            period = Period.parse(period_text)
        except ReportInputError:
            raise StatementError(400, {"error": f"period: expected a month YYYY-MM, got "
                                                f"{period_text[:40]!r}"}) from None
        return await asyncio.to_thread(self._answer, holder_id, period, territory, provisional)

    def _answer(self, holder_id: str, period: Period, territory: str | None,
                provisional: bool) -> dict[str, Any]:
        from streamer.reports.statements import holder_statement

        assert self.rates_file is not None and self.parties_file is not None
        try:
            card = load_rate_card(self.rates_file)
            parties = load_parties(self.parties_file)
        except (RateCardError, PartiesError) as exc:
            raise StatementError(503, {"error": f"statements are misconfigured: {exc}"}) \
                from None
        try:
            snapshot = open_snapshot(self.location, self.partitions, period, provisional)
        except PeriodNotClosed as exc:
            raise StatementError(409, {
                "error": f"period {period.text} has days not closed by every partition; "
                         "ask with provisional=true to get a provisional statement",
                "days": [{"day": day.isoformat(), "state": state,
                          "missing_partitions": list(missing)}
                         for day, state, missing in exc.days]}) from None
        except ReportInputError as exc:
            raise StatementError(503, {"error": f"the ledger cannot be read: {exc}"}) from None
        versions = tuple(sorted(snapshot.versions.items()))
        month = (period.text, versions, provisional, card.sha256)
        key = (*month, parties.sha256, holder_id, territory)
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
        priced = self._pricing(month, snapshot, card)
        with priced.lock:
            answer = holder_statement(priced.pricing, parties, holder_id, territory)
        with self._lock:
            self._answers[key] = answer
            while len(self._answers) > ANSWERS_KEPT:
                self._answers.popitem(last=False)
        return answer

    def _pricing(self, month: tuple[Any, ...], snapshot: Snapshot, card: RateCard) -> _Priced:
        with self._lock:
            found = self._priced.get(month)
            if found is not None:
                self._priced.move_to_end(month)
                return found
        try:
            pricing = price(snapshot, card)
        except LedgerMismatch as exc:
            raise StatementError(500, {"error": f"the ledger is inconsistent: {exc}"}) from None
        except ReportInputError as exc:
            raise StatementError(404, {"error": str(exc)}) from None
        priced = _Priced(pricing, threading.Lock())
        with self._lock:
            if month in self._priced:  # another request priced it meanwhile
                pricing.close()
                return self._priced[month]
            self._priced[month] = priced
            while len(self._priced) > PRICED_MONTHS_KEPT:
                _, old = self._priced.popitem(last=False)
                with old.lock:
                    old.pricing.close()
        return priced

    def close(self) -> None:
        with self._lock:
            for priced in self._priced.values():
                priced.pricing.close()
            self._priced.clear()
