"""docs/openapi.yaml against the running API: every route, every status, every field.

* The routes the worker registers are exactly the spec's paths.
* For every (path, status) in the spec, a real request to a real worker (Kafka, Redis,
  events counted) that gets that status; its body must validate against the spec's
  schema, whose objects list every field as required and allow no others, so a field
  added, dropped or renamed on either side fails here. A status no test can provoke
  must be listed in NOT_PROVOKED with the reason.
* The typed client (streamer/client.py) decodes every 200 answer, and its structs have
  the spec's fields.
"""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml
from jsonschema import Draft202012Validator

from streamer import client as api_client
from streamer.config import load_settings
from tests.support.own_redis import OwnRedis
from tests.support.pipeline import (
    Pipeline,
    now_ms,
    right,
    track_event,
    use_event,
)

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
TOKEN = "contract-test-token"

NOT_PROVOKED = {
    ("/v1/live", "503"): "needs record delivery stalled for STREAMER_DELIVERY_STALL_AFTER_S "
                         "while partitions lag; tests/unit/test_watchdog.py covers when",
    **{("/v1/holders/{holder_id}/statement", status): "needs a closed month in the ledger "
       "(slow to build); tests/reports/test_api_statement.py provokes it over HTTP and "
       "validates the body against this spec" for status in ("200", "404", "409")},
    **{(route, "403"): "needs a rights holder's token (STREAMER_WEB_TOKENS_FILE); "
       "tests/reports/test_api_access.py provokes it on every route over HTTP and validates "
       "the body against this spec"
       for route, item in SPEC["paths"].items() if "403" in item["get"]["responses"]},
}


def response_spec(path: str, status: str) -> dict[str, Any]:
    response = SPEC["paths"][path]["get"]["responses"][status]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return dict(response)


def validate(path: str, status: str, content_type: str, body: bytes) -> Any:
    (declared_type, media), = response_spec(path, status)["content"].items()
    assert content_type == declared_type, (path, status, content_type)
    if declared_type != "application/json":
        return body.decode()
    document = msgspec.json.decode(body)
    # The whole spec as the root, so its "#/components/..." references resolve.
    schema = {**copy.deepcopy(SPEC), **media["schema"]}
    errors = sorted(Draft202012Validator(schema).iter_errors(document), key=str)
    assert not errors, f"{path} {status}: {[e.message for e in errors[:5]]}\n{document}"
    return document


def test_the_spec_lists_exactly_the_routes_the_worker_serves(tmp_path: Path) -> None:
    from streamer.pipeline.app import create_app

    app = create_app(load_settings({"STREAMER_DATA_DIR": str(tmp_path)}))
    assert set(app.web.views) == set(SPEC["paths"])
    Draft202012Validator.check_schema(  # the component schemas are valid JSON Schema
        {**SPEC["components"]["schemas"]["Health"], "$defs": SPEC["components"]["schemas"]})


def test_the_client_structs_have_the_spec_fields() -> None:
    schemas = SPEC["components"]["schemas"]
    for struct, schema in ((api_client.TrackUsage, "TrackUsage"),
                           (api_client.TrackRangeUsage, "TrackRangeUsage"),
                           (api_client.HolderUsage, "HolderUsage"),
                           (api_client.HolderRangeUsage, "HolderRangeUsage"),
                           (api_client.GenreUsage, "GenreUsage"),
                           (api_client.GenreRangeUsage, "GenreRangeUsage"),
                           (api_client.Trending, "Trending"),
                           (api_client.TrendingItem, "TrendingItem"),
                           (api_client.RightUsage, "RightUsage"),
                           (api_client.Health, "Health"),
                           (api_client.PartitionHealth, "PartitionHealth"),
                           (api_client.Probe, "Probe"),
                           (api_client.AiShare, "GenreAiShare"),
                           (api_client.AiSharePoint, "AiSharePoint"),
                           (api_client.Statement, "Statement"),
                           (api_client.StatementGroup, "StatementGroup")):
        fields = struct.__struct_encode_fields__  # the JSON names ("from", not "first")
        assert set(fields) == set(schemas[schema]["properties"]), schema


