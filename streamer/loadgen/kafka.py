"""The load generator's Kafka client side: the producer it sends with, the reachability check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any


class KafkaUnreachable(RuntimeError):
    """No broker answered at the bootstrap address, or it refused the connection.

    ``detail``: aiokafka's own reason when it logged one (a refused login, a TLS error),
    else the exception; ``refused`` says the broker answered but would not let us in.
    """

    def __init__(self, message: str, detail: str = "", refused: bool = False) -> None:
        super().__init__(message)
        self.detail = detail
        self.refused = refused


class _ErrorsOf(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def make_producer(kafka: Mapping[str, Any], single: bool) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        **kafka, acks="all", enable_idempotence=True,
        linger_ms=5 if single else 2,
        max_batch_size=256 * 1024 if single else 1 << 20,
        max_request_size=2 << 20, request_timeout_ms=30_000,
    )


async def check_kafka(kafka: Mapping[str, Any], timeout_s: float = 10.0) -> None:
    """Raise KafkaUnreachable with a clear message if no broker answers.

    aiokafka's own lines are held back while probing (its "Unable connect to ..." would
    only come before the caller's clearer message), and its error reason goes into that
    message instead; with ``--loglevel debug`` (aiokafka's logger set to DEBUG) they are
    logged as usual.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    aiokafka_log = logging.getLogger("aiokafka")
    propagate = aiokafka_log.propagate
    errors = _ErrorsOf()
    aiokafka_log.addHandler(errors)
    if aiokafka_log.level != logging.DEBUG:
        aiokafka_log.propagate = False
    try:
        admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=int(timeout_s * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
            await asyncio.wait_for(admin.list_topics(), timeout_s)
        except Exception as exc:
            detail = errors.messages[-1] if errors.messages else repr(exc)
            refused = any(word in detail for word in ("Authentication", "SSL", "certificate"))
            raise KafkaUnreachable(
                f"Kafka unreachable at {kafka.get('bootstrap_servers')}: {detail}",
                detail, refused) from None
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
    finally:
        aiokafka_log.removeHandler(errors)
        aiokafka_log.propagate = propagate
