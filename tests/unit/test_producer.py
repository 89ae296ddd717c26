"""UsageProducer refuses an invalid event before anything reaches Kafka.

The SDK validates with the worker's own rules, so a producer learns of a bad event
from the exception, naming the rule and field, instead of from the dead-letter topic.
No broker is needed: validation comes before the first use of the Kafka client, and
the batching around that client is checked against a stand-in for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streamer.config import KafkaSettings
from streamer.events.validation import Rejected
from streamer.producer import MissingTopics, UsageProducer, client


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


class _DrainingKafka:
    """Stands in for aiokafka's producer: ``send`` waits until ``drained`` is set, as
    aiokafka's does while the partition's previous batch is still in flight."""

    def __init__(self, **_: Any) -> None:
        self.drained = asyncio.Event()
        self.sending = asyncio.Event()
        self.values: list[bytes] = []

    async def start(self) -> None:
        return None

    @property
    def client(self) -> _DrainingKafka:
        return self

    async def fetch_all_metadata(self) -> _DrainingKafka:
        return self

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[None]:
        self.sending.set()
        await self.drained.wait()
        self.values.append(value)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def stop(self) -> None:
        return None


async def test_stop_keeps_the_batch_the_linger_task_is_sending(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() while the linger task hands a partly filled batch to Kafka: the batch
    arrives. Cancelling the linger task there dropped it (82 of 1500 events lost in
    test_pipeline_counting under CPU load)."""
    kafka: list[_DrainingKafka] = []

    def make_kafka(**kwargs: Any) -> _DrainingKafka:
        kafka.append(_DrainingKafka(**kwargs))
        return kafka[-1]

    monkeypatch.setattr(client, "AIOKafkaProducer", make_kafka)
    producer = UsageProducer(KafkaSettings(), batch_events=100, linger_ms=20)
    await producer.start()
    events = [{"event_id": f"e-{n}", "track_id": "trk-1", "occurred_at": 1_700_000_000_000,
               "user_id": "u", "use": "play", "country": "DE"} for n in range(3)]
    for event in events:
        await producer.send_use(event)
    await asyncio.wait_for(kafka[0].sending.wait(), 5)  # the linger task is in send()
    stopping = asyncio.ensure_future(producer.stop())
    await asyncio.sleep(0.05)
    kafka[0].drained.set()
    await asyncio.wait_for(stopping, 5)
    sent = [event for value in kafka[0].values for event in orjson.loads(value)]
    assert sent == events
    assert producer.events_sent == len(events)


class _ClusterWithout(_DrainingKafka):
    """Kafka's metadata at start, without the topic named ``absent``."""

    absent = "tracks.created"

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return None if topic == self.absent else {0, 1}


@pytest.mark.parametrize("absent", ["sounds.used", "tracks.created"])
async def test_a_missing_topic_is_named_at_start_or_at_the_first_track(
        monkeypatch: pytest.MonkeyPatch, absent: str) -> None:
    """Told by one metadata answer, never by aiokafka's retries: asking it for a missing
    topic's partitions logs an error per retry until its request timeout."""
    monkeypatch.setattr(_ClusterWithout, "absent", absent)
    monkeypatch.setattr(client, "AIOKafkaProducer", _ClusterWithout)
    track = _track()
    with pytest.raises(MissingTopics) as strict:
        await UsageProducer(KafkaSettings(), require_tracks_topic=True).start()
    assert strict.value.topics == [absent]
    lenient = UsageProducer(KafkaSettings())
    if absent == "sounds.used":  # the uses topic is always needed: its partitions route
        with pytest.raises(MissingTopics):
            await lenient.start()
        return
    await lenient.start()
    with pytest.raises(MissingTopics) as late:
        await lenient.send_track(track)
    assert late.value.topics == ["tracks.created"] and lenient.records_sent == 0
    await lenient.stop()
