"""Access per rights holder over real HTTP: a holder token never reads another holder's
figures, through any route the API registers (new routes are covered as they appear)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest

from streamer.api.access import load_tokens
from streamer.api.statements import StatementService
from streamer.config import ConfigError
from tests.integration.test_openapi_contract import validate
from tests.reports.conftest import PARTIES, RATES, ClosedMonth
from tests.reports.test_api_statement import get, serving

ADMIN, ADMIN_FROM_FILE, PUB_X = "tok-admin-7f3a", "tok-admin-file-91c2", "tok-pub-x-5d8e"
OWN, OTHER = "pub-x", "label-a"  # both have figures in the month
PUBLIC = {"/v1/health", "/v1/live", "/v1/ready", "/metrics", "/", "/static/{name}",
          "/static/vendor/{name}"}
"""Routes without a token: whether the worker is up, and the page's files (it holds no
data: it reads the data routes with the user's token)."""


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(f'{sha(ADMIN_FROM_FILE)} = "admin"\n{sha(PUB_X)} = ["{OWN}", "pub-y"]\n')
    return path


def _url(route: str, holder: str) -> str:
    values = {"holder_id": holder, "track_id": "trk-001", "genre": "pop",
              "name": "uPlot.min.css" if "/vendor/" in route else "app.js"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m[1]], route)


async def test_a_holder_token_reads_only_its_own_holders(
        closed_month: ClosedMonth, tokens_file: Path, redis_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"STREAMER_REDIS_URL": redis_url, "STREAMER_WEB_TOKEN": ADMIN,
           "STREAMER_WEB_TOKENS_FILE": str(tokens_file)}
    service = StatementService(closed_month.location, 1, str(RATES), str(PARTIES))
    query = {"period": "2026-11"}
    async with serving(service, env) as (base, routes):
        assert {"/v1/holders/{holder_id}/usage", "/v1/holders/{holder_id}/statement",
                "/v1/tracks/{track_id}/usage", "/v1/trending"} <= set(routes)
        for route in sorted(routes):
            if route in PUBLIC:
                status, body, raw, _ = await get(base, _url(route, OTHER), token=PUB_X)
                assert status == 200, (route, raw[:200])
                assert OTHER not in raw.decode() and OWN not in raw.decode(), route
                continue
            other = _url(route, OTHER)
            status, body, raw, content_type = await get(base, other, token=PUB_X, **query)
            assert status == 403, (route, status, body)  # every other holder, every track,
            validate(route, "403", content_type, raw)     # genre and list: refused
            status, body, _, _ = await get(base, other, token="tok-unknown", **query)
            assert status == 401, (route, body)
            status, body, _, _ = await get(base, other, **query)
            assert status == 401, (route, body)
            for admin in (ADMIN, ADMIN_FROM_FILE):
                status, body, _, _ = await get(base, other, token=admin, **query)
                assert status == 200, (route, admin, body)
            if "{holder_id}" in route:
                own = _url(route, OWN)
                status, body, _, _ = await get(base, own, token=PUB_X, **query)
                assert status == 200 and body.get("holder_id", OWN) == OWN, (route, body)
                _, as_admin, _, _ = await get(base, own, token=ADMIN, **query)
                if route.endswith("/statement"):
                    assert body == as_admin and body["total"]["uses"] > 0
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for token in (ADMIN, ADMIN_FROM_FILE, PUB_X):
        assert token not in logged and sha(token) not in logged


def test_token_files_toml_json_and_their_errors(tmp_path: Path) -> None:
    as_json = tmp_path / "tokens.json"
    as_json.write_text(json.dumps({sha(PUB_X): [OWN], sha(ADMIN_FROM_FILE): "admin"}))
    tokens = load_tokens(str(as_json), None)
    scoped = tokens.access(f"Bearer {PUB_X}")
    assert scoped is not None and not scoped.admin and scoped.holders == {OWN}
    assert scoped.may_read_holder(OWN) and not scoped.may_read_holder(OTHER)
    admin = tokens.access(f"Bearer {ADMIN_FROM_FILE}")
    assert admin is not None and admin.admin
    assert tokens.access("Bearer nope") is None and tokens.access("") is None
    assert tokens.access(PUB_X) is None  # without the Bearer scheme
    assert load_tokens(None, None).access("").admin  # nothing configured: open, as before
    bad = tmp_path / "bad.toml"
    for text, rule in ((f'{PUB_X} = ["{OWN}"]\n', "entry #1: the key must be the SHA-256"),
                       (f'{sha(PUB_X)} = []\n', "entry #1: the value must be"),
                       (f'{sha(PUB_X)} = "root"\n', "entry #1: the value must be"),
                       ("not toml [", "not valid TOML")):
        bad.write_text(text)
        with pytest.raises(ConfigError) as failed:
            load_tokens(str(bad), None)
        message = str(failed.value)
        assert message.startswith(f"STREAMER_WEB_TOKENS_FILE {bad}: ") and rule in message
        assert PUB_X not in message  # a token pasted as a key is not echoed
    with pytest.raises(ConfigError, match="cannot read"):
        load_tokens(str(tmp_path / "missing.toml"), None)


async def test_spellings_of_another_holder_are_refused(closed_month: ClosedMonth,
                                                      tokens_file: Path,
                                                      redis_url: str) -> None:
    """Encodings, dot segments and near-misses of a holder id never open another holder's
    figures to a holder token (403, or 400 for an id that is not valid)."""
    env = {"STREAMER_REDIS_URL": redis_url, "STREAMER_WEB_TOKEN": ADMIN,
           "STREAMER_WEB_TOKENS_FILE": str(tokens_file)}
    service = StatementService(closed_month.location, 1, str(RATES), str(PARTIES))
    async with serving(service, env) as (base, _):
        for route in ("usage", "statement"):
            for spelling in ("label%2Da", "%6Cabel-a", f"{OWN}/../{OTHER}",
                             f"{OWN}%2F..%2F{OTHER}", "PUB-X", f"{OWN}%20", f"{OWN}%00",
                             f"{OTHER}%09", "_unclaimed", "mystery%09holder"):
                status, body, raw, _ = await get(base, f"/v1/holders/{spelling}/{route}",
                                                 token=PUB_X, period="2026-11")
                assert status in (400, 403, 404), (route, spelling, status, body)
                assert b"total" not in raw and b"weighted" not in raw, (route, spelling)
            status, body, _, _ = await get(base, f"/v1/holders/{OWN}/{route}", token=PUB_X,
                                           period="2026-11")
            assert status == 200, (route, body)
