"""deliver_directly: the worker's records skip Faust's per-record dispatch.

A stand-in for Faust's consumer (pure unit test): ``getmany`` yields what a fetch
returned, as Faust's does. The worker's real path runs in tests/integration and
tests/faults, where every count is checked against what was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from streamer.pipeline.faust_compat import deliver_directly


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Message:
    offset: int
    value: bytes


class StoppedError(Exception):
    pass


class FakeFaustConsumer:
    consumer_stopped_errors = (StoppedError,)

    def __init__(self, fetches: list[list[tuple[TP, Message]]]) -> None:
        self.fetches = fetches
        self._stopped = asyncio.Event()
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self.should_stop = False
        self.via_faust: list[tuple[str, int]] = []
        self.suspend_flow = asyncio.Event()
        self.transport = type("T", (), {"app": type("A", (), {"should_stop": False})()})()

    async def callback(self, message: Message) -> None:
        self.via_faust.append(("callback", message.offset))

    async def wait_first(self, delivered: Any, suspended: Any) -> None:
        await delivered
        suspended.close()

    async def getmany(self, timeout: float) -> Any:
        if not self.fetches:
            self._stopped.set()
            return
        for tp, message in self.fetches.pop(0):
            yield tp, message


class FakeFetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


USES = TP("sounds.used", 3)
TRACKS = TP("tracks.created", 3)
OTHER = TP("faust-internal", 0)


async def test_input_records_reach_the_handler_in_order_with_their_coordinates() -> None:
    consumer = FakeFaustConsumer([
        [(USES, Message(10, b"u10")), (TRACKS, Message(4, b"t4")), (OTHER, Message(7, b"o"))],
        [(USES, Message(11, b"u11"))],
    ])
    handled: list[tuple[str, int, int, bytes | None]] = []

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> None:
        handled.append((topic, partition, offset, value))

    deliver_directly(consumer, {USES.topic, TRACKS.topic}, handle)
    await consumer._drain_messages(FakeFetcher())

    assert handled == [("sounds.used", 3, 10, b"u10"), ("tracks.created", 3, 4, b"t4"),
                       ("sounds.used", 3, 11, b"u11")]
    assert consumer.via_faust == [("callback", 7)]  # other topics keep Faust's path
    assert consumer._read_offset[USES] == 11
    assert consumer._read_offset[TRACKS] == 4


async def test_records_below_fausts_read_offset_are_dropped_like_faust_does() -> None:
    consumer = FakeFaustConsumer([[(USES, Message(5, b"stale")), (USES, Message(9, b"ok"))]])
    consumer._read_offset[USES] = 9
    handled: list[int] = []

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> None:
        handled.append(offset)

    deliver_directly(consumer, {USES.topic}, handle)
    await consumer._drain_messages(FakeFetcher())
    assert handled == [9]


async def test_the_loop_lets_other_tasks_run_while_records_keep_coming() -> None:
    """A flush timer must run during a long backlog, not only between fetches."""
    fetch = [(USES, Message(offset, b"x")) for offset in range(200)]
    consumer = FakeFaustConsumer([fetch])
    ticks: list[int] = []
    handled: list[int] = []

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> None:
        handled.append(offset)
        time.sleep(0.001)  # a record that takes 1 ms of CPU and never awaits

    async def timer() -> None:
        while True:
            ticks.append(len(handled))
            await asyncio.sleep(0)

    deliver_directly(consumer, {USES.topic}, handle)
    ticker = asyncio.ensure_future(timer())
    await consumer._drain_messages(FakeFetcher())
    ticker.cancel()
    during = [n for n in ticks if 0 < n < 200]
    assert len(during) >= 10, ticks


async def test_a_handler_error_stops_the_loop_loudly() -> None:
    consumer = FakeFaustConsumer([[(USES, Message(1, b"x"))]])

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> None:
        raise RuntimeError("boom")

    deliver_directly(consumer, {USES.topic}, handle)
    with pytest.raises(RuntimeError, match="boom"):
        await consumer._drain_messages(FakeFetcher())


async def test_a_stopped_consumer_ends_the_loop_quietly_when_the_app_stops() -> None:
    class Stopping(FakeFaustConsumer):
        async def getmany(self, timeout: float) -> Any:
            raise StoppedError()
            yield  # pragma: no cover

    consumer = Stopping([])
    consumer.transport.app.should_stop = True

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> None:
        raise AssertionError("no records")

    deliver_directly(consumer, {USES.topic}, handle)
    await consumer._drain_messages(FakeFetcher())


async def test_a_cancellation_from_inside_the_handler_crashes_loudly_not_quietly() -> None:
    """Faust's fetcher ends without a word on CancelledError: the worker would stop counting."""
    consumer = FakeFaustConsumer([[(USES, Message(1, b"x"))]])

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> None:
        awaited = asyncio.ensure_future(asyncio.sleep(10))
        asyncio.get_running_loop().call_soon(awaited.cancel)
        await awaited

    deliver_directly(consumer, {USES.topic}, handle)
    with pytest.raises(RuntimeError, match=r"sounds\.used/3@1 was cancelled from inside"):
        await consumer._drain_messages(FakeFetcher())


async def test_cancelling_the_loop_itself_still_cancels_it() -> None:
    consumer = FakeFaustConsumer([[(USES, Message(1, b"x"))]])
    entered = asyncio.Event()

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> None:
        entered.set()
        await asyncio.sleep(10)

    deliver_directly(consumer, {USES.topic}, handle)
    loop_task = asyncio.ensure_future(consumer._drain_messages(FakeFetcher()))
    await entered.wait()
    loop_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop_task


async def test_the_loop_counts_its_fetch_rounds_for_the_stall_watchdog() -> None:
    consumer = FakeFaustConsumer([[(USES, Message(1, b"x"))], [], []])

    async def handle(topic: str, partition: int, offset: int, value: bytes | None) -> None:
        pass

    fetch_loop = deliver_directly(consumer, {USES.topic}, handle)
    assert fetch_loop.fetches == 0 and fetch_loop.task is None
    await consumer._drain_messages(FakeFetcher())
    assert fetch_loop.fetches == 4  # three fetches, and the round that found it stopped
    assert fetch_loop.task is not None


def test_fetch_tuning_refuses_an_aiokafka_without_the_fields_it_sets() -> None:
    """Setting a field aiokafka no longer reads would do nothing, silently."""
    from types import SimpleNamespace

    from streamer.pipeline.faust_compat import tune_fetches

    fetcher = SimpleNamespace(_fetch_min_bytes=1)  # no _fetch_max_wait_ms
    faust_consumer = SimpleNamespace(_thread=SimpleNamespace(
        _ensure_consumer=lambda: SimpleNamespace(_fetcher=fetcher)))
    with pytest.raises(RuntimeError, match="_fetch_max_wait_ms"):
        tune_fetches(faust_consumer, min_bytes=1024, max_wait_ms=100)
