"""Date ranges and ``by=territory`` on the usage routes, against real Redis and a ledger
written by the ledger's own writer.

The Redis counters are written here directly, key by key in the documented layout
(docs/ARCHITECTURE.md; the territory hashes ``tt``/``th``/``tg`` as issue 20 fixes
them), because the flush does not write the territory counters yet (i20-territory).
The ground truth is the synthetic events of tests/ledger/days.py counted one by one.
The routes are the real ones (``register_routes``) behind a small aiohttp adapter.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from aiohttp import web

from streamer.api.queries import UsageQueries
from streamer.api.ranges import RangeQueries
from streamer.api.views import register_routes
from streamer.config import load_settings
from streamer.exit_codes import ExitCode
from streamer.ledger import LedgerLocation, LedgerReader, LedgerWriter
from streamer.metrics import Metrics
from streamer.state.keys import KeyLayout
from tests.conftest import unique_name
from tests.ledger.days import Day, make_days

D1 = date(2026, 11, 1)
DAYS = 6
PARTITIONS = 2
USES = ("create", "play")
RIGHTS = ("master", "publishing")
ORIGINS = ("human", "ai_assisted", "ai_generated")
TRACKS = ("trk-000", "trk-001", "trk-004", "trk-013")  # trk-004 never gets metadata
HOLDERS = ("label-a", "pub-x", "_unclaimed", "_unattributed")
GENRES = ("pop", "rock")


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


@pytest.fixture(scope="module")
def days() -> dict[tuple[date, int], Day]:
    return make_days(20, D1, DAYS, PARTITIONS, 150)


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory: pytest.TempPathFactory,
               days: dict[tuple[date, int], Day]) -> str:
    """Days 1-4 complete, day 5 closed by partition 0 only, day 6 open."""
    path = str(tmp_path_factory.mktemp("ranges") / "ledger")
    writer = LedgerWriter(LedgerLocation(path), {})
    for (day, partition), closed in sorted(days.items()):
        offset = (day - D1).days
        if offset < 4 or (offset == 4 and partition == 0):
            writer.close(closed.closed())
    return path


async def _write_redis(client: aioredis.Redis, prefix: str,
                       days: dict[tuple[date, int], Day]) -> None:
    """Every day's plain and territory ``1d`` counters, from the events themselves."""
    for (day, partition), closed in days.items():
        tag, start = f"{{{prefix}:{partition}}}", _ms(day)
        plain_t: dict[str, int] = {}
        plain_h: dict[str, int] = {}
        plain_g: dict[str, int] = {}
        tt: dict[str, int] = {}
        th: dict[str, int] = {}
        tg: dict[str, int] = {}
        for (track, country, use), n in closed.tracks().items():
            tt[f"{use}|{country}|{track}"] = n
            plain_t[f"{use}|{track}"] = plain_t.get(f"{use}|{track}", 0) + n
        for (holder, right, use, country), (n, w) in closed.holders().items():
            th[f"{right}|{use}|{country}|u|{holder}"] = n
            th[f"{right}|{use}|{country}|w|{holder}"] = w
            for field, value in ((f"{right}|{use}|u|{holder}", n),
                                 (f"{right}|{use}|w|{holder}", w)):
                plain_h[field] = plain_h.get(field, 0) + value
        for (genre, origin, use, country), n in closed.genres().items():
            tg[f"{origin}|{use}|{country}|{genre}"] = n
            plain_g[f"{origin}|{use}|{genre}"] = plain_g.get(f"{origin}|{use}|{genre}", 0) + n
        for kind, fields in (("t", plain_t), ("h", plain_h), ("g", plain_g),
                             ("tt", tt), ("th", th), ("tg", tg)):
            if fields:
                await client.hset(f"{tag}:{kind}:1d:{start}", mapping=fields)  # type: ignore[arg-type]


class _Web:
    def json(self, body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status, dumps=lambda v: orjson.dumps(v).decode())


class _Routes:
    """Collects the worker's routes (faust ``app.page``) to serve them with aiohttp."""

    def __init__(self) -> None:
        self.views: dict[str, Any] = {}

    def page(self, path: str) -> Any:
        def add(view: Any) -> Any:
            self.views[path] = view
            return view
        return add


