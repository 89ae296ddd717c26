"""The AI-share series API and the page's static files, through a real worker.

Expected answers come from tests/support/web_data.py, which counts the events sent.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from support.pipeline import HOUR, MINUTE, Pipeline
from support.web_data import HOURS, ORIGINS, USES, WebData

from streamer.api.series import MAX_POINTS
from streamer.cli import main as cli_main

DAY = 24 * HOUR


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_ai_share_series_per_genre_and_catalog(make_pipeline: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pipe: Pipeline = await make_pipeline()
    worker = await pipe.start_worker()
    data = WebData.make()
    await data.send(pipe)
    first, last = data.hour_starts[0], data.hour_starts[-1]

    # Epoch ms and ISO times name the same range; the series has one point per hour.
    for bounds in ({"from": first, "to": last + 59 * MINUTE},
                   {"from": iso(first + 5 * MINUTE), "to": iso(last)}):
        for genre in ("lofi", "hyperpop", "ambient", "jazz"):
            status, body = await worker.get(f"/v1/genres/{genre}/ai-share",
                                            {"window": "1h", "top": 3, **bounds})
            assert status == 200, body
            assert body["genre"] == genre
            assert (body["window"], body["from_ms"], body["to_ms"], body["points"]) == (
                "1h", first, last + HOUR, HOURS)
            assert [p["start_ms"] for p in body["series"]] == data.hour_starts
            for point in body["series"]:
                assert point["uses_by_origin"] == data.uses_by_origin(point["start_ms"], HOUR,
                                                                      genre)
                # Among the genre's own top 3 by creates (a track without metadata in none).
                assert point["trending_ai_share"] == pytest.approx(
                    data.trending_ai_share(point["start_ms"], HOUR, 3, genre))

    for top in (1, 3, 20):
        status, body = await worker.get("/v1/ai-share", {"window": "1h", "top": top,
                                                         "from": first, "to": last})
        assert status == 200, body
        assert "genre" not in body
        assert len(body["series"]) == HOURS
        for point in body["series"]:
            start = point["start_ms"]
            assert point["uses_by_origin"] == data.uses_by_origin(start, HOUR, None)
            assert point["trending_ai_share"] == pytest.approx(
                data.trending_ai_share(start, HOUR, top))
            # The same rule as /v1/trending's ai_share for that window.
            status, trending = await worker.get("/v1/trending", {"window": "1h", "at": start,
                                                                 "limit": top})
            assert status == 200
            assert point["trending_ai_share"] == pytest.approx(trending["ai_share"])
    assert sum(v for p in body["series"] for o in ORIGINS
               for v in p["uses_by_origin"][o].values()) > 0

    # 1m windows: minute points, most of them empty; a day given as a date covers it all.
    status, body = await worker.get("/v1/genres/lofi/ai-share",
                                    {"window": "1m", "from": last, "to": last + 9 * MINUTE})
    assert status == 200, body
    assert len(body["series"]) == 10
    assert sum(p["uses_by_origin"]["human"][u] for p in body["series"] for u in USES) == sum(
        data.uses_by_origin(last, 10 * MINUTE, "lofi")["human"].values())
    day = first - first % DAY
    status, body = await worker.get("/v1/ai-share", {"window": "1d", "from": iso(day)[:10],
                                                     "to": iso(day)[:10]})
    assert status == 200, body
    assert [p["start_ms"] for p in body["series"]] == [day]
    assert body["series"][0]["uses_by_origin"] == data.uses_by_origin(day, DAY, None)

    # The CLI asks the same route and prints its answer.
    for argv, path in ((["ai-share", "lofi"], "/v1/genres/lofi/ai-share"),
                       (["ai-share"], "/v1/ai-share")):
        code = cli_main(["query", *argv, "--window", "1h", "--from", str(first), "--to",
                         iso(last), "--top", "3", "--url", worker.base_url])
        printed = json.loads(capsys.readouterr().out)
        assert code == 0
        status, body = await worker.get(path, {"window": "1h", "from": first, "to": iso(last),
                                               "top": 3})
        assert printed == body

    # Defaults: 24 windows ending with the one containing now.
    status, body = await worker.get("/v1/ai-share", {"window": "1h"})
    assert status == 200, body
    assert body["points"] == 24 and body["top"] == 20


async def test_ai_share_rejects_bad_parameters_by_name(make_pipeline: Any) -> None:
    pipe: Pipeline = await make_pipeline()
    worker = await pipe.start_worker()
    now = 1_796_000_000_000
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/ai-share", {"window": "1m", "from": now - MAX_POINTS * MINUTE, "to": now},
         "at most 500 points"),
        ("/v1/ai-share", {"window": "1h", "from": "2026-13-01"}, "from is not a valid"),
        ("/v1/ai-share", {"window": "1h", "from": "yesterday"}, "from must be"),
        ("/v1/ai-share", {"window": "1h", "to": "2026-12-01T25:00Z"}, "to is not a valid"),
        ("/v1/ai-share", {"window": "1h", "from": now, "to": now - HOUR}, "to is before from"),
        ("/v1/ai-share", {"window": "1w"}, "unknown window"),
        ("/v1/ai-share", {"top": 0}, "top must be between 1 and 100"),
        ("/v1/genres/Lo Fi/ai-share", {}, "invalid genre"),
        ("/v1/genres/lofi/ai-share", {"from": "9" * 17}, "from must be"),
    ]
    for path, params, error in cases:
        status, body = await worker.get(path, params)
        assert status == 400, (path, params, body)
        assert error in body["error"], (params, body)
    # 500 points is the limit, not 499.
    status, body = await worker.get("/v1/ai-share", {"window": "1m", "to": now,
                                                     "from": now - (MAX_POINTS - 1) * MINUTE})
    assert status == 200, body
    assert body["points"] == MAX_POINTS
    assert worker.alive


async def test_page_and_static_files_served_with_token_rules(make_pipeline: Any) -> None:
    pipe: Pipeline = await make_pipeline()
    worker = await pipe.start_worker(STREAMER_WEB_TOKEN="s3cret")
    async with aiohttp.ClientSession() as session, session.get(worker.base_url + "/") as got:
        assert got.status == 200
        assert got.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in got.headers["Content-Security-Policy"]
        assert "connect-src 'self'" in got.headers["Content-Security-Policy"]
        page = await got.text()
    assert '<meta name="streamer-windows" content="1m,1h,1d">' in page
    for asset in ("/static/app.js", "/static/style.css", "/static/vendor/uPlot.iife.min.js",
                  "/static/vendor/uPlot.min.css", "/static/vendor/uPlot.LICENSE"):
        status, body = await worker.get(asset)
        assert status == 200, asset
        assert body, asset
    for missing in ("/static/nope.js", "/static/..%2Fpage.py", "/static/vendor/..%2F..%2Fviews.py",
                    "/static/VENDOR.md"):
        status, body = await worker.get(missing)
        assert status == 404, (missing, body)
    # The data stays behind the token; the page (no data) asks for it.
    status, body = await worker.get("/v1/ai-share")
    assert status == 401
    status, body = await worker.get("/v1/genres/lofi/ai-share")
    assert status == 401
