"""The hot path's validation: msgspec checks whole records in C, the reference decides.

``decode_uses`` and ``decode_track_created`` decode and check a record with msgspec
structs; whatever they decline takes the slow path, the reference rules of
``schema_rules`` (pinned to the published JSON Schemas), which name the problem. The two
must accept exactly the same events (tests/unit/test_fast_decode.py proves it).

This module is also the one import for the rest of the worker: it re-exports the
reference rules and ``TrackMeta``.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any, Literal, cast

import msgspec
import orjson
from msgspec.structs import astuple

from streamer.events.schema_rules import (
    AI_ORIGINS,
    CONTROL_CHARS,
    GENRE_PATTERN,
    ISRC_PATTERN,
    ISWC_PATTERN,
    MAX_EPOCH_MS,
    MAX_RIGHTS,
    REPORT_NAMES,
    RIGHTS,
    USE_CREATE,
    USE_PLAY,
    USES,
    Rejected,
    check_track_id,
    load_schema,
    parse_sound_used,
    parse_track_created,
    track_id_cache,
)
from streamer.events.shares import MICRO, ShareError, share_to_micro
from streamer.events.track_meta import TrackMeta

__all__ = [
    "AI_ORIGINS",
    "COUNTRY_CODES",
    "RIGHTS",
    "USES",
    "USE_CREATE",
    "USE_PLAY",
    "Rejected",
    "SoundUsed",
    "TrackMeta",
    "check_track_id",
    "decode_sound_used",
    "decode_track_created",
    "decode_uses",
    "load_schema",
    "parse_sound_used",
    "parse_track_created",
    "sound_used_of",
]

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class SoundUsed(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A valid SoundUsed, as the hot path needs it (the garbage collector can skip it).

    Unknown fields are refused here: msgspec skips an unknown field's value without the
    checks orjson makes (invalid UTF-8, a number overflowing a double), so a record with
    one is decoded again with ``_SoundUsedWithExtras`` only after orjson has read it.
    """

    event_id: _Id
    track_id: Annotated[str, msgspec.Meta(max_length=128)]  # the pattern: track_id_cache
    occurred_at: Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)]
    user_id: _Id
    use: Literal["create", "play"]
    country: str  # checked after the decode: ``COUNTRY_CODES``
    video_id: _Id | None = None


COUNTRY_CODES = frozenset(chr(first) + chr(second) for first in range(ord("A"), ord("Z") + 1)
                          for second in range(ord("A"), ord("Z") + 1))
"""Every string the schema's country pattern (``^[A-Z]{2}$``) accepts: a set lookup per
event, where msgspec's ``pattern`` called Python's re per field (0.4 us an event)."""

_track_of = attrgetter("track_id")
_country_of = attrgetter("country")


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
                   if isinstance(with_extras, list) else SoundUsed(*astuple(with_extras)))
    except (msgspec.DecodeError, RecursionError):  # not JSON to msgspec; deep nesting
        return None
    seen = track_id_cache.seen
    if isinstance(decoded, list):
        # One pass each over the batch in C; Python per event only for a new track id.
        if seen.issuperset(map(_track_of, decoded)):
            first_bad = len(decoded)
        else:
            first_bad = _first_bad_track(decoded)
        if not COUNTRY_CODES.issuperset(map(_country_of, decoded)):
            first_bad = min(first_bad, next(
                position for position, event in enumerate(decoded)
                if event.country not in COUNTRY_CODES))
        return decoded if first_bad == len(decoded) else first_bad
    if decoded.country not in COUNTRY_CODES:
        return None
    if decoded.track_id not in seen:
        try:
            track_id_cache.check(decoded.track_id)
        except Rejected:
            return None
    return decoded


def _first_bad_track(events: list[SoundUsed]) -> int:
    """The position of the first event whose track id is invalid, or ``len(events)``."""
    seen = track_id_cache.seen
    for position, event in enumerate(events):
        if event.track_id not in seen:
            try:
                track_id_cache.check(event.track_id)
            except Rejected:
                return position
    return len(events)


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
    return None if isinstance(decoded, int) else decoded


def sound_used_of(obj: object) -> SoundUsed:
    """The reference rules (``parse_sound_used``), with the event as a SoundUsed."""
    event_id, track_id, occurred_at, use = parse_sound_used(obj)
    fields = cast("dict[str, Any]", obj)  # parse_sound_used accepted it: a dict
    return SoundUsed(event_id, track_id, occurred_at, fields["user_id"], use,
                     fields["country"], fields.get("video_id"))


