"""Validation of the two input events, with the rules of the published JSON Schemas.

The schemas in ``schemas/`` are the contract for producers in other languages; these
hand-written checks enforce the same rules (tests/unit/test_schema_parity.py proves it)
at a fraction of a generic validator's cost, because they run once per event on the
hot path. Every rejection names its rule and field so it can go to the dead-letter
topic with a reason a producer can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from importlib import resources
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec.structs import astuple

from streamer.events.shares import MICRO, ShareError, share_to_micro

USE_CREATE = "create"
USE_PLAY = "play"
USES = (USE_CREATE, USE_PLAY)
AI_ORIGINS = ("human", "ai_assisted", "ai_generated")
RIGHTS = ("master", "publishing")

_TRACK_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_GENRE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_ISRC = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")
_ISWC = re.compile(r"T[0-9]{10}")
_CONTROL = re.compile(r"[\x00-\x1f]")
_MAX_EPOCH_MS = 2**53 - 1
_MAX_RIGHTS = 64


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
        if not _TRACK_ID.fullmatch(value):
            raise Rejected("invalid_value", "track_id", "must be 1-128 characters of A-Za-z0-9._:-")
        if len(self.seen) >= self._limit:
            self.seen.clear()
        self.seen.add(value)
        return value


_track_ids = _TrackIdCache()


def _check_epoch_ms(value: object) -> int:
    if value is None:
        raise _missing("occurred_at")
    if type(value) is not int:
        raise Rejected("wrong_type", "occurred_at", "expected integer epoch milliseconds")
    if not 0 <= value <= _MAX_EPOCH_MS:
        raise Rejected("invalid_value", "occurred_at", "epoch milliseconds out of range")
    return value


def parse_sound_used(obj: object) -> tuple[str, str, int, str]:
    """Check one SoundUsed; return ``(event_id, track_id, occurred_at, use)``."""
    if type(obj) is not dict:
        raise Rejected("not_object", None, f"expected a JSON object, got {_json_type(obj)}")
    event_id = obj.get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= 128:
        _check_id(obj, "event_id")
    track_id = _track_ids.check(obj.get("track_id"))
    occurred_at = obj.get("occurred_at")
    if type(occurred_at) is not int or not 0 <= occurred_at <= _MAX_EPOCH_MS:
        _check_epoch_ms(occurred_at)
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
    return event_id, track_id, occurred_at, use  # type: ignore[return-value]


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class SoundUsed(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A valid SoundUsed, as the hot path needs it (the garbage collector can skip it).

    Unknown fields are refused here: msgspec skips an unknown field's value without the
    checks orjson makes (invalid UTF-8, a number overflowing a double), so a record with
    one is decoded again with ``_SoundUsedWithExtras`` only after orjson has read it.
    """

    event_id: _Id
    track_id: Annotated[str, msgspec.Meta(max_length=128)]  # the pattern: _track_ids
    occurred_at: Annotated[int, msgspec.Meta(ge=0, le=_MAX_EPOCH_MS)]
    user_id: _Id
    use: Literal["create", "play"]
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}\Z")]
    video_id: _Id | None = None


class _SoundUsedWithExtras(SoundUsed, forbid_unknown_fields=False):
    """SoundUsed for a record whose unknown fields orjson has already accepted (made a
    plain SoundUsed after decoding: structs of different classes never compare equal)."""


_USES_DECODER = msgspec.json.Decoder(list[SoundUsed] | SoundUsed)
_USES_WITH_EXTRAS_DECODER = msgspec.json.Decoder(
    list[_SoundUsedWithExtras] | _SoundUsedWithExtras)


def decode_uses(value: bytes) -> list[SoundUsed] | SoundUsed | int | None:
    """A whole ``sounds.used`` record when every event in it is valid; otherwise the
    position of the first event of the batch found invalid, or None if unknown.

    The fast path: msgspec decodes and checks a 500-event batch in C. Any other answer
    sends the record down the slow path (``RecordProcessor._count_checking_each``),
    which accepts exactly the same events and names the problem of each bad one; the
    two must agree (tests/unit/test_fast_decode.py proves it on generated inputs). The
    position only lets the slow path decode the events around it whole again.
    """
    try:
        decoded = _USES_DECODER.decode(value)
    except msgspec.ValidationError as exc:
        if "unknown field" not in str(exc):
            return _failed_position(exc)
        # Producers may add fields of their own: valid JSON to orjson, they are skipped.
        try:
            orjson.loads(value)
            with_extras = _USES_WITH_EXTRAS_DECODER.decode(value)
        except (orjson.JSONDecodeError, msgspec.DecodeError, RecursionError):
            return None
        decoded = ([SoundUsed(*astuple(event)) for event in with_extras]
                   if type(with_extras) is list else SoundUsed(*astuple(with_extras)))
    except (msgspec.DecodeError, RecursionError):  # not JSON to msgspec; deep nesting
        return None
    seen = _track_ids.seen
    if type(decoded) is list:
        event = None
        try:
            for event in decoded:
                if event.track_id not in seen:
                    _track_ids.check(event.track_id)
        except Rejected:
            return next(position for position, other in enumerate(decoded) if other is event)
    elif decoded.track_id not in seen:
        try:
            _track_ids.check(decoded.track_id)
        except Rejected:
            return None
    return decoded


