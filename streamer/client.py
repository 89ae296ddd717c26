"""A typed Python client of the query API (docs/openapi.yaml), used by ``streamer query``.

    client = QueryClient("http://127.0.0.1:6066", token=None, timeout_s=10)
    usage = client.track_usage("T1", window="1h")      # -> TrackUsage
    usage.uses["play"]
    month = client.holder_range("H1", "2026-11-01", "2026-11-30", by="territory")
    month.territories["DE"]["master"].weighted_micro["play"]   # -> HolderRangeUsage

Every failure is a :class:`QueryError` whose message says what happened and what to do:
:class:`WorkerUnreachable` (nothing answered, or not within the timeout) and
:class:`WorkerHTTPError` (an answer with an error status, or one that is not the API's
JSON, e.g. a proxy's HTML 502). Responses are decoded into the structs below, so a
field the API stops sending fails here, by name, rather than later in the caller.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class UsageWindow(msgspec.Struct, frozen=True, omit_defaults=True):
    window: str
    start_ms: int
    end_ms: int


class UsageRange(msgspec.Struct, frozen=True, omit_defaults=True,
                 rename={"first": "from", "last": "to"}):
    """A range of whole UTC days, ``from`` to ``to`` inclusive; ``closed_days`` of them
    were read from the ledger."""

    first: str
    last: str
    start_ms: int
    end_ms: int
    closed_days: int


class TrackUsage(UsageWindow, frozen=True):
    track_id: str
    uses: dict[str, int]
    territories: dict[str, dict[str, int]] | None = None
    """With ``by="territory"``: ``uses`` per country."""


class TrackRangeUsage(UsageRange, frozen=True):
    track_id: str
    uses: dict[str, int]
    territories: dict[str, dict[str, int]] | None = None


class RightUsage(msgspec.Struct, frozen=True):
    uses: dict[str, int]
    weighted_micro: dict[str, int]


class HolderUsage(UsageWindow, frozen=True):
    holder_id: str
    rights: dict[str, RightUsage]
    territories: dict[str, dict[str, RightUsage]] | None = None


class HolderRangeUsage(UsageRange, frozen=True):
    holder_id: str
    rights: dict[str, RightUsage]
    territories: dict[str, dict[str, RightUsage]] | None = None


class GenreUsage(UsageWindow, frozen=True):
    genre: str
    uses_by_origin: dict[str, dict[str, int]]
    territories: dict[str, dict[str, dict[str, int]]] | None = None


class GenreRangeUsage(UsageRange, frozen=True):
    genre: str
    uses_by_origin: dict[str, dict[str, int]]
    territories: dict[str, dict[str, dict[str, int]]] | None = None


class TrendingItem(msgspec.Struct, frozen=True):
    track_id: str
    creates: int
    genre: str
    ai_origin: str


class Trending(UsageWindow, frozen=True, omit_defaults=True):
    items: list[TrendingItem]
    ai_share: float
    genre: str | None = None  # only with ?genre=


class AiSharePoint(msgspec.Struct, frozen=True):
    start_ms: int
    uses_by_origin: dict[str, dict[str, int]]
    trending_ai_share: float | None


class AiShare(msgspec.Struct, frozen=True, omit_defaults=True):
    window: str
    from_ms: int
    to_ms: int
    points: int
    top: int
    series: list[AiSharePoint]
    genre: str | None = None


class PartitionHealth(msgspec.Struct, frozen=True):
    next_offset: dict[str, int]
    watermark_ms: int
    unflushed_events: int
    pending_tracks: int


class Health(msgspec.Struct, frozen=True):
    status: str
    worker_id: str
    rebalancing: bool
    delivery_stalled: bool
    partitions: dict[str, PartitionHealth]


class Probe(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
    reason: str | None = None


class StatementGroup(msgspec.Struct, frozen=True):
    uses: int
    weighted_uses: str
    amount: dict[str, str]


class Statement(msgspec.Struct, frozen=True):
    """A holder's statement summary for a month (docs/STATEMENTS.md): amounts are
    decimal strings in the currency's minor unit, per currency."""

    kind: str
    format: int
    holder_id: str
    name: str
    dpid: str | None
    party: str
    period: str
    territory: str | None
    provisional: bool
    lines: int
    total: StatementGroup
    by_territory: dict[str, StatementGroup]
    by_use: dict[str, StatementGroup]
    by_right: dict[str, StatementGroup]
    by_ai_origin: dict[str, StatementGroup]
    levies: list[dict[str, Any]]
    levy_total: dict[str, str]
    payable: dict[str, str]
    ledger: dict[str, Any]
    rate_card: dict[str, str]
    parties: dict[str, str]


class QueryError(Exception):
    """A query that did not return an answer; the message says what to do."""


class InvalidURL(QueryError):
    pass


class WorkerUnreachable(QueryError):
    pass


class WorkerHTTPError(QueryError):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _check_base_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidURL(f"{url!r} is not a worker URL; give one like http://127.0.0.1:6066")
    try:
        _ = parsed.port
    except ValueError:
        raise InvalidURL(f"{url!r} has an invalid port; give one like "
                         "http://127.0.0.1:6066") from None
    return url.rstrip("/")


