"""The published JSON Schemas' rules, written by hand: the reference validation.

The schemas in ``schemas/`` are the contract for producers in other languages; these
checks enforce the same rules (tests/unit/test_schema_parity.py proves it) and name the
rule and field of every rejection, so it can go to the dead-letter topic with a reason
a producer can act on. The hot path first tries the msgspec decoders of
``validation.py``, which must accept exactly what these accept.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Literal

import orjson

from streamer.events.shares import MICRO, ShareError, share_to_micro
from streamer.events.track_meta import TrackMeta

USE_CREATE = "create"
USE_PLAY = "play"
USES = (USE_CREATE, USE_PLAY)
Use = Literal["create", "play"]
AI_ORIGINS = ("human", "ai_assisted", "ai_generated")
RIGHTS = ("master", "publishing")

TRACK_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
GENRE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ISRC_PATTERN = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")
ISWC_PATTERN = re.compile(r"T[0-9]{10}")
CONTROL_CHARS = re.compile(r"[\x00-\x1f]")
MAX_EPOCH_MS = 2**53 - 1
MAX_RIGHTS = 64
REPORT_NAMES = {"artist": 512, "label": 256}
"""TrackCreated's optional names for royalty and DDEX reports, with their length limits
(display artist name, record label); they decide nothing the worker counts."""


class Rejected(Exception):
    """An input the worker will not count; ``code`` is a bounded metric label."""

    def __init__(self, code: str, field: str | None, detail: str) -> None:
        self.code = code
        self.field = field
        self.detail = detail
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        where = f":{self.field}" if self.field else ""
        return f"{self.code}{where}: {self.detail}"


def _missing(field: str) -> Rejected:
    return Rejected("missing_field", field, "required field is absent")


def _check_id(obj: dict[str, Any], field: str) -> str:
    value = obj.get(field)
    if value is None:
        raise _missing(field)
    if type(value) is not str:
        raise Rejected("wrong_type", field, f"expected a string, got {type(value).__name__}")
    if not 0 < len(value) <= 128:
        raise Rejected("invalid_value", field, "must be 1 to 128 characters")
    return value


class _TrackIdCache:
    """Hot tracks repeat constantly (Zipf), so remember ids that already passed the regex."""

    __slots__ = ("_limit", "seen")

    def __init__(self, limit: int = 200_000) -> None:
        self.seen: set[str] = set()
        self._limit = limit

    def check(self, value: object) -> str:
        if type(value) is str and value in self.seen:
            return value
        if value is None:
            raise _missing("track_id")
        if type(value) is not str:
            raise Rejected(
                "wrong_type", "track_id", f"expected a string, got {type(value).__name__}"
            )
        # ASCII letters and digits alone (most ids) are in the pattern without the regex.
        if not (len(value) <= 128 and value.isascii() and value.isalnum()
                ) and not TRACK_ID_PATTERN.fullmatch(value):
            raise Rejected("invalid_value", "track_id", "must be 1-128 characters of A-Za-z0-9._:-")
        if len(self.seen) >= self._limit:
            self.seen.clear()
        self.seen.add(value)
        return value


track_id_cache = _TrackIdCache()


def _check_epoch_ms(value: object) -> int:
    if value is None:
        raise _missing("occurred_at")
    if type(value) is not int:
        raise Rejected("wrong_type", "occurred_at", "expected integer epoch milliseconds")
    if not 0 <= value <= MAX_EPOCH_MS:
        raise Rejected("invalid_value", "occurred_at", "epoch milliseconds out of range")
    return value


def parse_sound_used(obj: object) -> tuple[str, str, int, Use]:
    """Check one SoundUsed; return ``(event_id, track_id, occurred_at, use)``."""
    if type(obj) is not dict:
        raise Rejected("not_object", None, f"expected a JSON object, got {_json_type(obj)}")
    event_id = obj.get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= 128:
        event_id = _check_id(obj, "event_id")  # raises: the reason
    track_id = track_id_cache.check(obj.get("track_id"))
    occurred_at = obj.get("occurred_at")
    if type(occurred_at) is not int or not 0 <= occurred_at <= MAX_EPOCH_MS:
        occurred_at = _check_epoch_ms(occurred_at)  # raises: the reason
    user_id = obj.get("user_id")
    if type(user_id) is not str or not 0 < len(user_id) <= 128:
        _check_id(obj, "user_id")
    use = obj.get("use")
    if use != USE_PLAY and use != USE_CREATE:
        if use is None:
            raise _missing("use")
        raise Rejected("invalid_value", "use", "must be 'create' or 'play'")
    country = obj.get("country")
    if type(country) is not str or len(country) != 2 or not (country.isupper() and country.isascii()
                                                              and country.isalpha()):
        if country is None:
            raise _missing("country")
        raise Rejected("invalid_value", "country", "must be an ISO 3166-1 alpha-2 code, e.g. 'DE'")
    video_id = obj.get("video_id")
    if video_id is not None:
        _check_id(obj, "video_id")
    return event_id, track_id, occurred_at, use


def check_track_id(value: object) -> str:
    """The track id if it is valid (cached: hot tracks repeat), else Rejected."""
    return track_id_cache.check(value)


def parse_track_created(obj: object) -> tuple[str, str, int, TrackMeta]:
    """Check one TrackCreated; return ``(event_id, track_id, occurred_at, meta)``."""
    if type(obj) is not dict:
        raise Rejected("not_object", None, f"expected a JSON object, got {_json_type(obj)}")
    event_id = _check_id(obj, "event_id")
    track_id = track_id_cache.check(obj.get("track_id"))
    occurred_at = _check_epoch_ms(obj.get("occurred_at"))
    _check_id(obj, "creator_id")
    genre = obj.get("genre")
    if genre is None:
        raise _missing("genre")
    if type(genre) is not str or not GENRE_PATTERN.fullmatch(genre):
        raise Rejected("invalid_value", "genre", "must be lowercase [a-z0-9_-], 1-64 characters")
    ai_origin = obj.get("ai_origin")
    if ai_origin is None:
        raise _missing("ai_origin")
    if ai_origin not in AI_ORIGINS:
        raise Rejected("invalid_value", "ai_origin", "must be human, ai_assisted or ai_generated")
    master, publishing = _parse_rights(obj.get("rights"))
    _check_optional(obj)
    return event_id, track_id, occurred_at, TrackMeta(
        genre, ai_origin, master, publishing, obj.get("title"), obj.get("isrc"),
        obj.get("artist"), obj.get("label"))


def _parse_rights(rights: object) -> tuple[tuple[tuple[str, int], ...], ...]:
    if rights is None:
        raise _missing("rights")
    if type(rights) is not list:
        raise Rejected("wrong_type", "rights", "expected a list of {holder_id, right, share}")
    if len(rights) > MAX_RIGHTS:
        raise Rejected("invalid_value", "rights", f"at most {MAX_RIGHTS} entries")
    by_right: dict[str, list[tuple[str, int]]] = {"master": [], "publishing": []}
    for index, entry in enumerate(rights):
        where = f"rights[{index}]"
        if type(entry) is not dict:
            raise Rejected("wrong_type", where, "expected an object {holder_id, right, share}")
        holder = entry.get("holder_id")
        if holder is None:
            raise _missing(f"{where}.holder_id")
        if type(holder) is not str or not 0 < len(holder) <= 128 or CONTROL_CHARS.search(holder):
            raise Rejected(
                "invalid_value", f"{where}.holder_id", "must be 1-128 characters, no control chars"
            )
        right = entry.get("right")
        if right not in RIGHTS:
            if right is None:
                raise _missing(f"{where}.right")
            raise Rejected("invalid_value", f"{where}.right", "must be 'master' or 'publishing'")
        if "share" not in entry:
            raise _missing(f"{where}.share")
        try:
            micro = share_to_micro(entry["share"])
        except ShareError as exc:
            raise Rejected("bad_share", f"{where}.share", str(exc)) from None
        if any(existing == holder for existing, _ in by_right[right]):
            raise Rejected(
                "bad_share", f"{where}.holder_id", f"{holder!r} listed twice for {right}"
            )
        by_right[right].append((holder, micro))
    for right, holders in by_right.items():
        total = sum(micro for _, micro in holders)
        if total > MICRO:
            raise Rejected(
                "bad_share", "rights", f"{right} shares add up to {total / MICRO:.6f}, more than 1"
            )
    return tuple(by_right["master"]), tuple(by_right["publishing"])


def _check_optional(obj: dict[str, Any]) -> None:
    isrc = obj.get("isrc")
    if isrc is not None and (type(isrc) is not str or not ISRC_PATTERN.fullmatch(isrc)):
        raise Rejected("invalid_value", "isrc", "must be an ISRC such as USUV71101875")
    iswc = obj.get("iswc")
    if iswc is not None and (type(iswc) is not str or not ISWC_PATTERN.fullmatch(iswc)):
        raise Rejected("invalid_value", "iswc", "must be an ISWC such as T0345246801")
    title = obj.get("title")
    if title is not None and (type(title) is not str or len(title) > 512):
        raise Rejected("invalid_value", "title", "must be a string of at most 512 characters")
    duration = obj.get("duration_ms")
    if duration is not None and (type(duration) is not int or duration < 0):
        raise Rejected("invalid_value", "duration_ms", "must be a non-negative integer")
    ai_tool = obj.get("ai_tool")
    if ai_tool is not None and (type(ai_tool) is not str or len(ai_tool) > 128):
        raise Rejected("invalid_value", "ai_tool", "must be a string of at most 128 characters")
    for name, limit in REPORT_NAMES.items():
        value = obj.get(name)
        if value is None:
            continue
        if type(value) is not str:
            raise Rejected("wrong_type", name, f"expected a string, got {_json_type(value)}")
        if not 0 < len(value) <= limit:
            raise Rejected("invalid_value", name, f"must be 1 to {limit} characters")


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
             bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def load_schema(name: str) -> dict[str, Any]:
    """The published JSON Schema, ``"track_created"`` or ``"sound_used"``."""
    text = resources.files("streamer.events").joinpath(f"schemas/{name}.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(text)
    return schema