def _failed_position(error: msgspec.ValidationError) -> int | None:
    """The batch position in msgspec's message (``... - at `$[12].country```), if any."""
    message = str(error)
    start = message.rfind("- at `$[")
    if start < 0:
        return None
    end = message.find("]", start)
    try:
        return int(message[start + 8:end])
    except ValueError:
        return None


def decode_sound_used(value: bytes) -> list[SoundUsed] | SoundUsed | None:
    """``decode_uses`` without the position: the record's events, or None."""
    decoded = decode_uses(value)
    return None if type(decoded) is int else decoded  # type: ignore[return-value]


def check_track_id(value: object) -> str:
    """The track id if it is valid (cached: hot tracks repeat), else Rejected."""
    return _track_ids.check(value)


def sound_used_of(obj: object) -> SoundUsed:
    """The reference rules (``parse_sound_used``), with the event as a SoundUsed."""
    event_id, track_id, occurred_at, use = parse_sound_used(obj)
    fields: dict[str, Any] = obj  # type: ignore[assignment]  (a dict: parsed above)
    return SoundUsed(event_id, track_id, occurred_at, fields["user_id"], use,  # type: ignore[arg-type]
                     fields["country"], fields.get("video_id"))


_encode_json = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class TrackMeta:
    """What attribution needs to know about a track; stored in the Redis catalog."""

    genre: str
    ai_origin: str
    master: tuple[tuple[str, int], ...]
    publishing: tuple[tuple[str, int], ...]
    # The attribution plan, built once (pipeline/attribution.py).
    plan: object | None = dataclass_field(
        default=None, compare=False, repr=False
    )

    def holders(self, right: str) -> tuple[tuple[str, int], ...]:
        return self.master if right == "master" else self.publishing

    def to_json(self) -> bytes:
        """The catalog entry; msgspec writes the same bytes as orjson, 4x faster on tuples."""
        return _encode_json(
            {"g": self.genre, "o": self.ai_origin, "m": self.master, "p": self.publishing}
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> TrackMeta:
        raw = orjson.loads(data)
        return cls(
            genre=raw["g"],
            ai_origin=raw["o"],
            master=tuple((holder, micro) for holder, micro in raw["m"]),
            publishing=tuple((holder, micro) for holder, micro in raw["p"]),
        )


class _Right(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """One rights entry as ``decode_track_created`` reads it (control chars: checked after)."""

    holder_id: _Id
    right: Literal["master", "publishing"]
    share: int | float | str


class _TrackCreated(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A TrackCreated as msgspec can check it in C; patterns are checked after, in Python.

    Unknown fields are refused (the record takes the slow path): msgspec skips an
    unknown field's value without the checks orjson makes (invalid UTF-8, a number
    overflowing a double), so skipping one could count a record the reference rejects
    as not JSON. msgspec's ``pattern`` calls Python's re per field and costs more than
    the checks below.
    """

    event_id: _Id
    track_id: Annotated[str, msgspec.Meta(max_length=128)]  # the pattern: _track_ids
    occurred_at: Annotated[int, msgspec.Meta(ge=0, le=_MAX_EPOCH_MS)]
    creator_id: _Id
    genre: str
    ai_origin: Literal["human", "ai_assisted", "ai_generated"]
    rights: Annotated[list[_Right], msgspec.Meta(max_length=_MAX_RIGHTS)]
    isrc: str | None = None
    iswc: str | None = None
    title: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    # orjson reads integers above 2**64 - 1 as floats (rejected); msgspec bounds are int64.
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    ai_tool: Annotated[str, msgspec.Meta(max_length=128)] | None = None


_TRACK_DECODER = msgspec.json.Decoder(_TrackCreated)


def decode_track_created(value: bytes) -> tuple[str, str, int, TrackMeta] | None:
    """``parse_track_created(orjson.loads(value))`` when it accepts the event, or None.

    The fast path of the ``tracks.created`` hot path: msgspec decodes and checks types,
    lengths, ranges and enums in C, a few lines here the rest. None sends the record
    down the slow path (orjson + ``parse_track_created``), which names the problem; the
    two must agree on every accepted event (tests/unit/test_fast_decode.py proves it on
    generated inputs), and this one may decline anything it is not sure of.
    """
    try:
        event = _TRACK_DECODER.decode(value)
    except (msgspec.DecodeError, RecursionError):  # ValidationError included
        return None
    track_id = event.track_id
    genre = event.genre
    try:
        if track_id not in _track_ids.seen:
            _track_ids.check(track_id)
        if genre not in _genres_seen:
            if not _GENRE.fullmatch(genre):
                return None
            if len(_genres_seen) >= 10_000:
                _genres_seen.clear()
            _genres_seen.add(genre)
        isrc = event.isrc
        if isrc is not None and not _ISRC.fullmatch(isrc):
            return None
        iswc = event.iswc
        if iswc is not None and not _ISWC.fullmatch(iswc):
            return None
        master: list[tuple[str, int]] = []
        publishing: list[tuple[str, int]] = []
        for entry in event.rights:
            holder = entry.holder_id
            if _CONTROL.search(holder):
                return None
            share = entry.share
            micro = _shares_seen.get(share)
            if micro is None:
                micro = share_to_micro(share)
                if len(_shares_seen) >= 10_000:
                    _shares_seen.clear()
                _shares_seen[share] = micro
            pair = (holder, micro)
            if entry.right == "master":
                master.append(pair)
            else:
                publishing.append(pair)
    except (Rejected, ShareError):
        return None
    if ((len(master) > 1 and not _split_ok(master))
            or (len(publishing) > 1 and not _split_ok(publishing))):
        return None
    return event.event_id, track_id, event.occurred_at, TrackMeta(
        genre, event.ai_origin, tuple(master), tuple(publishing))


def _split_ok(holders: list[tuple[str, int]]) -> bool:
    """No holder twice, and the shares add up to at most one (a plain loop: a right has
    a few holders, and a set comprehension cost a fifth of the fast path)."""
    total = 0
    seen: list[str] = []
    for holder, micro in holders:
        if holder in seen:
            return False
        seen.append(holder)
        total += micro
    return total <= MICRO


_genres_seen: set[str] = set()
"""Genres that passed ``_GENRE``: a few hundred values, each checked once."""

_shares_seen: dict[int | float | str, int] = {}
"""Accepted shares as msgspec decoded them, with their micro-shares: producers write a
few dozen split values. Keyed by value, which is exact here: a share is an int, a float
or a str (never a bool, which would equal 1), and equal numbers (1 and 1.0) have the
same micro-shares; rejected values (NaN, 0.0, -0.0, ...) are never stored."""


def parse_track_created(obj: object) -> tuple[str, str, int, TrackMeta]:
    """Check one TrackCreated; return ``(event_id, track_id, occurred_at, meta)``."""
    if type(obj) is not dict:
        raise Rejected("not_object", None, f"expected a JSON object, got {_json_type(obj)}")
    event_id = _check_id(obj, "event_id")
    track_id = _track_ids.check(obj.get("track_id"))
    occurred_at = _check_epoch_ms(obj.get("occurred_at"))
    _check_id(obj, "creator_id")
    genre = obj.get("genre")
    if genre is None:
        raise _missing("genre")
    if type(genre) is not str or not _GENRE.fullmatch(genre):
        raise Rejected("invalid_value", "genre", "must be lowercase [a-z0-9_-], 1-64 characters")
    ai_origin = obj.get("ai_origin")
    if ai_origin is None:
        raise _missing("ai_origin")
    if ai_origin not in AI_ORIGINS:
        raise Rejected("invalid_value", "ai_origin", "must be human, ai_assisted or ai_generated")
    master, publishing = _parse_rights(obj.get("rights"))
    _check_optional(obj)
    return event_id, track_id, occurred_at, TrackMeta(genre, ai_origin, master, publishing)


def _parse_rights(rights: object) -> tuple[tuple[tuple[str, int], ...], ...]:
    if rights is None:
        raise _missing("rights")
    if type(rights) is not list:
        raise Rejected("wrong_type", "rights", "expected a list of {holder_id, right, share}")
    if len(rights) > _MAX_RIGHTS:
        raise Rejected("invalid_value", "rights", f"at most {_MAX_RIGHTS} entries")
    by_right: dict[str, list[tuple[str, int]]] = {"master": [], "publishing": []}
    for index, entry in enumerate(rights):
        where = f"rights[{index}]"
        if type(entry) is not dict:
            raise Rejected("wrong_type", where, "expected an object {holder_id, right, share}")
        holder = entry.get("holder_id")
        if holder is None:
            raise _missing(f"{where}.holder_id")
        if type(holder) is not str or not 0 < len(holder) <= 128 or _CONTROL.search(holder):
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
    if isrc is not None and (type(isrc) is not str or not _ISRC.fullmatch(isrc)):
        raise Rejected("invalid_value", "isrc", "must be an ISRC such as USUV71101875")
    iswc = obj.get("iswc")
    if iswc is not None and (type(iswc) is not str or not _ISWC.fullmatch(iswc)):
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


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def load_schema(name: str) -> dict[str, Any]:
    """The published JSON Schema, ``"track_created"`` or ``"sound_used"``."""
    text = resources.files("streamer.events").joinpath(f"schemas/{name}.schema.json").read_bytes()
    return orjson.loads(text)
