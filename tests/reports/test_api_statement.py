"""``GET /v1/holders/{id}/statement`` over real HTTP, on a real closed ledger month.

The figures are checked against ground truth computed event by event from the generated
month (tests/reports/test_statements.py's ``expected_lines``), the bodies against
docs/openapi.yaml.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from streamer import client as api_client
from streamer.api.queries import UsageQueries
from streamer.api.statements import StatementService
from streamer.api.views import register_routes
from streamer.config import load_settings
from streamer.metrics import Metrics
from streamer.state.keys import KeyLayout
from tests.integration.test_openapi_contract import validate
from tests.reports.conftest import PARTIES, RATES, ClosedMonth
from tests.reports.test_statements import expected_lines

ROUTE = "/v1/holders/{holder_id}/statement"


class _Web:
    def json(self, body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status, dumps=lambda v: orjson.dumps(v).decode())

    def bytes(self, body: bytes, content_type: str | None = None,
              headers: dict[str, str] | None = None) -> web.Response:
        response = web.Response(body=body, headers=headers)
        if content_type:
            response.content_type = content_type
        return response


class _Routes:
    """Collects the worker's routes (faust ``app.page``) to serve them with aiohttp."""

    def __init__(self) -> None:
        self.views: dict[str, Any] = {}

    def page(self, path: str) -> Callable[[Any], Any]:
        def add(view: Any) -> Any:
            self.views[path] = view
            return view
        return add


@asynccontextmanager
async def serving(service: StatementService,
                  env: dict[str, str] | None = None) -> AsyncIterator[tuple[str, list[str]]]:
    """Every route of the query API on a local port (aiohttp, as Faust serves them): the
    base URL and the routes."""
    settings = load_settings({"STREAMER_PARTITIONS": "1", **(env or {})})
    client = aioredis.from_url(settings.redis_url)  # not contacted by statements
    routes = _Routes()
    register_routes(routes, settings, UsageQueries(client, KeyLayout("unused"), 1),  # type: ignore[arg-type]
                    lambda: (True, {}), Metrics(), statements=service)
    app = web.Application()
    for path, view in routes.views.items():
        async def handle(request: web.Request, view: Any = view) -> web.StreamResponse:
            response: web.StreamResponse = await view(_Web(), request, **request.match_info)
            return response
        app.router.add_get(path, handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", list(routes.views)
    finally:
        await runner.cleanup()
        await client.aclose()
        service.close()


async def get(base: str, path: str, token: str | None = None,
              **query: str) -> tuple[int, Any, bytes, str]:
    """(status, the JSON body or None, the raw body, content type)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(
            base + path, params=query, headers=headers) as response:
        body = await response.read()
        decoded = orjson.loads(body) if response.content_type == "application/json" else None
        return response.status, decoded, body, response.content_type


def truth(closed: ClosedMonth, holder: str, territory: str | None = None) -> tuple[int, int]:
    """(uses, amount in cents) of the holder's lines, event by event."""
    uses = cents = 0
    for key, (line_uses, _, line_cents) in expected_lines(closed).items():
        if key[0] == holder and territory in (None, key[2]):
            uses += line_uses
            cents += line_cents
    return uses, cents


async def test_a_statement_over_http_is_the_ground_truth(closed_month: ClosedMonth) -> None:
    service = StatementService(closed_month.location, 1, str(RATES), str(PARTIES))
    async with serving(service) as (base, _):
        for territory in (None, "DE"):
            query = {"period": "2026-11", **({"territory": territory} if territory else {})}
            status, body, raw, content_type = await get(base, "/v1/holders/pub-x/statement",
                                                        **query)
            assert status == 200, body
            validate(ROUTE, "200", content_type, raw)
            uses, cents = truth(closed_month, "pub-x", territory)
            assert uses > 0 and body["total"]["uses"] == uses
            assert Decimal(body["total"]["amount"]["EUR"]) == Decimal(cents) / 100
            assert (body["holder_id"], body["territory"], body["provisional"]) == (
                "pub-x", territory, False)
            assert body["ledger"]["versions"] == {
                name: closed_month.location.open(name).version()
                for name in body["ledger"]["versions"]}
        # The typed client reads the same answer (in a thread: it is synchronous).
        typed = api_client.QueryClient(base, timeout_s=60)
        statement = await asyncio.to_thread(typed.holder_statement, "pub-x", "2026-11")
        assert statement.total.uses == truth(closed_month, "pub-x")[0]
        # One priced month serves every holder and territory of the same ledger versions.
        assert len(service._priced) == 1


async def test_statement_errors_name_the_problem(closed_month: ClosedMonth) -> None:
    path = "/v1/holders/pub-x/statement"
    async with serving(StatementService(closed_month.location, 1, str(RATES),
                                        str(PARTIES))) as (base, _):
        for query, starts in (({"period": "2026-13"}, "period: "), ({}, "period: "),
                              ({"period": "2026-11", "territory": "de"}, "territory: "),
                              ({"period": "2026-11", "provisional": "yes"}, "provisional: ")):
            status, body, raw, content_type = await get(base, path, **query)
            assert status == 400 and body["error"].startswith(starts), (query, body)
            validate(ROUTE, "400", content_type, raw)
        # October: no day closed (409); provisional, the rate card has no October (404).
        status, body, raw, content_type = await get(base, path, period="2026-10")
        assert status == 409 and {d["state"] for d in body["days"]} == {"open"}, body
        validate(ROUTE, "409", content_type, raw)
        status, body, raw, content_type = await get(base, path, period="2026-10",
                                                    provisional="true")
        assert status == 404 and "no entry for period 2026-10" in body["error"], body
        validate(ROUTE, "404", content_type, raw)
    # Two partitions: partition 1 closed no day, so every day is partial.
    async with serving(StatementService(closed_month.location, 2, str(RATES),
                                        str(PARTIES))) as (base, _):
        status, body, raw, content_type = await get(base, path, period="2026-11")
        assert status == 409, body
        validate(ROUTE, "409", content_type, raw)
        assert len(body["days"]) == 30 and body["days"][0] == {
            "day": "2026-11-01", "state": "partial", "missing_partitions": [1]}
        status, body, _, _ = await get(base, path, period="2026-11", provisional="true")
        assert status == 200 and body["provisional"] is True
        assert body["total"]["uses"] == truth(closed_month, "pub-x")[0]
    async with serving(StatementService(closed_month.location, 1, None, None)) as (base, _):
        status, body, raw, content_type = await get(base, path, period="2026-11")
        assert status == 503 and "STREAMER_RATES_FILE" in body["error"], body
        validate(ROUTE, "503", content_type, raw)
