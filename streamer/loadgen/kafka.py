"""The load generator's Kafka client side: the producer it sends with, the reachability check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any


class KafkaUnreachable(RuntimeError):
    """No broker answered at the bootstrap address."""


def make_producer(kafka: Mapping[str, Any], single: bool) -> Any:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    return AIOKafkaProducer(
        **kafka, acks="all", enable_idempotence=True,
        linger_ms=5 if single else 2,
        max_batch_size=256 * 1024 if single else 1 << 20,
        max_request_size=2 << 20, request_timeout_ms=30_000,
    )


async def check_kafka(kafka: Mapping[str, Any], timeout_s: float = 10.0) -> None:
    """Raise KafkaUnreachable with a clear message if no broker answers.

    aiokafka's own logging is silenced while probing: its "Unable connect to ..." line
    would only come before the caller's clearer message.
    """
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=int(timeout_s * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
            await asyncio.wait_for(admin.list_topics(), timeout_s)
        except Exception as exc:
            raise KafkaUnreachable(
                f"Kafka unreachable at {kafka.get('bootstrap_servers')}: {exc!r}") from None
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
    finally:
        aiokafka_log.setLevel(level)
