"""ensure_topics waits for a new topic's partitions to show in the metadata.

Right after create_topics, describe_topics may list a new topic without partitions; the
count returned was then 0, and a first ``streamer load`` failed dividing by it. A fake
admin client stands in for Kafka's propagation delay (it cannot be provoked at will).
"""

from __future__ import annotations

from typing import Any

import pytest

import streamer.pipeline.topics as worker_module
from streamer.config import load_settings


class SlowMetadataAdmin:
    """Knows no topic; after creating them, shows their partitions from the third ask."""

    def __init__(self, **kwargs: Any) -> None:
        self.asked = 0
        self.created: dict[str, int] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, topics: list[Any]) -> None:
        self.created.update({topic.name: topic.num_partitions for topic in topics})

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.asked += 1
        shown = self.asked >= 3
        return [{"topic": name, "partitions": list(range(self.created[name])) if shown else []}
                for name in names]


async def test_new_topics_are_counted_once_their_partitions_show(
        monkeypatch: pytest.MonkeyPatch) -> None:
    admins: list[SlowMetadataAdmin] = []

    def make_admin(**kwargs: Any) -> SlowMetadataAdmin:
        admins.append(SlowMetadataAdmin(**kwargs))
        return admins[-1]

    monkeypatch.setattr(worker_module, "AIOKafkaAdminClient", make_admin)
    settings = load_settings({"STREAMER_PARTITIONS": "6"})
    assert await worker_module.ensure_topics(settings) == 6
    assert admins[0].asked == 3
