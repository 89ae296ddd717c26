"""UsageProducer refuses an invalid event before anything reaches Kafka.

The SDK validates with the worker's own rules, so a producer learns of a bad event
from the exception, naming the rule and field, instead of from the dead-letter topic.
No broker is needed: validation comes before the first use of the Kafka client.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamer.config import KafkaSettings
from streamer.events.validation import Rejected
from streamer.producer import UsageProducer


def _track(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "tc-1", "track_id": "trk-1", "occurred_at": 1_700_000_000_000,
        "creator_id": "c", "genre": "lofi", "ai_origin": "human",
        "rights": [{"holder_id": "label-a", "right": "master", "share": "1"}]}
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"artist": ""}, "invalid_value", "artist"),
        ({"artist": "a" * 513}, "invalid_value", "artist"),
        ({"artist": 5}, "wrong_type", "artist"),
        ({"label": "l" * 257}, "invalid_value", "label"),
        ({"label": ["Columbia"]}, "wrong_type", "label"),
        ({"genre": "Lo Fi"}, "invalid_value", "genre"),
    ],
)
async def test_send_track_refuses_an_invalid_track_before_sending(
        changes: dict[str, Any], code: str, field: str) -> None:
    producer = UsageProducer(KafkaSettings())  # never started: nothing may be sent
    with pytest.raises(Rejected) as info:
        await producer.send_track(_track(**changes))
    assert (info.value.code, info.value.field) == (code, field)
    assert producer.records_sent == 0


async def test_send_use_refuses_an_invalid_use_before_sending() -> None:
    producer = UsageProducer(KafkaSettings())
    use = {"event_id": "e", "track_id": "trk-1", "occurred_at": 1, "user_id": "u",
           "use": "play", "country": "Germany"}
    with pytest.raises(Rejected) as info:
        await producer.send_use(use)
    assert (info.value.code, info.value.field) == ("invalid_value", "country")
    assert producer.events_sent == 0 and producer.records_sent == 0