async def test_every_route_and_status_against_a_running_worker(  # type: ignore[no-untyped-def]
        make_pipeline, own_redis: OwnRedis) -> None:
    pipeline: Pipeline = await make_pipeline(partitions=2, STREAMER_WEB_TOKEN=TOKEN)
    worker = pipeline.worker("worker").start()
    # A worker of its own pipeline whose Redis dies under it, with events to flush:
    # not ready at once, not healthy once its flushes have failed for 10 s.
    doomed: Pipeline = await make_pipeline(partitions=1)
    no_redis = doomed.worker("no-redis", STREAMER_REDIS_URL=own_redis.url).start()
    await no_redis.wait_healthy(120)
    own_redis.kill()
    async with doomed.producer() as producer:
        for n in range(20):
            await producer.send_use(use_event(f"T-doomed-{n}", "play", now_ms() - 60_000))
    await worker.wait_healthy(120)
    at = now_ms() - 120_000
    async with pipeline.producer() as producer:
        await producer.send_track(track_event(
            "T-contract", at, genre="lofi", ai_origin="ai_assisted",
            rights=[right("H-contract", "master", "1"),
                    right("H-contract", "publishing", "0.25"),
                    right("H-other", "publishing", "0.75")]))
        await producer.flush()
        for use in ("create", "create", "play"):
            await producer.send_use(use_event("T-contract", use, at))
    await pipeline.drained()

    requests: dict[tuple[str, str], tuple[Any, str, dict[str, str]]] = {}
    usage = {"/v1/tracks/{track_id}/usage": "/v1/tracks/T-contract/usage",
             "/v1/holders/{holder_id}/usage": "/v1/holders/H-contract/usage",
             "/v1/genres/{genre}/usage": "/v1/genres/lofi/usage",
             "/v1/trending": "/v1/trending"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for route, url in usage.items():
        requests[(route, "200")] = (worker, f"{url}?at={at}", auth)
        requests[(route, "400")] = (worker, f"{url}?window=2y", auth)
        requests[(route, "401")] = (worker, url, {"Authorization": "Bearer wrong"})
    statement = "/v1/holders/{holder_id}/statement"
    requests[(statement, "400")] = (worker, "/v1/holders/H-contract/statement", auth)
    requests[(statement, "401")] = (worker, "/v1/holders/H-contract/statement?period=2026-11",
                                    {"Authorization": "Bearer wrong"})
    # The worker has no STREAMER_RATES_FILE: statements are not configured.
    requests[(statement, "503")] = (worker, "/v1/holders/H-contract/statement?period=2026-11",
                                    auth)
    series = {"/v1/genres/{genre}/ai-share": "/v1/genres/lofi/ai-share",
              "/v1/ai-share": "/v1/ai-share"}
    for route, url in series.items():
        requests[(route, "200")] = (worker, f"{url}?window=1m&from={at - 60_000}&to={at}", auth)
        requests[(route, "400")] = (worker, f"{url}?window=1m&from=0&to={at}", auth)
        requests[(route, "401")] = (worker, url, {"Authorization": "Bearer wrong"})
    for route in ("/v1/live", "/v1/ready", "/v1/health", "/metrics", "/"):
        requests[(route, "200")] = (worker, route, {})
    requests[("/static/{name}", "200")] = (worker, "/static/app.js", {})
    requests[("/static/{name}", "404")] = (worker, "/static/missing.js", {})
    requests[("/static/vendor/{name}", "200")] = (worker, "/static/vendor/uPlot.min.css", {})
    requests[("/static/vendor/{name}", "404")] = (worker, "/static/vendor/missing.js", {})
    requests[("/v1/ready", "503")] = (no_redis, "/v1/ready", {})
    requests[("/v1/health", "503")] = (no_redis, "/v1/health", {})

    documented = {(path, status) for path, item in SPEC["paths"].items()
                  for status in item["get"]["responses"]}
    assert set(requests) | set(NOT_PROVOKED) == documented
    assert not set(requests) & set(NOT_PROVOKED)
    answers: dict[tuple[str, str], Any] = {}
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as session:
        for (route, status), (target, url, headers) in sorted(requests.items()):
            while True:
                async with session.get(target.base_url + url, headers=headers) as response:
                    got, body = response.status, await response.read()
                    content_type = response.content_type
                if str(got) == status or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)  # the doomed worker's flushes have not failed long
            assert str(got) == status, (route, url, got, body[:200])
            answers[(route, status)] = validate(route, status, content_type, body)

    # Ranges and territories: the other shapes of the usage routes' 200.
    today = time.strftime("%Y-%m-%d", time.gmtime(at / 1000))
    async with aiohttp.ClientSession() as session:
        for route, url in list(usage.items())[:3]:
            for query in (f"from={today}&to={today}&by=territory", f"from={today}&to={today}",
                          f"window=1d&at={at}&by=territory"):
                async with session.get(f"{worker.base_url}{url}?{query}",
                                       headers=auth) as response:
                    assert response.status == 200, (url, query, await response.read())
                    answers[(route, query)] = validate(route, "200", response.content_type,
                                                       await response.read())
    ranged = answers[("/v1/tracks/{track_id}/usage", f"from={today}&to={today}")]
    assert ranged["uses"] == {"create": 2, "play": 1} and ranged["closed_days"] == 0
    assert "window" not in ranged and ranged["from"] == today

    # The answers carry the events sent (the contract is not met by empty shells).
    track = answers[("/v1/tracks/{track_id}/usage", "200")]
    assert track["uses"] == {"create": 2, "play": 1}
    holder = answers[("/v1/holders/{holder_id}/usage", "200")]
    assert holder["rights"]["publishing"]["weighted_micro"]["create"] == 500_000
    trending = answers[("/v1/trending", "200")]
    assert trending["items"][0]["track_id"] == "T-contract" and trending["ai_share"] == 1.0
    assert "Redis" in answers[("/v1/ready", "503")]["reason"]
    assert "streamer_build_info{" in answers[("/metrics", "200")]
    lofi = answers[("/v1/genres/{genre}/ai-share", "200")]
    assert [p["uses_by_origin"]["ai_assisted"]["create"] for p in lofi["series"]] == [0, 2]
    assert "at most 500 points" in answers[("/v1/ai-share", "400")]["error"]
    assert 'name="streamer-windows"' in answers[("/", "200")]

    # The typed client reads the same answers.
    typed = api_client.QueryClient(worker.base_url, token=TOKEN, timeout_s=10)
    assert typed.track_usage("T-contract", at=at).uses == {"create": 2, "play": 1}
    assert typed.holder_usage("H-contract", at=at).rights["master"].uses["play"] == 1
    assert typed.genre_usage("lofi", at=at).uses_by_origin["ai_assisted"]["create"] == 2
    catalog = typed.ai_share(window="1m", from_=at, to=at)
    assert catalog.series[0].uses_by_origin["ai_assisted"]["create"] == 2
    assert typed.trending(at=at, limit=5).items[0].creates == 2
    assert typed.holder_range("H-contract", today, today).rights["master"].uses["play"] == 1
    assert typed.health().status == "ok" and typed.ready().status == "ok"
    assert typed.live().status == "ok"
    with pytest.raises(api_client.WorkerHTTPError) as refused:
        api_client.QueryClient(worker.base_url, token="wrong").trending()
    assert refused.value.status == 401
