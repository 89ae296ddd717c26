"""The slow decode path: a record the fast path declined, checked event by event.

Record bytes in; the valid events (each with its original JSON, for the DLQ should a
later check reject it) and the rejections, each with the bytes it names, out. Nothing
here knows partitions, offsets or counters: pipeline/processor.py counts what comes
out and sends the rejections on.

A ``sounds.used`` batch with one bad event rejects exactly that event with the
reason of its first broken rule; the valid ones around it are decoded whole, in runs
(``_decode_around_bad``) and chunks, not one by one. A record that is not JSON to
msgspec goes to orjson, which names the problem. A ``tracks.created`` record the fast
decoder declined gets the reference rules (``parse_track_created``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import orjson

from streamer.events.validation import (
    COUNTRY_CODES,
    Rejected,
    SoundUsed,
    TrackMeta,
    check_track_id,
    decode_sound_used,
    decode_uses,
    parse_track_created,
    sound_used_of,
)

RAW_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
"""A batch record's events as their original JSON, undecoded."""

_ONE_USE = msgspec.json.Decoder(SoundUsed)
_CHUNK = 50  # events decoded together on the slow path
_LOCATED_BAD_EVENTS = 4  # bad events of one record found by position before the chunks

ParsedTrack = tuple[str, str, int, TrackMeta]
"""event_id, track_id, occurred_at, metadata of a valid TrackCreated."""


class RejectedRecord(NamedTuple):
    """A ``tracks.created`` record rejected whole, and the events it carried (0 or 1)."""

    rejected: Rejected
    carried: int


@dataclass(slots=True)
class CheckedUses:
    """A ``sounds.used`` record after the slow path."""

    # Events the record carried (0 when it was rejected whole).
    carried: int
    # Its valid events, and each one's original JSON.
    events: list[SoundUsed] = field(default_factory=list)
    raws: list[Any] = field(default_factory=list)
    # Rejections in the order found, each with the bytes that go to the DLQ.
    rejected: list[tuple[bytes, Rejected]] = field(default_factory=list)
    # The record is one event, not a batch.
    single: bool = False


def batch_size_rejection(carried: int, max_batch: int) -> Rejected:
    """Why a batch of ``carried`` events is refused (outside 1..max_batch)."""
    if carried == 0:
        return Rejected("empty_batch", None, "a batch record needs 1 or more events")
    return Rejected("batch_too_large", None, f"{carried} events, the limit is {max_batch}")


def _decode(value: bytes) -> object:
    """The record's JSON; raises Rejected (``not_json``) with orjson's description."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", None, str(exc)[:200]) from None


def check_uses(value: bytes, max_batch: int, first_bad: int | None = None) -> CheckedUses:
    """The slow path of a ``sounds.used`` record with an invalid event (or not JSON).

    Each bad event of a batch is rejected as its own original JSON, with the reason of
    its first broken rule; the valid ones around it are returned as usual.
    ``first_bad``: the position of the first bad event, when the fast path knew it.
    """
    try:
        elements: list[Any] = RAW_ELEMENTS.decode(value)
    except (msgspec.DecodeError, RecursionError):
        try:
            decoded = _decode(value)  # orjson names the problem
        except Rejected as rejected:
            return CheckedUses(0, rejected=[(value, rejected)])
        if type(decoded) is not list:
            checked = CheckedUses(1, single=True)
            event = _checked(decoded, value, checked)
            if event is not None:
                checked.events.append(event)
                checked.raws.append(value)
            return checked
        elements = [orjson.dumps(element) for element in decoded]
        first_bad = None
    if not 0 < len(elements) <= max_batch:
        return CheckedUses(0, rejected=[(value, batch_size_rejection(len(elements),
                                                                       max_batch))])
    checked = CheckedUses(len(elements))
    events, raws = checked.events, checked.raws
    resume = _decode_around_bad(elements, first_bad, checked)
    for start in range(resume, len(elements), _CHUNK):
        # Most chunks of a record with one bad event are fine: decode them whole.
        chunk = elements[start:start + _CHUNK]
        valid = decode_sound_used(b"[" + b",".join(chunk) + b"]")
        if type(valid) is list:
            events.extend(valid)
            raws.extend(chunk)
            continue
        for element in chunk:
            event = _one_event(bytes(element), checked)
            if event is not None:
                events.append(event)
                raws.append(element)
    return checked


def _decode_around_bad(elements: list[Any], bad: int | None, checked: CheckedUses) -> int:
    """Decode whole the runs of events between the bad ones msgspec points at.

    Each run is one decode: the events before the bad one, which msgspec had already
    accepted, then everything after it, until it names no position (then the chunks
    take over from the returned position). A few bad events at most: many of them
    would make this quadratic, the chunks are not.
    """
    events, raws = checked.events, checked.raws
    position = 0
    for _ in range(_LOCATED_BAD_EVENTS):
        rest = len(elements) - position
        if bad is None or not 0 <= bad < rest:
            return position
        if bad:
            head = elements[position:position + bad]
            valid = decode_sound_used(b"[" + b",".join(head) + b"]")
            if type(valid) is not list:
                return position
            events.extend(valid)
            raws.extend(head)
        element = elements[position + bad]
        event = _one_event(bytes(element), checked)
        if event is not None:
            events.append(event)
            raws.append(element)
        position += bad + 1
        if position == len(elements):
            return position
        tail = elements[position:]
        decoded = decode_uses(b"[" + b",".join(tail) + b"]")
        if type(decoded) is list:
            events.extend(decoded)
            raws.extend(tail)
            return len(elements)
        bad = decoded if type(decoded) is int else None
    return position


def _one_event(element: bytes, checked: CheckedUses) -> SoundUsed | None:
    """One element of a batch: the event, or None after rejecting it."""
    try:
        event = _ONE_USE.decode(element)  # no unknown fields (see SoundUsed)
        check_track_id(event.track_id)
        if event.country in COUNTRY_CODES:
            return event
    except (msgspec.DecodeError, RecursionError, Rejected):
        pass
    try:
        obj = _decode(element)
    except Rejected as rejected:
        checked.rejected.append((element, rejected))
        return None
    return _checked(obj, element, checked)


def _checked(obj: object, raw: bytes, checked: CheckedUses) -> SoundUsed | None:
    """``obj`` as a SoundUsed by the reference rules, or None after rejecting it."""
    try:
        return sound_used_of(obj)
    except Rejected as rejected:
        checked.rejected.append((raw, rejected))
        return None


def check_track(value: bytes) -> ParsedTrack | RejectedRecord:
    """The slow path of a ``tracks.created`` record the fast decoder declined: orjson
    and the reference rules name its problem (or accept it)."""
    try:
        decoded = _decode(value)
    except Rejected as rejected:
        return RejectedRecord(rejected, 0)
    try:
        return parse_track_created(decoded)
    except Rejected as rejected:
        return RejectedRecord(rejected, 1)
