"""A mixed usage workload for the crash and rebalance tests, with its ground truth.

The workload is built so that the expected counters do not depend on timing:

* all event times lie in a span shorter than the allowed lateness and the dedupe
  horizon, so nothing is late and every duplicate is recognised;
* most tracks get their TrackCreated before any use; a few get it in the middle of the
  run (their uses before it wait for it: the same metadata either way), and a few never
  get one (their uses go to ``_unattributed`` once ``push_watermarks`` moves every
  partition's watermark past the allowed lateness);
* no track's metadata is replaced (replacement is order-sensitive across two topics).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from streamer.verify import GroundTruth
from support.pipeline import MINUTE, Pipeline, new_id, right, send_single, track_event, use_event

GENRES = ("lofi", "hyperpop", "ambient", "phonk", "drill")
ORIGINS = ("human", "ai_assisted", "ai_generated")


@dataclass
class Workload:
    pipe: Pipeline
    truth: GroundTruth
    rng: random.Random
    t_lo: int  # event times are in [t_lo, t_lo + span_ms)
    span_ms: int = 100_000
    n_tracks: int = 150
    n_mid: int = 10  # TrackCreated in the middle of the run
    n_never: int = 10  # no TrackCreated at all
    track_ids: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    sent_uses: int = 0
    sent_duplicates: int = 0
    sent_records: int = 0
    _recent: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        stem = new_id("wl")
        self.track_ids = [f"{stem}-t{i}" for i in range(self.n_tracks)]
        # Zipf-like popularity (s = 1): a few hot tracks, a long tail.
        self.weights = [1.0 / (rank + 1) for rank in range(self.n_tracks)]
        self.rng.shuffle(self.weights)

    @property
    def known_first(self) -> list[str]:
        return self.track_ids[: self.n_tracks - self.n_mid - self.n_never]

    @property
    def known_mid(self) -> list[str]:
        return self.track_ids[self.n_tracks - self.n_mid - self.n_never: -self.n_never]

    def metadata(self, track_id: str) -> dict[str, Any]:
        rng = self.rng
        rights = []
        for right_name in ("master", "publishing"):
            holders = rng.randrange(0, 4)
            left = 1_000_000
            for h in range(holders):
                if left <= 0:
                    break
                micro = rng.randint(1, left)
                left -= micro
                share = f"{micro // 1_000_000}.{micro % 1_000_000:06d}"
                rights.append(right(f"{right_name[:3]}-holder-{rng.randrange(12)}-{h}",
                                    right_name, share))
        event = track_event(track_id, self.t_lo, genre=rng.choice(GENRES),
                            ai_origin=rng.choice(ORIGINS), rights=rights)
        # Names for reports on some tracks: they must change nothing that is counted.
        if rng.random() < 0.5:
            event["artist"] = f"Artist {rng.randrange(40)} feat. Guest"
        if rng.random() < 0.5:
            event["label"] = f"Label {rng.randrange(8)}"
        return event

    async def send_first_tracks(self) -> None:
        async with self.pipe.producer() as producer:
            for track_id in self.known_first:
                event = self.metadata(track_id)
                await producer.send_track(event)
                self.truth.track_created(event)

    async def run(self, n_events: int, chunk: int = 500, pause_s: float = 0.3,
                  single_share: float = 0.1, duplicate_share: float = 0.01) -> None:
        """Send ``n_events`` distinct uses (plus duplicates) in paced chunks."""
        rng = self.rng
        mids = list(self.known_mid)
        chunks = max(1, n_events // chunk)
        mid_every = max(1, chunks // (len(mids) + 1))
        async with self.pipe.producer(batch_events=250, linger_ms=30) as producer:
            for index in range(chunks):
                for _ in range(chunk):
                    track = rng.choices(self.track_ids, self.weights)[0]
                    event = use_event(track, "create" if rng.random() < 0.3 else "play",
                                      self.t_lo + rng.randrange(self.span_ms),
                                      user_id=f"user-{rng.randrange(1000)}",
                                      country=rng.choice(("DE", "US", "BR", "JP")))
                    await self._send(producer, event, single_share)
                    self.truth.use(event)
                    self.sent_uses += 1
                    self._recent.append(event)
                    if rng.random() < duplicate_share:
                        await self._send(producer, dict(rng.choice(self._recent)), single_share)
                        self.sent_duplicates += 1
                del self._recent[:-2000]
                if mids and index % mid_every == mid_every - 1:
                    event = self.metadata(mids.pop())
                    await producer.send_track(event)
                    self.truth.track_created(event)
                await asyncio.sleep(pause_s)
            for track_id in mids:
                event = self.metadata(track_id)
                await producer.send_track(event)
                self.truth.track_created(event)

    async def _send(self, producer: Any, event: dict[str, Any], single_share: float) -> None:
        if self.rng.random() < single_share:
            await send_single(producer, event)
        else:
            await producer.send_use(event)

    async def push_watermarks(self, lateness_ms: int) -> None:
        """One counted use per partition, late enough to expire every pending attribution.

        Call after everything before it is drained (else it would make earlier events late
        and could expire a pending attribution whose TrackCreated is still in flight).
        """
        when = self.t_lo + self.span_ms + lateness_ms + 2 * MINUTE
        pushers: dict[int, str] = {}
        for track_id in self.known_first:
            pushers.setdefault(self.pipe.partition_for(track_id), track_id)
        for partition in range(self.pipe.partitions):
            if partition not in pushers:
                pushers[partition] = self.pipe.track_in_partition(partition, "pusher")
                event = self.metadata(pushers[partition])
                async with self.pipe.producer() as producer:
                    await producer.send_track(event)
                self.truth.track_created(event)
        await self.pipe.drained()
        async with self.pipe.producer() as producer:
            for track_id in pushers.values():
                event = use_event(track_id, "play", when)
                await send_single(producer, event)
                self.truth.use(event)