def _error_text(raw: bytes) -> tuple[str, Any]:
    """The API's ``{"error": ...}`` message, else the start of what came back."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        text = " ".join(raw.decode("utf-8", "replace").split())
        return (f"a non-JSON answer ({text[:80]!r}): is this a streamer worker, "
                "or a proxy in front of it?" if text else "an empty answer"), None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], body
    return "an answer without an error message", body


class QueryClient:
    def __init__(self, base_url: str, *, token: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.base_url = _check_base_url(base_url)
        self.token = token
        self.timeout_s = timeout_s

    # -- endpoints -----------------------------------------------------------------

    def track_usage(self, track_id: str, *, window: str | None = None,
                    at: int | None = None, by: str | None = None) -> TrackUsage:
        return self._get(f"/v1/tracks/{_segment(track_id)}/usage", TrackUsage,
                         window=window, at=at, by=by)

    def holder_usage(self, holder_id: str, *, window: str | None = None,
                     at: int | None = None, by: str | None = None) -> HolderUsage:
        return self._get(f"/v1/holders/{_segment(holder_id)}/usage", HolderUsage,
                         window=window, at=at, by=by)

    def genre_usage(self, genre: str, *, window: str | None = None,
                    at: int | None = None, by: str | None = None) -> GenreUsage:
        return self._get(f"/v1/genres/{_segment(genre)}/usage", GenreUsage,
                         window=window, at=at, by=by)

    def track_range(self, track_id: str, first: date | str, last: date | str, *,
                    by: str | None = None) -> TrackRangeUsage:
        """Uses over the UTC days ``first`` to ``last`` (inclusive, at most 400)."""
        return self._get(f"/v1/tracks/{_segment(track_id)}/usage", TrackRangeUsage,
                         query=_range_params(first, last, by))

    def holder_range(self, holder_id: str, first: date | str, last: date | str, *,
                     by: str | None = None) -> HolderRangeUsage:
        return self._get(f"/v1/holders/{_segment(holder_id)}/usage", HolderRangeUsage,
                         query=_range_params(first, last, by))

    def genre_range(self, genre: str, first: date | str, last: date | str, *,
                    by: str | None = None) -> GenreRangeUsage:
        return self._get(f"/v1/genres/{_segment(genre)}/usage", GenreRangeUsage,
                         query=_range_params(first, last, by))

    def holder_statement(self, holder_id: str, period: str, *, territory: str | None = None,
                         provisional: bool = False) -> Statement:
        """The holder's statement summary for ``period`` (YYYY-MM), from the ledger."""
        return self._get(f"/v1/holders/{_segment(holder_id)}/statement", Statement,
                         period=period, territory=territory,
                         provisional="true" if provisional else None)

    def trending(self, *, window: str | None = None, at: int | None = None,
                 limit: int | None = None, genre: str | None = None) -> Trending:
        return self._get("/v1/trending", Trending, window=window, at=at, limit=limit,
                         genre=genre)

    def ai_share(self, genre: str | None = None, *, window: str | None = None,
                 from_: str | int | None = None, to: str | int | None = None,
                 top: int | None = None) -> AiShare:
        """The AI share series of one genre, or of the whole catalog (``genre`` None)."""
        path = "/v1/ai-share" if genre is None else f"/v1/genres/{_segment(genre)}/ai-share"
        # "from" is a Python keyword: passed through a dict (of Any, as _get's params).
        bounds: dict[str, Any] = {"from": from_, "to": to}
        return self._get(path, AiShare, window=window, top=top, **bounds)

    def health(self) -> Health:
        """The worker's consumption status; a 503 still returns it (``status`` says so)."""
        return self._get("/v1/health", Health, accept_statuses=(503,))

    def live(self) -> Probe:
        return self._get("/v1/live", Probe, accept_statuses=(503,))

    def ready(self) -> Probe:
        return self._get("/v1/ready", Probe, accept_statuses=(503,))

    # -- transport -----------------------------------------------------------------

    def _get(self, path: str, kind: type[T], *, accept_statuses: tuple[int, ...] = (),
             query: dict[str, object] | None = None, **params: object) -> T:
        """GET ``path`` with the non-None ``query`` and ``params`` (``query`` for names
        that are Python keywords, like ``from``)."""
        query = {k: v for k, v in {**(query or {}), **params}.items() if v is not None}
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        status, raw = self._fetch(request)
        if status >= 400 and status not in accept_statuses:
            text, body = _error_text(raw)
            raise WorkerHTTPError(status, f"the worker at {self.base_url} answered "
                                          f"HTTP {status}: {text}", body)
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.DecodeError as exc:
            text, _ = _error_text(raw)
            detail = text if "non-JSON" in text else f"an unexpected answer ({exc})"
            raise WorkerHTTPError(status, f"the worker at {self.base_url} answered "
                                          f"HTTP {status} with {detail}") from None

    def _fetch(self, request: urllib.request.Request) -> tuple[int, bytes]:
        where = f"no worker answers at {self.base_url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), bytes(exc.read())
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise WorkerUnreachable(f"{where} within {self.timeout_s:g} s (timed out); "
                                        "raise STREAMER_QUERY_TIMEOUT_S or check the worker"
                                        ) from None
            raise WorkerUnreachable(f"{where} ({reason}); is the worker running "
                                    "(streamer worker) and the URL right?") from None
        except TimeoutError:
            raise WorkerUnreachable(f"{where} within {self.timeout_s:g} s (timed out); "
                                    "raise STREAMER_QUERY_TIMEOUT_S or check the worker"
                                    ) from None
        except (ConnectionError, OSError) as exc:
            raise WorkerUnreachable(f"{where} ({exc}); is the worker running?") from None


def _range_params(first: date | str, last: date | str, by: str | None) -> dict[str, object]:
    return {"from": str(first), "to": str(last), "by": by}


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")
