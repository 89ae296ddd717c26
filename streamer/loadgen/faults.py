"""Faulty inputs the traffic model mixes in: malformed uses and TrackCreated.

Each breaks one named rule of the contract, so the worker must send it to the
dead-letter topic with that reason; the unit tests check it with the worker's own
validator.
"""

from __future__ import annotations

from typing import Any

# Malformed uses: each breaks one named rule. {e}=event id, {t}=track id, {s}=occurred_at,
# {c}=country; the worker sends each to the dead-letter topic.
_INVALID_USES: tuple[tuple[str, str], ...] = (
    ("missing_field:user_id",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":{s},"use":"play","country":"{c}"}}'),
    ("invalid_value:use",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":{s},"user_id":"u1","use":"like",'
     '"country":"{c}"}}'),
    ("invalid_value:country",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":{s},"user_id":"u1","use":"play",'
     '"country":"usa"}}'),
    ("wrong_type:occurred_at",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":"{s}","user_id":"u1","use":"play",'
     '"country":"{c}"}}'),
    ("invalid_value:track_id",
     '{{"event_id":"{e}","track_id":"bad track!","occurred_at":{s},"user_id":"u1",'
     '"use":"play","country":"{c}"}}'),
    ("missing_field:event_id",
     '{{"track_id":"{t}","occurred_at":{s},"user_id":"u1","use":"create","country":"{c}"}}'),
    ("not_object", '[{s}]'),
    ("future",
     '{{"event_id":"{e}","track_id":"{t}","occurred_at":{f},"user_id":"u1","use":"play",'
     '"country":"{c}"}}'),
)
# occurred_at of the 'future' invalid uses: 9999-12-31T23:59:59Z, ahead of any wall clock
# (a fixed instant, not one relative to the event, so replaying an old start keeps them
# invalid) and still a valid epoch-ms integer, so the worker rejects them as 'future'.
FUTURE_OCCURRED_AT_MS = 253_402_300_799_000


def invalid_use(x: float, event_id: str, track_id: str, ts: int,
                country: str) -> tuple[bytes | None, str | None]:
    """A malformed use chosen by ``x`` in [0, 1): ``(whole record, None)`` for a record the
    worker cannot read at all (not JSON, an empty batch), else ``(None, element JSON)``."""
    if x < 0.1:
        value = (b"[]" if x < 0.03 else
                 f'{{"event_id":"{event_id}","track_id":"{track_id}","occ'.encode())
        return value, None
    _, template = _INVALID_USES[int((x - 0.1) / 0.9 * len(_INVALID_USES))]
    return None, template.format(e=event_id, t=track_id, s=ts, c=country,
                                 f=FUTURE_OCCURRED_AT_MS)


def break_track_event(event: dict[str, Any], number: int) -> None:
    """Make a valid TrackCreated invalid, in one of five ways chosen by ``number``."""
    variant = number % 5
    if variant == 0:
        event["rights"] = [{"holder_id": "lbl-1", "right": "master", "share": "0.7"},
                           {"holder_id": "lbl-2", "right": "master", "share": "0.4"}]
    elif variant == 1:
        event["ai_origin"] = "robot"
    elif variant == 2:
        del event["rights"]
    elif variant == 3:
        event["rights"] = [{"holder_id": "lbl-1", "right": "master", "share": "0.1234567"}]
    else:
        event["genre"] = "Lo-Fi"
