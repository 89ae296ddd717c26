"""HTTP routes of the query API, mounted on the Faust web server of every worker.

Parameters are checked before Redis is touched: a bad window, ``at`` or ``limit``
is a 400 with a JSON error that names it.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View

from streamer.api.page import register_page
from streamer.api.queries import UsageQueries, WindowRef
from streamer.api.series import RangeError, SeriesQueries, WindowRange, parse_instant
from streamer.config import Settings
from streamer.metrics import CONTENT_TYPE_LATEST, Metrics

Health = Callable[[], tuple[bool, dict[str, Any]]]
"""Whether the worker is healthy, and the body of /v1/health (PipelineWorker.health)."""

_ID = re.compile(r"[^\x00-\x1f]{1,128}")
_TRACK_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_GENRE = re.compile(r"[a-z0-9_][a-z0-9_-]{0,63}")
_MAX_EPOCH_MS = 2**53 - 1


class BadRequest(ValueError):
    pass


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if len(raw) > 20 or not raw.lstrip("-").isdigit():
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


def _window(request: Request, settings: Settings, default: str) -> WindowRef:
    name = request.query.get("window", default)
    if name not in settings.window_names:
        raise BadRequest(f"unknown window {name[:20]!r}; use one of {list(settings.window_names)}")
    at = _int_param(request, "at", int(time.time() * 1000), 0, _MAX_EPOCH_MS)
    return WindowRef.containing(name, settings.window_size(name), at)


def _path_id(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise BadRequest(f"invalid {what}")
    return value


def register_routes(app: faust.App, settings: Settings, queries: UsageQueries,
                    worker_health: Health, metrics: Metrics) -> None:
    default_small = settings.window_names[min(1, len(settings.window_names) - 1)]
    default_large = settings.window_names[-1]

    def guarded(handler: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Any]:
        async def view(web: View, request: Request, **kwargs: str) -> Response:
            if settings.web_token is not None:
                sent = request.headers.get("Authorization", "")
                if not hmac.compare_digest(sent.encode(), f"Bearer {settings.web_token}".encode()):
                    return web.json({"error": "missing or wrong bearer token"}, status=401)
            try:
                return web.json(await handler(request, **kwargs))
            except BadRequest as exc:
                return web.json({"error": str(exc)}, status=400)

        view.__name__ = handler.__name__
        return view

    async def track_usage(request: Request, track_id: str) -> dict[str, Any]:
        track_id = _path_id(track_id, _TRACK_ID, "track_id")
        return await queries.track_usage(track_id, _window(request, settings, default_small))

    async def holder_usage(request: Request, holder_id: str) -> dict[str, Any]:
        holder_id = _path_id(holder_id, _ID, "holder_id")
        return await queries.holder_usage(holder_id, _window(request, settings, default_large))

    async def genre_usage(request: Request, genre: str) -> dict[str, Any]:
        genre = _path_id(genre, _GENRE, "genre")
        return await queries.genre_usage(genre, _window(request, settings, default_large))

    async def trending(request: Request) -> dict[str, Any]:
        window = _window(request, settings, default_small)
        limit = _int_param(request, "limit", 20, 1, 100)
        genre = request.query.get("genre") or None
        if genre is not None:
            genre = _path_id(genre, _GENRE, "genre")
        return await queries.trending(window, limit, genre)

    series = SeriesQueries(queries.client, queries.layout, queries.partitions)

    def window_range(request: Request) -> WindowRange:
        """``window`` (default the smallest but one), ``from``, ``to`` (default now)."""
        name = request.query.get("window", default_small)
        if name not in settings.window_names:
            raise BadRequest(f"unknown window {name[:20]!r}; "
                             f"use one of {list(settings.window_names)}")
        size = settings.window_size(name)
        try:
            raw_to, raw_from = request.query.get("to"), request.query.get("from")
            to_ms = (parse_instant("to", raw_to, end_of_day=True) if raw_to
                     else int(time.time() * 1000))
            if not raw_from:
                return WindowRange.ending(name, size, to_ms)
            return WindowRange.between(name, size, parse_instant("from", raw_from,
                                                                 end_of_day=False), to_ms)
        except RangeError as exc:
            raise BadRequest(str(exc)) from None

    async def catalog_ai_share(request: Request) -> dict[str, Any]:
        windows = window_range(request)
        top = _int_param(request, "top", 20, 1, 100)
        return await series.ai_share(None, windows, top, queries.layout.trending)

    async def genre_ai_share(request: Request, genre: str) -> dict[str, Any]:
        genre = _path_id(genre, _GENRE, "genre")
        windows = window_range(request)
        top = _int_param(request, "top", 20, 1, 100)
        def genre_trending(partition: int, window: str, start: int) -> str:
            return queries.layout.genre_trending(partition, window, start, genre)

        return await series.ai_share(genre, windows, top, genre_trending)

    app.page("/v1/ai-share")(guarded(catalog_ai_share))
    app.page("/v1/genres/{genre}/ai-share")(guarded(genre_ai_share))
    register_page(app, settings.window_names)

    app.page("/v1/tracks/{track_id}/usage")(guarded(track_usage))
    app.page("/v1/holders/{holder_id}/usage")(guarded(holder_usage))
    app.page("/v1/genres/{genre}/usage")(guarded(genre_usage))
    app.page("/v1/trending")(guarded(trending))

    @app.page("/v1/health")
    async def health(web: View, request: Request) -> Response:
        healthy, body = worker_health()
        return web.json(body, status=200 if healthy else 503)

    @app.page("/metrics")
    async def prometheus_metrics(web: View, request: Request) -> Response:
        return web.bytes(metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
