"""The dead-letter topic: every rejected input, with a reason a producer can act on.

Sends are asynchronous (aiokafka batches them); a flush calls ``confirm`` before it
moves the partition's offset past the rejected records, so a rejection is in the DLQ
before its record counts as processed. A send that fails is sent again until Kafka
takes it (a broker restart must not lose rejections). A record too large for the DLQ
topic goes there truncated, with headers saying so.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from streamer.metrics import Metrics
from streamer.state.partition import Rejection

log = logging.getLogger(__name__)

# Room for a rejected record of the largest size the input topics may be configured for.
DLQ_MAX_RECORD_BYTES = 16 << 20
_TRUNCATE_TO = 64 << 10
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


@dataclass(slots=True)
class PendingRejection:
    rejection: Rejection
    delivery: asyncio.Future[object] | None
    truncated: bool = False


class DeadLetters:
    def __init__(self, producer: AIOKafkaProducer, topic: str, metrics: Metrics) -> None:
        self.producer = producer
        self.topic = topic
        self.metrics = metrics

    async def send(self, rejection: Rejection) -> PendingRejection:
        """Hand the rejection to the producer; ``confirm`` makes sure it arrived."""
        pending = PendingRejection(rejection, None)
        await self._attempt(pending)
        return pending

    async def confirm(self, pending: list[PendingRejection]) -> None:
        """Wait until Kafka acknowledged every rejection, re-sending failed ones.

        A rejection the broker refuses as too large for the topic is re-sent truncated.
        """
        attempt = 0
        while True:
            failed: list[PendingRejection] = []
            for item in pending:
                if item.delivery is not None:
                    try:
                        await item.delivery
                        continue
                    except _TOO_LARGE:
                        item.truncated = True
                    except KafkaError as exc:
                        self.metrics.dlq_errors.inc()
                        log.warning("DLQ delivery failed, re-sending: %r", exc)
                failed.append(item)
            if not failed:
                return
            await asyncio.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)))
            attempt += 1
            for item in failed:
                await self._attempt(item)
            pending = failed

    async def _attempt(self, item: PendingRejection) -> None:
        """Start one delivery; ``item.delivery`` stays None if the producer refused it."""
        item.delivery = None
        try:
            item.delivery = await self._send(item.rejection, truncated=item.truncated)
        except _TOO_LARGE as exc:
            if not item.truncated:
                item.truncated = True
                await self._attempt(item)
                return
            # The DLQ topic takes less than _TRUNCATE_TO: retried (and stalled) until fixed.
            self.metrics.dlq_errors.inc()
            log.error("DLQ topic %s refuses even a %d-byte record: %r", self.topic,
                      _TRUNCATE_TO, exc)
        except KafkaError as exc:
            self.metrics.dlq_errors.inc()
            log.warning("DLQ send failed, will retry: %r", exc)

    async def _send(self, rejection: Rejection, *, truncated: bool) -> asyncio.Future[object]:
        value = rejection.value
        headers = [
            ("reason", rejection.reason.encode()),
            ("source_topic", rejection.topic.encode()),
            ("source_partition", str(rejection.partition).encode()),
            ("source_offset", str(rejection.offset).encode()),
        ]
        if truncated:
            headers.append(("truncated_from_bytes", str(len(value)).encode()))
            value = value[:_TRUNCATE_TO]
        delivery: asyncio.Future[object] = await self.producer.send(
            self.topic, value=value, headers=headers)
        return delivery