class _Right(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """One rights entry as ``decode_track_created`` reads it (control chars: checked after)."""

    holder_id: _Id
    right: Literal["master", "publishing"]
    share: int | float | str


_Artist = Annotated[str, msgspec.Meta(min_length=1, max_length=REPORT_NAMES["artist"])]
_Label = Annotated[str, msgspec.Meta(min_length=1, max_length=REPORT_NAMES["label"])]


class _TrackCreated(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A TrackCreated as msgspec can check it in C; patterns are checked after, in Python.

    Unknown fields are refused (the record takes the slow path): msgspec skips an
    unknown field's value without the checks orjson makes (invalid UTF-8, a number
    overflowing a double), so skipping one could count a record the reference rejects
    as not JSON. msgspec's ``pattern`` calls Python's re per field and costs more than
    the checks below.
    """

    event_id: _Id
    track_id: Annotated[str, msgspec.Meta(max_length=128)]  # the pattern: track_id_cache
    occurred_at: Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)]
    creator_id: _Id
    genre: str
    ai_origin: Literal["human", "ai_assisted", "ai_generated"]
    rights: Annotated[list[_Right], msgspec.Meta(max_length=MAX_RIGHTS)]
    isrc: str | None = None
    iswc: str | None = None
    title: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    # orjson reads integers above 2**64 - 1 as floats (rejected); msgspec bounds are int64.
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    ai_tool: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    artist: _Artist | None = None
    label: _Label | None = None


_TRACK_DECODER = msgspec.json.Decoder(_TrackCreated)


def decode_track_created(value: bytes) -> tuple[str, str, int, TrackMeta] | None:
    """``parse_track_created(orjson.loads(value))`` when it accepts the event, or None.

    The fast path of the ``tracks.created`` hot path: msgspec decodes and checks types,
    lengths, ranges and enums in C, a few lines here the rest. None sends the record
    down the slow path (orjson + ``parse_track_created``), which names the problem; the
    two must agree on every accepted event (tests/unit/test_fast_decode.py proves it on
    generated inputs), and this one may decline anything it is not sure of.

    Per holder it does a dict lookup (the share's micro-shares, cached by value) and
    one tuple: a string can only hold a control character if the record has a JSON
    escape (msgspec refuses raw ones), so without a backslash in the record no holder
    id is searched for them.
    """
    try:
        event = _TRACK_DECODER.decode(value)
    except (msgspec.DecodeError, RecursionError):  # ValidationError included
        return None
    track_id = event.track_id
    genre = event.genre
    try:
        if track_id not in track_id_cache.seen:
            track_id_cache.check(track_id)  # and remembered for the track's uses
    except Rejected:
        return None
    if genre not in _genres_seen:
        if not GENRE_PATTERN.fullmatch(genre):
            return None
        if len(_genres_seen) >= 10_000:
            _genres_seen.clear()
        _genres_seen.add(genre)
    isrc = event.isrc
    if isrc is not None and not _isrc_ok(isrc):
        return None
    iswc = event.iswc
    if iswc is not None and not ISWC_PATTERN.fullmatch(iswc):
        return None
    escaped = b"\\" in value
    micro_of = _shares_seen.get
    master: list[tuple[str, int]] = []
    publishing: list[tuple[str, int]] = []
    master_total = publishing_total = 0
    for entry in event.rights:
        holder = entry.holder_id
        if escaped and CONTROL_CHARS.search(holder):
            return None
        share = entry.share
        micro = micro_of(share)
        if micro is None:
            try:
                micro = share_to_micro(share)
            except ShareError:
                return None
            if len(_shares_seen) >= 10_000:
                _shares_seen.clear()
            _shares_seen[share] = micro
        if entry.right == "master":
            master.append((holder, micro))
            master_total += micro
        else:
            publishing.append((holder, micro))
            publishing_total += micro
    if master_total > MICRO or publishing_total > MICRO:
        return None
    if (len(master) > 1 and _repeats_holder(master)) or (
            len(publishing) > 1 and _repeats_holder(publishing)):
        return None
    return event.event_id, track_id, event.occurred_at, TrackMeta(
        genre, event.ai_origin, tuple(master), tuple(publishing), event.title, isrc,
        event.artist, event.label)


_isrc_ok = ISRC_PATTERN.fullmatch


def _repeats_holder(holders: list[tuple[str, int]]) -> bool:
    """A holder listed twice for one right (a plain loop: a right has a few holders, and
    a set comprehension cost a measurable share of the fast path; docs/BENCHMARKS.md)."""
    if len(holders) == 2:
        return holders[0][0] == holders[1][0]
    seen: list[str] = []
    for holder, _ in holders:
        if holder in seen:
            return True
        seen.append(holder)
    return False


_genres_seen: set[str] = set()
"""Genres that passed ``GENRE_PATTERN``: a few hundred values, each checked once."""

_shares_seen: dict[int | float | str, int] = {}
"""Accepted shares as msgspec decoded them, with their micro-shares: producers write a
few dozen split values. Keyed by value, which is exact here: a share is an int, a float
or a str (never a bool, which would equal 1), and equal numbers (1 and 1.0) have the
same micro-shares; rejected values (NaN, 0.0, -0.0, ...) are never stored."""
