"""HTTP routes of the query API, mounted on the Faust web server of every worker.

Parameters are checked before Redis is touched: a bad window, ``at``, ``limit``,
``from``, ``to`` or ``by`` is a 400 with a JSON error that names it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import faust
from faust.web import Request, Response, View

from streamer.api.access import Tokens, load_tokens
from streamer.api.page import register_page
from streamer.api.queries import UsageQueries, WindowRef
from streamer.api.ranges import RANGE_WINDOW, DayRange, Kind, RangeQueries
from streamer.api.series import RangeError as SeriesError
from streamer.api.series import SeriesQueries, WindowRange, parse_instant
from streamer.api.statements import StatementError, StatementService
from streamer.config import Settings
from streamer.ledger.reader import RangeError
from streamer.ledger.writer import LedgerLocation
from streamer.metrics import CONTENT_TYPE_LATEST, Metrics

Health = Callable[[], tuple[bool, dict[str, Any]]]
"""Whether the worker is healthy, and the body of /v1/health (PipelineWorker.health)."""

_ID = re.compile(r"[^\x00-\x1f]{1,128}")
_TRACK_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_GENRE = re.compile(r"[a-z0-9_][a-z0-9_-]{0,63}")
_MAX_EPOCH_MS = 2**53 - 1
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TERRITORY = re.compile(r"[A-Z]{2}")
BY_VALUES = ("territory",)


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


def _day_param(name: str, raw: str) -> date:
    try:
        if _DAY.fullmatch(raw):
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise BadRequest(f"{name}: expected a UTC day YYYY-MM-DD, got {raw[:40]!r}")


def _days(request: Request) -> DayRange | None:
    """The ``from``/``to`` range, None when neither is given."""
    first, last = request.query.get("from"), request.query.get("to")
    if first is None and last is None:
        return None
    for name in ("window", "at"):
        if request.query.get(name) is not None:
            raise BadRequest(f"{name}: not together with from/to (a range is whole UTC days)")
    if first is None or last is None:
        missing = "from" if first is None else "to"
        raise BadRequest(f"{missing}: missing; a range needs both from and to")
    try:
        return DayRange(_day_param("from", first), _day_param("to", last))
    except RangeError as exc:
        raise BadRequest(str(exc)) from None


def _by_territory(request: Request) -> bool:
    by = request.query.get("by")
    if by is None:
        return False
    if by not in BY_VALUES:
        raise BadRequest(f"by: unknown value {by[:20]!r}; use one of {list(BY_VALUES)}")
    return True


def _territory(request: Request) -> str | None:
    territory = request.query.get("territory")
    if territory is not None and not _TERRITORY.fullmatch(territory):
        raise BadRequest(f"territory: expected an ISO 3166-1 alpha-2 code such as DE, got "
                         f"{territory[:20]!r}")
    return territory


def _flag(request: Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise BadRequest(f"{name}: expected true or false, got {raw[:20]!r}")


def statement_service(settings: Settings) -> StatementService:
    return StatementService(LedgerLocation(settings.ledger_url, settings.ledger_storage_options),
                            settings.partitions, settings.rates_file, settings.parties_file)


def _path_id(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise BadRequest(f"invalid {what}")
    return value


def register_routes(app: faust.App, settings: Settings, queries: UsageQueries,
                    worker_health: Health, metrics: Metrics,
                    ranges: RangeQueries | None = None,
                    territory_windows: tuple[str, ...] = (RANGE_WINDOW,),
                    statements: StatementService | None = None,
                    tokens: Tokens | None = None) -> None:
    """``ranges`` answers from/to and by=territory (without one, every day from Redis);
    ``territory_windows`` are the windows with territory counters; ``statements`` the
    statement endpoint (default: from the settings); ``tokens`` who may read what
    (default: STREAMER_WEB_TOKEN and STREAMER_WEB_TOKENS_FILE; a bad file raises
    ``ConfigError``)."""
    allowed = tokens or load_tokens(settings.web_tokens_file, settings.web_token)
    default_small = settings.window_names[min(1, len(settings.window_names) - 1)]
    default_large = settings.window_names[-1]
    spans = ranges or RangeQueries(queries.client, queries.layout, queries.partitions, None)
    statement_answers = statements or statement_service(settings)
    plain = {"track": queries.track_usage, "holder": queries.holder_usage,
             "genre": queries.genre_usage}

    async def usage(kind: Kind, key: str, request: Request, default: str) -> dict[str, Any]:
        days = _days(request)
        by_territory = _by_territory(request)
        if days is not None:
            if RANGE_WINDOW not in settings.window_names:
                raise BadRequest(f"from: ranges need the {RANGE_WINDOW} window, which "
                                 "STREAMER_WINDOWS does not have")
            if by_territory and RANGE_WINDOW not in territory_windows:
                raise BadRequest(f"by: territory ranges need {RANGE_WINDOW} territory "
                                 "counters, which STREAMER_TERRITORY_WINDOWS does not have")
            return await spans.range_usage(kind, key, days, by_territory)
        window = _window(request, settings, default)
        if by_territory:
            if window.name not in territory_windows:
                raise BadRequest(f"by: territory counters exist for windows "
                                 f"{list(territory_windows)} only, not {window.name!r}")
            return await spans.window_by_territory(kind, key, window)
        return await plain[kind](key, window)

    def guarded(handler: Callable[..., Awaitable[dict[str, Any]]],
                holder_route: bool = False) -> Callable[..., Any]:
        """Needs a known token; a holder token reads only ``holder_route`` routes of its
        own holders (403 for every other route and holder)."""
        async def view(web: View, request: Request, **kwargs: str) -> Response:
            access = allowed.access(request.headers.get("Authorization", ""))
            if access is None:
                return web.json({"error": "missing or wrong bearer token"}, status=401)
            if not access.admin and not (holder_route
                                         and access.may_read_holder(kwargs["holder_id"])):
                return web.json({"error": "this token may read only the holder routes of "
                                          "its own rights holders"}, status=403)
            try:
                return web.json(await handler(request, **kwargs))
            except BadRequest as exc:
                return web.json({"error": str(exc)}, status=400)
            except StatementError as exc:
                return web.json(exc.body, status=exc.status)

        view.__name__ = handler.__name__
        return view

    async def track_usage(request: Request, track_id: str) -> dict[str, Any]:
        track_id = _path_id(track_id, _TRACK_ID, "track_id")
        return await usage("track", track_id, request, default_small)

    async def holder_usage(request: Request, holder_id: str) -> dict[str, Any]:
        holder_id = _path_id(holder_id, _ID, "holder_id")
        return await usage("holder", holder_id, request, default_large)

    async def holder_statement(request: Request, holder_id: str) -> dict[str, Any]:
        holder_id = _path_id(holder_id, _ID, "holder_id")
        period = request.query.get("period")
        if period is None:
            raise BadRequest("period: missing; expected a month YYYY-MM")
        return await statement_answers.statement(holder_id, period, _territory(request),
                                                 _flag(request, "provisional"))

    async def genre_usage(request: Request, genre: str) -> dict[str, Any]:
        genre = _path_id(genre, _GENRE, "genre")
        return await usage("genre", genre, request, default_large)

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
        except SeriesError as exc:
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
    app.page("/v1/holders/{holder_id}/usage")(guarded(holder_usage, holder_route=True))
    app.page("/v1/holders/{holder_id}/statement")(guarded(holder_statement, holder_route=True))
    app.page("/v1/genres/{genre}/usage")(guarded(genre_usage))
    app.page("/v1/trending")(guarded(trending))

    @app.page("/v1/health")
    async def health(web: View, request: Request) -> Response:
        healthy, body = worker_health()
        return web.json(body, status=200 if healthy else 503)

    @app.page("/metrics")
    async def prometheus_metrics(web: View, request: Request) -> Response:
        return web.bytes(metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