class Api:
    def __init__(self, redis_url: str, prefix: str, ledger: str | None,
                 territory_windows: tuple[str, ...] = ("1d",)) -> None:
        self.settings = load_settings({"STREAMER_REDIS_URL": redis_url,
                                       "STREAMER_KEY_PREFIX": prefix,
                                       "STREAMER_PARTITIONS": str(PARTITIONS)})
        self.client = aioredis.from_url(redis_url)
        layout = KeyLayout(prefix)
        reader = LedgerReader(LedgerLocation(ledger), PARTITIONS) if ledger else None
        self.routes = _Routes()
        register_routes(self.routes, self.settings,  # type: ignore[arg-type]
                        UsageQueries(self.client, layout, PARTITIONS),
                        lambda: (True, {}), Metrics(),
                        RangeQueries(self.client, layout, PARTITIONS, reader),
                        territory_windows)

    async def get(self, path: str, **query: Any) -> tuple[int, Any]:
        route, key = _route(path)
        request = type("Request", (), {"query": {k: str(v) for k, v in query.items()},
                                       "headers": {}})()
        kwargs = {route.split("{")[1].split("}")[0]: key}
        response = await self.routes.views[route](_Web(), request, **kwargs)
        return response.status, orjson.loads(response.body)


def _route(path: str) -> tuple[str, str]:
    _, _, what, key, _ = path.split("/")
    name = {"tracks": "track_id", "holders": "holder_id", "genres": "genre"}[what]
    return f"/v1/{what}/{{{name}}}/usage", key


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stocked(redis_url: str, days: dict[tuple[date, int], Day]) -> AsyncIterator[str]:
    prefix = unique_name("test-ranges")
    client = aioredis.from_url(redis_url)
    await _write_redis(client, prefix, days)
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{{{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


# -- ground truth --------------------------------------------------------------------


def _in(days: dict[tuple[date, int], Day], first: date, last: date) -> list[Day]:
    return [closed for (day, _), closed in days.items() if first <= day <= last]


def truth(kind: str, key: str, chosen: list[Day]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(totals, territories) of ``key`` over the chosen days, event by event."""
    def zero() -> dict[str, Any]:
        if kind == "tracks":
            return dict.fromkeys(USES, 0)
        if kind == "holders":
            return {r: {"uses": dict.fromkeys(USES, 0), "weighted_micro": dict.fromkeys(USES, 0)}
                    for r in RIGHTS}
        return {o: dict.fromkeys(USES, 0) for o in ORIGINS}
    totals, territories = zero(), dict[str, Any]()
    for closed in chosen:
        for event in closed.events:
            if kind == "tracks" and event.track_id == key:
                for target in (totals, territories.setdefault(event.country, zero())):
                    target[event.use] += 1
            elif kind == "genres" and event.entry and event.entry.genre == key:
                for target in (totals, territories.setdefault(event.country, zero())):
                    target[str(event.entry.ai_origin)][event.use] += 1
            elif kind == "holders":
                for right in RIGHTS:
                    for holder, micro in _allocation(event, right):
                        if holder == key:
                            for target in (totals, territories.setdefault(event.country, zero())):
                                target[right]["uses"][event.use] += 1
                                target[right]["weighted_micro"][event.use] += micro
    return totals, dict(sorted(territories.items()))


def _allocation(event: Any, right: str) -> list[tuple[str, int]]:
    if event.entry is None:
        return [("_unattributed", 1_000_000)]
    shares = list(event.entry.master if right == "master" else event.entry.publishing)
    rest = 1_000_000 - sum(m for _, m in shares)
    return shares + ([("_unclaimed", rest)] if rest else [])


COUNTS = {"tracks": "uses", "holders": "rights", "genres": "uses_by_origin"}
CASES = [("tracks", t) for t in TRACKS] + [("holders", h) for h in HOLDERS] + [
    ("genres", g) for g in GENRES]


# -- tests ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "key"), CASES)
async def test_a_range_is_the_ground_truth_whoever_serves_its_days(
        redis_url: str, stocked: str, ledger_dir: str, days: dict[tuple[date, int], Day],
        kind: str, key: str) -> None:
    last = D1 + timedelta(days=DAYS - 1)
    totals, territories = truth(kind, key, _in(days, D1, last))
    assert _sum(totals) > 0 and len(territories) > 1  # the case has something to count
    mixed = Api(redis_url, stocked, ledger_dir)       # days 1-4 from the ledger
    redis_only = Api(redis_url, stocked, None)        # every day from Redis
    answers = {}
    for name, api in (("mixed", mixed), ("redis", redis_only)):
        status, body = await api.get(f"/v1/{kind}/{key}/usage", **{
            "from": D1.isoformat(), "to": last.isoformat(), "by": "territory"})
        assert status == 200, body
        assert body[COUNTS[kind]] == totals, name
        assert body["territories"] == territories, name
        assert (body["from"], body["to"]) == ("2026-11-01", "2026-11-06")
        assert (body["start_ms"], body["end_ms"]) == (_ms(D1), _ms(last) + 86_400_000)
        assert "window" not in body
        status, plain = await api.get(f"/v1/{kind}/{key}/usage", **{
            "from": D1.isoformat(), "to": last.isoformat()})
        assert plain[COUNTS[kind]] == totals and "territories" not in plain
        answers[name] = body
    assert answers["mixed"]["closed_days"] == 4 and answers["redis"]["closed_days"] == 0
    await mixed.client.aclose()
    await redis_only.client.aclose()


@pytest.mark.parametrize(("kind", "key"), [("tracks", "trk-000"), ("holders", "label-a"),
                                           ("genres", "pop")])
async def test_the_ledger_alone_answers_its_closed_days(
        redis_url: str, ledger_dir: str, days: dict[tuple[date, int], Day],
        kind: str, key: str) -> None:
    """An empty Redis prefix: days 1-4 can only come from the ledger."""
    last = D1 + timedelta(days=3)
    api = Api(redis_url, unique_name("test-ranges-empty"), ledger_dir)
    for by in ({"by": "territory"}, {}):
        status, body = await api.get(f"/v1/{kind}/{key}/usage", **{
            "from": D1.isoformat(), "to": last.isoformat(), **by})
        totals, territories = truth(kind, key, _in(days, D1, last))
        assert (status, body["closed_days"], body[COUNTS[kind]]) == (200, 4, totals)
        assert body.get("territories", territories) == territories
    await api.client.aclose()


@pytest.mark.parametrize(("kind", "key"), [("tracks", "trk-000"), ("holders", "label-a"),
                                           ("genres", "pop")])
async def test_a_partition_that_closed_a_day_is_read_from_the_ledger(
        redis_url: str, ledger_dir: str, days: dict[tuple[date, int], Day],
        kind: str, key: str) -> None:
    """Day 5 is closed by partition 0 only; Redis no longer holds partition 0's counters
    of it (their grace after its close ended): the answer still counts them, from the
    ledger, and partition 1's from Redis."""
    prefix = unique_name("test-ranges-grace")
    client = aioredis.from_url(redis_url)
    gone = (D1 + timedelta(days=4), 0)
    await _write_redis(client, prefix, {k: v for k, v in days.items() if k != gone})
    api = Api(redis_url, prefix, ledger_dir)
    try:
        for by in ({"by": "territory"}, {}):
            status, body = await api.get(f"/v1/{kind}/{key}/usage", **{
                "from": gone[0].isoformat(), "to": gone[0].isoformat(), **by})
            totals, territories = truth(kind, key, _in(days, gone[0], gone[0]))
            assert (status, body["closed_days"], body[COUNTS[kind]]) == (200, 0, totals)
            assert body.get("territories", territories) == territories
    finally:
        keys = [k async for k in client.scan_iter(match=f"{{{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await api.client.aclose()


@pytest.mark.parametrize(("kind", "key"), [("tracks", "trk-001"), ("holders", "pub-x"),
                                           ("genres", "rock")])
async def test_a_range_is_the_sum_of_its_days_and_windows_by_territory(
        redis_url: str, stocked: str, ledger_dir: str, days: dict[tuple[date, int], Day],
        kind: str, key: str) -> None:
    api = Api(redis_url, stocked, ledger_dir)
    first, last = D1 + timedelta(days=2), D1 + timedelta(days=5)
    _, whole = await api.get(f"/v1/{kind}/{key}/usage", **{
        "from": first.isoformat(), "to": last.isoformat(), "by": "territory"})
    summed: dict[str, Any] = {}
    for offset in range(4):
        day = first + timedelta(days=offset)
        _, one = await api.get(f"/v1/{kind}/{key}/usage", **{
            "from": day.isoformat(), "to": day.isoformat(), "by": "territory"})
        _, window = await api.get(f"/v1/{kind}/{key}/usage", window="1d",
                                  at=_ms(day) + 5, by="territory")
        assert window["window"] == "1d" and window["start_ms"] == _ms(day)
        assert window[COUNTS[kind]] == one[COUNTS[kind]]
        assert window["territories"] == one["territories"]
        _, plain_window = await api.get(f"/v1/{kind}/{key}/usage", window="1d",
                                        at=_ms(day) + 5)
        assert plain_window[COUNTS[kind]] == one[COUNTS[kind]]  # by=territory totals = plain
        summed = _add(summed, {"counts": one[COUNTS[kind]], **one["territories"]})
    assert summed == _add({}, {"counts": whole[COUNTS[kind]], **whole["territories"]})
    assert whole["closed_days"] == 2
    await api.client.aclose()


def _sum(counts: Any) -> int:
    return sum(_sum(v) for v in counts.values()) if isinstance(counts, dict) else int(counts)


def _add(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for name, value in part.items():
        if isinstance(value, dict):
            out[name] = _add(out.get(name, {}), value)
        else:
            out[name] = out.get(name, 0) + value
    return out


@pytest.mark.parametrize(("query", "parameter"), [
    ({"from": "2026-11-31", "to": "2026-12-01"}, "from"),
    ({"from": "2026-11-01", "to": "26-12-01"}, "to"),
    ({"from": "2026-11-01"}, "to"),
    ({"to": "2026-11-01"}, "from"),
    ({"from": "2026-11-02", "to": "2026-11-01"}, "to"),
    ({"from": "2025-01-01", "to": "2026-02-05"}, "to"),
    ({"from": "2026-11-01", "to": "2026-11-02", "window": "1d"}, "window"),
    ({"from": "2026-11-01", "to": "2026-11-02", "at": "5"}, "at"),
    ({"from": "2026-11-01", "to": "2026-11-02", "by": "country"}, "by"),
    ({"by": "territory", "window": "1h"}, "by"),
    ({"by": ""}, "by"),
])
async def test_bad_ranges_and_by_are_400s_naming_the_parameter(
        redis_url: str, query: dict[str, str], parameter: str) -> None:
    api = Api(redis_url, unique_name("test-ranges-400"), None)
    for path in ("/v1/tracks/T1/usage", "/v1/holders/H1/usage", "/v1/genres/pop/usage"):
        status, body = await api.get(path, **query)
        assert status == 400, (path, query, body)
        assert body["error"].startswith(f"{parameter}: "), body
    await api.client.aclose()
    ok = Api(redis_url, unique_name("test-ranges-400"), None)
    status, body = await ok.get("/v1/tracks/T1/usage", **{"from": "2025-10-03",
                                                            "to": "2026-11-06"})
    assert status == 200 and body["uses"] == {"create": 0, "play": 0}  # 400 days is fine
    await ok.client.aclose()


async def test_by_territory_with_territory_off_is_a_400(redis_url: str) -> None:
    api = Api(redis_url, unique_name("test-ranges-off"), None, territory_windows=())
    for query in ({"by": "territory", "window": "1d"},
                  {"by": "territory", "from": "2026-11-01", "to": "2026-11-02"}):
        status, body = await api.get("/v1/holders/H1/usage", **query)
        assert status == 400 and body["error"].startswith("by: "), body
    status, body = await api.get("/v1/holders/H1/usage", **{"from": "2026-11-01",
                                                            "to": "2026-11-02"})
    assert status == 200 and "territories" not in body
    await api.client.aclose()


# -- the CLI, through HTTP -----------------------------------------------------------


@pytest.fixture
def served(redis_url: str, stocked: str, ledger_dir: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The routes on a local port, served by an event loop of their own in a thread."""
    loop = asyncio.new_event_loop()
    api = Api(redis_url, stocked, ledger_dir)

    async def handle(request: web.Request) -> web.StreamResponse:
        route, key = _route(request.path)
        kwargs = {route.split("{")[1].split("}")[0]: key}
        response: web.StreamResponse = await api.routes.views[route](_Web(), request, **kwargs)
        return response

    async def start() -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_get("/v1/{what}/{key}/usage", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    monkeypatch.setenv("STREAMER_WEB_PORT", str(port))
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    asyncio.run_coroutine_threadsafe(api.client.aclose(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _cli(argv: list[str]) -> tuple[int, str]:
    from streamer.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def test_cli_range_by_territory_as_json_and_csv(
        served: str, days: dict[tuple[date, int], Day]) -> None:
    first, last = D1 + timedelta(days=1), D1 + timedelta(days=5)
    args = ["query", "holder", "label-a", "--from", first.isoformat(), "--to",
            last.isoformat(), "--by", "territory"]
    totals, territories = truth("holders", "label-a", _in(days, first, last))
    code, out = _cli(args)
    assert code == 0
    body = orjson.loads(out)
    assert (body["rights"], body["territories"], body["closed_days"]) == (
        totals, territories, 3)
    code, out = _cli([*args, "--format", "csv"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("holder_id,from,to,closed_days,start_ms,end_ms,territory,right,use,"
                        "uses,weighted_micro")
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == len(territories) * 4
    for row in rows:
        country, right, use = row[6:9]
        cell = territories[country][right]
        assert [int(row[9]), int(row[10])] == [cell["uses"][use], cell["weighted_micro"][use]]
    code, out = _cli(["query", "track", "trk-000", "--from", first.isoformat(), "--to",
                      last.isoformat(), "--format", "csv"])
    track_totals, _ = truth("tracks", "trk-000", _in(days, first, last))
    assert out.splitlines()[1:] == [
        f"trk-000,{first},{last},3,{_ms(first)},{_ms(last) + 86_400_000},,{use},"
        f"{track_totals[use]}" for use in USES]


def test_cli_range_mistakes_are_one_line(served: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["query", "genre", "pop", "--from", "2026-11-01"])[0] == 2
    assert "needs both --from and --to" in capsys.readouterr().err
    assert _cli(["query", "genre", "pop", "--from", "2026-11-05", "--to", "2026-11-01"])[0] == 6
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "HTTP 400: to: " in err
    assert _cli(["query", "trending", "--format", "csv"])[0] == 2


def test_cli_wires_ledger_status_verify_and_close(
        redis_url: str, stocked: str, ledger_dir: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMER_LEDGER_URL", ledger_dir)
    monkeypatch.setenv("STREAMER_PARTITIONS", str(PARTITIONS))
    monkeypatch.setenv("STREAMER_REDIS_URL", redis_url)
    monkeypatch.setenv("STREAMER_KEY_PREFIX", stocked)
    code, out = _cli(["ledger", "status", "--to", "2026-11-06", "--json"])
    assert code == 0
    assert [d["state"] for d in orjson.loads(out)] == ["complete"] * 4 + ["partial", "open"]
    code, out = _cli(["ledger", "verify", "--day", "2026-11-02", "--json"])
    report = orjson.loads(out)
    assert (code, report["ok"], report["partitions_checked"]) == (0, True, [0, 1])
    # verify reads Redis' plain 1d counters: one use more in Redis is a problem.
    key = f"{{{stocked}:1}}:t:1d:{_ms(date(2026, 11, 2))}"
    sync = redis.Redis.from_url(redis_url)
    field = next(iter(sync.hkeys(key)))
    sync.hincrby(key, field, 1)
    try:
        code, out = _cli(["ledger", "verify", "--day", "2026-11-02"])
    finally:
        sync.hincrby(key, field, -1)
        sync.close()
    assert code == ExitCode.REFUSED and "p1 vs Redis tracks: 1 keys differ" in out
    # close is wired to the Redis day source: nothing here was sealed by a worker, so it
    # closes nothing (tests/integration/test_ledger_close_cli.py closes real days).
    code, out = _cli(["ledger", "close"])
    assert code == ExitCode.OK, out
    assert "no day source" not in out + capsys.readouterr().err
