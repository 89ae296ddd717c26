"""RecordProcessor: Kafka record values in, counted cells or named rejections out.

Real PartitionState, CatalogCache and Metrics; no Kafka, no Redis. Times are fixed
(NOW is 2023-11-14T22:13:20Z) and expected window starts are literals.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streamer.config import Settings
from streamer.events.validation import TrackMeta
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_bytes, plan_for
from streamer.pipeline.processor import RecordProcessor
from streamer.state.catalog import CatalogCache
from streamer.state.deltas import HOLDERS, TRACKS
from streamer.state.partition import TRACKS_CODE as TRACKS_TOPIC
from streamer.state.partition import USES_CODE as USES
from streamer.state.partition import PartitionState

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z
MINUTE_OF_NOW = 1_699_999_980_000  # 22:13:00
HOUR_OF_NOW = 1_699_999_200_000  # 22:00:00
DAY_OF_NOW = 1_699_920_000_000  # 2023-11-14T00:00:00Z
HOUR = 3_600_000
FIVE_MINUTES = 300_000


class Rig:
    def __init__(self, settings: Settings | None = None, cache_size: int = 1000) -> None:
        # cache_size: in tracks, as the tests think of it (the cache counts bytes).
        cache_bytes = cache_size * 400
        self.settings = settings or Settings()
        self.cache = CatalogCache(cache_bytes, plan_bytes)
        self.metrics = Metrics()
        self.processor = RecordProcessor(self.settings, self.cache, self.metrics)
        self.state = PartitionState(partition=3, owner="worker-a", seq=0,
                                    dedupe_horizon_ms=self.settings.dedupe_horizon_ms)

    def uses(self, offset: int, value: bytes | None, now: int = NOW) -> int:
        return self.processor.handle_uses(self.state, offset, value, now)

    def track(self, offset: int, value: bytes | None, now: int = NOW) -> int:
        return self.processor.handle_track(self.state, offset, value, now)

    def cells(self) -> dict[tuple[str, str, int], int]:
        """Counted, not yet flushed uses as {(track_id, use, base window start): uses},
        summed over countries (``cells_by_country`` keeps them apart)."""
        summed: dict[tuple[str, str, int], int] = {}
        for (track_id, use, base, _), uses in self.state.cells.items():
            summed[(track_id, use, base)] = summed.get((track_id, use, base), 0) + uses
        return summed

    def cells_by_country(self) -> dict[tuple[str, str, int, str], int]:
        return dict(self.state.cells)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        self.metrics.publish()  # as every flush pass and scrape does
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def rejected(self, code: str) -> float:
        return self.metric("streamer_events_rejected_total", {"reason": code})


def use_event(n: int = 1, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": f"ev-{n}", "track_id": "trk-1",
                             "occurred_at": NOW - 5_000, "user_id": "u", "use": "play",
                             "country": "SE"}
    event.update(changes)
    return event


def track_event(event_id: str = "tc-1", track_id: str = "trk-1", **changes: Any) -> dict:
    event: dict[str, Any] = {"event_id": event_id, "track_id": track_id,
                             "occurred_at": NOW - 60_000, "creator_id": "c", "genre": "lofi",
                             "ai_origin": "human",
                             "rights": [{"holder_id": "old-label", "right": "master",
                                         "share": "0.75"},
                                        {"holder_id": "old-pub", "right": "publishing",
                                         "share": 1}]}
    event.update(changes)
    return event


NEW_RIGHTS = [{"holder_id": "new-label", "right": "master", "share": 1},
              {"holder_id": "new-pub", "right": "publishing", "share": "0.5"}]


def dumps(obj: object) -> bytes:
    return orjson.dumps(obj)


# -- sounds.used: counting ----------------------------------------------------------------


def test_single_event_record_is_counted() -> None:
    rig = Rig()
    assert rig.uses(0, dumps(use_event())) == 1
    assert rig.cells() == {("trk-1", "play", MINUTE_OF_NOW): 1}
    assert rig.state.next_offset[USES] == 1
    assert rig.state.watermark[USES] == NOW - 5_000
    assert rig.state.unflushed_events == 1
    assert rig.state.rejections == []
    assert rig.metric("streamer_events_counted_total") == 1
    assert rig.metric("streamer_events_consumed_total", {"topic": "uses"}) == 1


def test_batch_record_is_counted_per_cell() -> None:
    rig = Rig()
    batch = [
        use_event(1),
        use_event(2, occurred_at=NOW - 19_000),  # same minute, 22:13:01
        use_event(3, use="create"),
        use_event(4, occurred_at=NOW - 21_000),  # 22:12:59, the minute before
        use_event(5, track_id="trk-2"),
    ]
    assert rig.uses(7, dumps(batch)) == 5
    assert rig.cells() == {
        ("trk-1", "play", MINUTE_OF_NOW): 2,
        ("trk-1", "create", MINUTE_OF_NOW): 1,
        ("trk-1", "play", MINUTE_OF_NOW - 60_000): 1,
        ("trk-2", "play", MINUTE_OF_NOW): 1,
    }
    assert rig.state.next_offset[USES] == 8
    assert rig.state.unflushed_events == 5
    assert rig.metric("streamer_events_counted_total") == 5


def test_batch_and_single_records_count_the_same() -> None:
    events = [use_event(i, occurred_at=NOW - i * 7_000, use=("create", "play")[i % 2])
              for i in range(20)]
    batched, single = Rig(), Rig()
    batched.uses(0, dumps(events))
    for offset, event in enumerate(events):
        single.uses(offset, dumps(event))
    assert batched.cells() == single.cells()
    assert sum(batched.cells().values()) == 20
    assert batched.state.watermark == single.state.watermark


def test_records_below_the_next_offset_are_skipped() -> None:
    rig = Rig()
    rig.state.next_offset[USES] = 5  # as loaded from Redis after a restart
    assert rig.uses(3, dumps(use_event(1))) == 0
    assert rig.uses(4, b"not json at all") == 0
    assert rig.cells() == {}
    assert rig.state.rejections == []
    assert rig.metric("streamer_replayed_records_skipped_total") == 2
    assert rig.uses(5, dumps(use_event(2))) == 1
    assert rig.uses(5, dumps(use_event(3))) == 0  # the same offset again
    assert rig.uses(9, dumps(use_event(4))) == 1  # gaps (compaction, aborted txns) are fine
    assert rig.state.next_offset[USES] == 10
    assert rig.cells() == {("trk-1", "play", MINUTE_OF_NOW): 2}
    assert rig.metric("streamer_replayed_records_skipped_total") == 3


def test_offsets_of_the_two_topics_are_independent() -> None:
    rig = Rig()
    rig.uses(10, dumps(use_event()))
    assert rig.track(0, dumps(track_event())) == 1
    assert rig.state.next_offset == {USES: 11, TRACKS_TOPIC: 1}


def test_duplicates_are_counted_once() -> None:
    rig = Rig()
    rig.uses(0, dumps([use_event(1), use_event(1), use_event(2)]))
    rig.uses(1, dumps(use_event(2, occurred_at=NOW - 1_000)))  # a retry, re-stamped
    assert rig.cells() == {("trk-1", "play", MINUTE_OF_NOW): 2}
    assert rig.metric("streamer_duplicates_total") == 2
    assert rig.metric("streamer_events_counted_total") == 2
    assert rig.state.rejections == []


# -- late and future -----------------------------------------------------------------------


def test_late_is_relative_to_the_watermark_minus_the_allowed_lateness() -> None:
    rig = Rig()
    rig.uses(0, dumps(use_event(1, occurred_at=NOW)))
    rig.uses(1, dumps(use_event(2, occurred_at=NOW - HOUR)))  # exactly at the limit: counted
    late = use_event(3, occurred_at=NOW - HOUR - 1)
    raw = dumps(late)
    rig.uses(2, raw)
    assert sum(rig.cells().values()) == 2
    [rejection] = rig.state.rejections
    assert (rejection.code, rejection.offset, rejection.value) == ("late", 2, raw)
    assert rejection.reason.startswith("late:occurred_at: ")
    assert (rejection.topic, rejection.partition) == ("sounds.used", 3)
    assert rig.rejected("late") == 1
    assert rig.state.watermark[USES] == NOW


def test_the_watermark_moves_within_a_batch() -> None:
    rig = Rig()
    batch = [use_event(1, occurred_at=NOW - 3 * HOUR), use_event(2, occurred_at=NOW),
             use_event(3, occurred_at=NOW - 3 * HOUR + 1)]
    rig.uses(0, dumps(batch))
    assert [orjson.loads(r.value)["event_id"] for r in rig.state.rejections] == ["ev-3"]
    assert rig.state.rejections[0].code == "late"
    assert sum(rig.cells().values()) == 2


def test_configured_lateness() -> None:
    rig = Rig(Settings(allowed_lateness_ms=60_000))
    rig.uses(0, dumps(use_event(1, occurred_at=NOW)))
    rig.uses(1, dumps(use_event(2, occurred_at=NOW - 60_001)))
    assert [r.code for r in rig.state.rejections] == ["late"]


def test_future_is_relative_to_the_wall_clock() -> None:
    rig = Rig()
    ok = use_event(1, occurred_at=NOW + FIVE_MINUTES)
    ahead = use_event(2, occurred_at=NOW + FIVE_MINUTES + 1)
    rig.uses(0, dumps([ok, ahead]))
    [rejection] = rig.state.rejections
    assert rejection.code == "future"
    assert rejection.reason.startswith("future:occurred_at: ")
    assert orjson.loads(rejection.value) == ahead
    assert rig.state.watermark[USES] == NOW + FIVE_MINUTES
    assert sum(rig.cells().values()) == 1
    # The same event is fine once the wall clock has caught up.
    rig.uses(1, dumps(ahead), now=NOW + 1)
    assert sum(rig.cells().values()) == 2


def test_rejected_events_move_neither_watermark_nor_dedupe() -> None:
    rig = Rig()
    rig.uses(0, dumps(use_event(1, occurred_at=NOW)))
    rig.uses(1, dumps(use_event(2, occurred_at=NOW + HOUR)))  # future
    rig.uses(2, dumps(use_event(3, occurred_at=NOW - 2 * HOUR)))  # late
    assert rig.state.watermark[USES] == NOW
    # Rejected ids were not remembered: a corrected resend counts.
    rig.uses(3, dumps([use_event(2, occurred_at=NOW), use_event(3, occurred_at=NOW)]))
    assert sum(rig.cells().values()) == 3


# -- bad input --------------------------------------------------------------------------------


def test_batch_with_bad_elements_rejects_only_those_each_as_its_own_json() -> None:
    rig = Rig()
    bad_missing = {"event_id": "ev-x", "track_id": "trk-1"}
    bad_country = use_event(11, country="se")
    late = use_event(12, occurred_at=NOW - 2 * HOUR)
    batch = [use_event(1), bad_missing, 5, use_event(2, use="create"), bad_country, None,
             late, use_event(3)]
    value = dumps(batch)
    assert rig.uses(42, value) == 8
    codes = [(r.code, r.reason.split(":")[1]) for r in rig.state.rejections]
    assert codes == [("missing_field", "occurred_at"), ("not_object", " expected a JSON object, "
                     "got integer"), ("invalid_value", "country"), ("not_object",
                     " expected a JSON object, got null"), ("late", "occurred_at")]
    elements = [orjson.loads(r.value) for r in rig.state.rejections]
    assert elements == [bad_missing, 5, bad_country, None, late]
    for rejection in rig.state.rejections:
        assert rejection.value != value
        assert (rejection.offset, rejection.topic, rejection.partition) == (42, "sounds.used", 3)
    assert rig.cells() == {("trk-1", "play", MINUTE_OF_NOW): 2,
                           ("trk-1", "create", MINUTE_OF_NOW): 1}
    assert rig.rejected("not_object") == 2
    assert rig.metric("streamer_events_consumed_total", {"topic": "uses"}) == 8


def test_a_bad_single_record_goes_to_the_dlq_byte_for_byte() -> None:
    rig = Rig()
    value = b'{ "event_id": 17,  "track_id": "trk-1" }\n'
    assert rig.uses(0, value) == 1
    [rejection] = rig.state.rejections
    assert rejection.value == value
    assert (rejection.code, rejection.reason.split(":")[1]) == ("wrong_type", "event_id")


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"", "empty_record"),
        (None, "empty_record"),
        (b"[]", "empty_batch"),
        (b" [ ] ", "empty_batch"),
        (b"{nope", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b'{"a": 1} {"b": 2}', "not_json"),
        (b"NaN", "not_json"),
        (b"5", "not_object"),
        (b'"ev-1"', "not_object"),
        (b"true", "not_object"),
    ],
)
def test_whole_record_rejections(value: bytes | None, code: str) -> None:
    rig = Rig()
    rig.uses(3, value)
    [rejection] = rig.state.rejections
    assert rejection.code == code
    assert rejection.value == (value or b"")
    assert rejection.offset == 3
    assert rig.cells() == {}
    assert rig.state.next_offset[USES] == 4  # the worker moves on
    assert rig.rejected(code) == 1


@pytest.mark.parametrize("topic", ["uses", "tracks"])
def test_a_null_record_is_rejected_not_dropped(topic: str) -> None:
    rig = Rig()
    (rig.uses if topic == "uses" else rig.track)(0, b"null")
    assert [r.code for r in rig.state.rejections] == ["not_object"]
    assert rig.state.rejections[0].value == b"null"


def test_an_unhashable_track_id_rejects_only_its_element() -> None:
    rig = Rig()
    bad = use_event(2, track_id=["trk-1"])
    rig.uses(0, dumps([use_event(1), bad, use_event(3)]))
    assert [(r.code, orjson.loads(r.value)) for r in rig.state.rejections] == [
        ("wrong_type", bad)]
    assert rig.cells() == {("trk-1", "play", MINUTE_OF_NOW): 2}


def test_record_size_limit_default_one_mebibyte() -> None:
    rig = Rig()
    assert rig.settings.max_record_bytes == 1_048_576
    body = dumps(use_event(1))
    exact = body + b" " * (1_048_576 - len(body))  # JSON allows trailing whitespace
    assert rig.uses(0, exact) == 1
    assert rig.state.rejections == []
    over = dumps(use_event(2)) + b" " * (1_048_577 - len(body))
    assert len(over) == 1_048_577
    assert rig.uses(1, over) == 0
    [rejection] = rig.state.rejections
    assert (rejection.code, rejection.value) == ("record_too_large", over)
    assert "1048577 bytes" in rejection.reason
    assert sum(rig.cells().values()) == 1


def test_record_size_limit_is_configurable() -> None:
    rig = Rig(Settings(max_record_bytes=100))
    rig.uses(0, dumps([use_event(1), use_event(2)]))
    assert [r.code for r in rig.state.rejections] == ["record_too_large"]
    assert rig.cells() == {}


def test_batch_size_limit_default_ten_thousand() -> None:
    rig = Rig()
    assert rig.settings.max_batch_events == 10_000
    too_many = b"[" + b",".join([b"0"] * 10_001) + b"]"
    assert rig.uses(0, too_many) == 0
    [rejection] = rig.state.rejections
    assert (rejection.code, rejection.value) == ("batch_too_large", too_many)
    assert "10001 events" in rejection.reason
    # 10,000 is allowed: each element is judged on its own.
    rig.state.rejections.clear()
    assert rig.uses(1, b"[" + b",".join([b"0"] * 10_000) + b"]") == 10_000
    assert len(rig.state.rejections) == 10_000
    assert {r.code for r in rig.state.rejections} == {"not_object"}


def test_batch_size_limit_is_configurable() -> None:
    rig = Rig(Settings(max_batch_events=2))
    rig.uses(0, dumps([use_event(1), use_event(2), use_event(3)]))
    assert [r.code for r in rig.state.rejections] == ["batch_too_large"]
    assert rig.cells() == {}
    rig.uses(1, dumps([use_event(1), use_event(2)]))
    assert sum(rig.cells().values()) == 2


# -- tracks.created ---------------------------------------------------------------------------

OLD_META = TrackMeta("lofi", "human", master=(("old-label", 750_000),),
                     publishing=(("old-pub", 1_000_000),))
NEW_META = TrackMeta("lofi", "human", master=(("new-label", 1_000_000),),
                     publishing=(("new-pub", 500_000),))


def test_track_created_goes_to_cache_and_catalog_writes() -> None:
    rig = Rig()
    assert rig.track(0, dumps(track_event())) == 1
    assert rig.cache.get("trk-1") == plan_for(OLD_META)
    assert orjson.loads(rig.state.catalog_writes["trk-1"].to_json()) == {
        "g": "lofi", "o": "human", "m": [["old-label", 750_000]], "p": [["old-pub", 1_000_000]]}
    assert rig.state.watermark[TRACKS_TOPIC] == NOW - 60_000
    assert rig.state.next_offset[TRACKS_TOPIC] == 1
    assert rig.state.unflushed_events == 1
    assert rig.metric("streamer_events_consumed_total", {"topic": "tracks"}) == 1


def test_bad_track_created_is_rejected_with_its_bytes() -> None:
    rig = Rig()
    value = b'{"event_id": "tc", "track_id": "trk-1"}'
    assert rig.track(0, value) == 1
    [rejection] = rig.state.rejections
    assert (rejection.topic, rejection.value, rejection.code) == (
        "tracks.created", value, "missing_field")
    assert rejection.reason.startswith("missing_field:occurred_at: ")
    assert rig.cache.get("trk-1") is None
    assert rig.state.catalog_writes == {}
    assert rig.state.next_offset[TRACKS_TOPIC] == 1


def test_track_created_in_the_future_is_rejected() -> None:
    rig = Rig()
    rig.track(0, dumps(track_event(occurred_at=NOW + FIVE_MINUTES + 1)))
    assert [r.code for r in rig.state.rejections] == ["future"]
    assert rig.cache.get("trk-1") is None


def test_duplicate_track_created_is_not_applied_again() -> None:
    rig = Rig()
    rig.track(0, dumps(track_event("tc-1")))
    rig.state.catalog_writes.clear()
    assert rig.track(1, dumps(track_event("tc-1", rights=NEW_RIGHTS))) == 1
    assert rig.cache.get("trk-1") == plan_for(OLD_META)
    assert rig.state.catalog_writes == {}
    assert rig.metric("streamer_duplicates_total") == 1


def test_track_records_below_the_next_offset_are_skipped() -> None:
    rig = Rig()
    rig.state.next_offset[TRACKS_TOPIC] = 2
    assert rig.track(1, dumps(track_event())) == 0
    assert rig.cache.get("trk-1") is None
    assert rig.metric("streamer_replayed_records_skipped_total") == 1


def test_metadata_replacement_seals_earlier_uses_with_the_old_metadata() -> None:
    rig = Rig(Settings(windows=(("1m", 60_000), ("1h", HOUR))))
    rig.track(0, dumps(track_event("tc-1")))
    rig.uses(0, dumps([use_event(1), use_event(2), use_event(3, use="create"),
                       use_event(4, track_id="trk-2")]))
    rig.track(1, dumps(track_event("tc-2", rights=NEW_RIGHTS)))
    assert rig.cache.get("trk-1") == plan_for(NEW_META)
    # trk-1's uses left the unflushed cells; the other track's stayed.
    assert rig.cells() == {("trk-2", "play", MINUTE_OF_NOW): 1}
    sealed = {key: dict(fields) for key, fields in rig.state.sealed.hashes.items()}
    for name, start in (("1m", MINUTE_OF_NOW), ("1h", HOUR_OF_NOW)):
        assert sealed[(TRACKS, name, start)] == {"play|trk-1": 2, "create|trk-1": 1}
        assert sealed[(HOLDERS, name, start)] == {
            "master|play|u|old-label": 2, "master|play|w|old-label": 1_500_000,
            "master|play|u|_unclaimed": 2, "master|play|w|_unclaimed": 500_000,
            "publishing|play|u|old-pub": 2, "publishing|play|w|old-pub": 2_000_000,
            "master|create|u|old-label": 1, "master|create|w|old-label": 750_000,
            "master|create|u|_unclaimed": 1, "master|create|w|_unclaimed": 250_000,
            "publishing|create|u|old-pub": 1, "publishing|create|w|old-pub": 1_000_000,
        }
    assert {key: dict(v) for key, v in rig.state.sealed.trending.items()} == {
        ("1m", MINUTE_OF_NOW): {"trk-1": 1}, ("1h", HOUR_OF_NOW): {"trk-1": 1}}
    # Uses after the replacement wait in the cells for the new metadata.
    rig.uses(1, dumps(use_event(5)))
    assert rig.cells() == {("trk-2", "play", MINUTE_OF_NOW): 1,
                           ("trk-1", "play", MINUTE_OF_NOW): 1}
    assert not any("new-" in field for fields in sealed.values() for field in fields)


def test_resending_the_same_metadata_seals_nothing() -> None:
    rig = Rig()
    rig.track(0, dumps(track_event("tc-1")))
    rig.uses(0, dumps(use_event(1)))
    rig.track(1, dumps(track_event("tc-2")))  # new event id, same content
    assert rig.cells() == {("trk-1", "play", MINUTE_OF_NOW): 1}
    assert not rig.state.sealed


def test_first_metadata_does_not_seal_uses_that_waited_for_it() -> None:
    rig = Rig()
    rig.uses(0, dumps(use_event(1)))
    rig.track(0, dumps(track_event("tc-1")))
    # Not sealed with any metadata: the flusher first asks Redis whether an older entry
    # exists (none here), so the use ends up attributed with tc-1's holders.
    earlier, arrived = rig.state.needs_old_meta["trk-1"]
    assert earlier == {("trk-1", "play", MINUTE_OF_NOW, "SE"): 1} and not rig.cells()
    assert arrived == OLD_META
    assert not rig.state.sealed


# -- a metadata replacement the worker's cache does not know the predecessor of ---------------


def _counted(payload: Any) -> str:
    """The payload without the partition's copy of its catalog writes (``:cw:`` keys):
    what the flush counts and attributes."""
    return repr((payload.hashes, payload.zsets,
                 [entry for entry in payload.pending if ":cw:" not in payload.keys[entry[0] - 2]]))


def _catalog_copy(payload: Any) -> str:
    return repr([entry for entry in payload.pending if ":cw:" in payload.keys[entry[0] - 2]])


class FakeStore:
    """In-memory stand-in for RedisStore: the catalog holds the metadata Redis would."""

    def __init__(self, catalog: dict[str, TrackMeta]) -> None:
        from streamer.state.keys import KeyLayout

        self.layout = KeyLayout("unit")
        self.catalog = dict(catalog)
        self.payloads: list[Any] = []

    async def get_catalog(self, track_ids: list[str]) -> dict[str, TrackMeta]:
        return {t: self.catalog[t] for t in track_ids if t in self.catalog}

    async def put_catalog(self, writes: dict[str, bytes], ttl_ms: int) -> None:
        for track_id, raw in writes.items():
            self.catalog[track_id] = TrackMeta.from_json(raw)

    async def flush(self, partition: int, owner: str, seq: int, payload: Any) -> bool:
        self.payloads.append(payload)
        return True


def test_replacement_after_a_restart_keeps_old_metadata_for_earlier_uses() -> None:
    from streamer.pipeline.flusher import Flusher

    async def scenario() -> list[Any]:
        rig = Rig()  # a fresh worker: empty cache; Redis' catalog has the old metadata
        store = FakeStore({"trk-1": OLD_META})
        flusher = Flusher(rig.settings, store, rig.cache, rig.metrics)  # type: ignore[arg-type]
        rig.uses(0, dumps(use_event(1)))  # processed under the old metadata
        rig.track(0, dumps(track_event("tc-2", rights=NEW_RIGHTS)))
        await flusher.flush(rig.state)
        return store.payloads

    [payload] = asyncio.run(scenario())
    written = _counted(payload)
    assert "play|trk-1" in written
    assert "new-label" not in written
    assert "new-label" in _catalog_copy(payload)  # the replacement's entry, for repairs
    assert "master|play|w|old-label" in written


class RacingStore(FakeStore):
    """The agent handles more records while the flusher's catalog read is in flight."""

    def __init__(self, catalog: dict[str, TrackMeta], during_first_read: Any) -> None:
        super().__init__(catalog)
        self.during_first_read = during_first_read
        self.reads: list[list[str]] = []

    async def get_catalog(self, track_ids: list[str]) -> dict[str, TrackMeta]:
        self.reads.append(list(track_ids))
        if len(self.reads) == 1:
            await asyncio.sleep(0)
            self.during_first_read()
        return await super().get_catalog(track_ids)


def test_replacement_handled_during_a_flush_read_is_in_that_flush() -> None:
    """A flush writes offsets past every record handled before its snapshot, so the uses
    it covers must be in it: a replacement arriving mid-read is read in one more round,
    not held back to the next flush (a crash in between lost those uses)."""
    from streamer.pipeline.flusher import Flusher

    rig = Rig()
    rig.uses(0, dumps([use_event(1), use_event(2, track_id="trk-2")]))
    rig.track(0, dumps(track_event("tc-new-1", rights=NEW_RIGHTS)))  # trk-1 replaced

    def agent_runs_on() -> None:
        rig.track(1, dumps(track_event("tc-new-2", track_id="trk-2", rights=NEW_RIGHTS)))

    store = RacingStore({"trk-1": OLD_META, "trk-2": OLD_META}, agent_runs_on)
    flusher = Flusher(rig.settings, store, rig.cache, rig.metrics)  # type: ignore[arg-type]
    asyncio.run(flusher.flush(rig.state))

    [payload] = store.payloads
    assert payload.meta["off:t"] == 2  # both TrackCreated records are behind the offset ...
    written = _counted(payload)
    for track in ("trk-1", "trk-2"):  # ... so both tracks' earlier uses are in the flush
        assert f"play|{track}" in written
    assert "new-label" not in written  # attributed with the metadata they were counted under
    assert written.count("master|play|u|old-label") >= 1
    assert not rig.state.needs_old_meta and not rig.state.catalog_writes
    assert store.catalog["trk-2"].master == (("new-label", 1_000_000),)  # written, not held


def _flush_pending_case(tracks_caught_up: bool) -> str:
    """A use waits for its track; the uses topic then runs 2 h ahead, tracks stay behind."""
    from streamer.pipeline.flusher import Flusher

    rig = Rig()
    store = FakeStore({})
    flusher = Flusher(rig.settings, store, rig.cache, rig.metrics)  # type: ignore[arg-type]
    rig.uses(0, dumps(use_event(1, track_id="trk-late", occurred_at=NOW - 3 * 3_600_000)))
    rig.track(0, dumps(track_event("tc-x", track_id="trk-other",
                                   occurred_at=NOW - 3 * 3_600_000)))
    rig.uses(1, dumps(use_event(2, track_id="trk-other", occurred_at=NOW - 60_000)))
    rig.state.tracks_caught_up = tracks_caught_up
    asyncio.run(flusher.flush(rig.state))
    return repr(store.payloads[-1])


def test_pending_uses_wait_while_tracks_created_lags_behind() -> None:
    """In a backlog the uses topic runs ahead of tracks.created: a use's TrackCreated may
    still come, so its attribution must not expire by the uses' watermark alone."""
    assert "_unattributed" not in _flush_pending_case(tracks_caught_up=False)
    # Caught up (live): the uses' watermark is 2 h past the use's window, beyond the
    # 1 h lateness, and no TrackCreated can come in time any more.
    assert "_unattributed" in _flush_pending_case(tracks_caught_up=True)


# -- the catalog cache evicts; attribution must not depend on it --------------------------------


def _lateness_push(rig: Rig, offset: int, ahead_ms: int) -> None:
    """A use of another track that moves the uses' watermark ``ahead_ms`` past NOW."""
    rig.uses(offset, dumps(use_event(900 + offset, track_id="trk-push",
                                     occurred_at=NOW + ahead_ms)), now=NOW + ahead_ms)


def _holders_written(store: FakeStore) -> dict[str, int]:
    totals: dict[str, int] = {}
    for payload in store.payloads:
        for index, _, fields in payload.hashes:
            if ":h:1d:" not in payload.keys[index - 2]:
                continue
            for field, value in fields.items():
                if field.startswith("master|") and "|u|" in field:
                    holder = field.rsplit("|", 1)[1]
                    totals[holder] = totals.get(holder, 0) + value
    return totals


@pytest.mark.parametrize("pending_before", [False, True], ids=["in_cells", "pending"])
def test_uses_waiting_for_a_track_evicted_from_the_cache_are_attributed(
        pending_before: bool) -> None:
    """A backlog: the uses come first, then their TrackCreated, then enough other tracks to
    evict it from the (tiny) cache, then uses an hour and more later. The waiting uses
    belong to their track; before the fix they went to ``_unattributed``."""
    from streamer.pipeline.flusher import Flusher

    rig = Rig(cache_size=4)
    store = FakeStore({})
    flusher = Flusher(rig.settings, store, rig.cache, rig.metrics)  # type: ignore[arg-type]
    rig.uses(0, dumps([use_event(1), use_event(2, use="create")]))
    if pending_before:
        asyncio.run(flusher.flush(rig.state))  # no metadata anywhere yet: pending
        assert rig.state.pending == {"trk-1": {("play", MINUTE_OF_NOW, "SE"): 1,
                                               ("create", MINUTE_OF_NOW, "SE"): 1}}
    rig.track(0, dumps(track_event("tc-1")))
    for n in range(20):
        rig.track(1 + n, dumps(track_event(f"tc-other-{n}", track_id=f"trk-other-{n}")))
    assert "trk-1" not in rig.cache
    _lateness_push(rig, 1, ahead_ms=3 * HOUR)
    asyncio.run(flusher.flush(rig.state))

    holders = _holders_written(store)
    assert holders.get("old-label") == 2
    assert "_unattributed" not in holders
    assert "trk-1" not in rig.state.pending


def test_pending_uses_expire_only_after_redis_says_the_track_is_unknown() -> None:
    """The track's TrackCreated went through another partition (a producer partitioning
    differently): it is in the Redis catalog only. The uses expire by the watermark, but
    the flush looks the track up first, whatever the recheck interval says."""
    from streamer.pipeline.flusher import Flusher

    rig = Rig()
    store = FakeStore({})
    flusher = Flusher(rig.settings, store, rig.cache, rig.metrics)  # type: ignore[arg-type]
    rig.uses(0, dumps(use_event(1)))
    asyncio.run(flusher.flush(rig.state))  # pending from here on
    asyncio.run(flusher.flush(rig.state))  # rechecked now (unknown): the interval starts
    assert "trk-1" in rig.state.pending
    store.catalog["trk-1"] = OLD_META
    _lateness_push(rig, 1, ahead_ms=3 * HOUR)
    asyncio.run(flusher.flush(rig.state))  # within the recheck interval
    holders = _holders_written(store)
    assert holders.get("old-label") == 1 and "_unattributed" not in holders

    rig.uses(2, dumps(use_event(2, track_id="trk-gone")))
    asyncio.run(flusher.flush(rig.state))
    _lateness_push(rig, 3, ahead_ms=6 * HOUR)
    asyncio.run(flusher.flush(rig.state))
    assert _holders_written(store).get("_unattributed") == 1  # unknown in Redis too
    assert "trk-gone" not in rig.state.pending


def test_second_metadata_in_one_interval_after_eviction_keeps_the_first_for_earlier_uses() -> None:
    """Uses between two TrackCreated of one track belong to the first, even when the cache
    evicted it before the second arrived (the interval's own metadata is not evictable)."""
    from streamer.pipeline.flusher import Flusher

    rig = Rig(cache_size=4)
    store = FakeStore({})
    flusher = Flusher(rig.settings, store, rig.cache, rig.metrics)  # type: ignore[arg-type]
    rig.track(0, dumps(track_event("tc-1")))
    rig.uses(0, dumps(use_event(1)))
    for n in range(20):
        rig.track(1 + n, dumps(track_event(f"tc-other-{n}", track_id=f"trk-other-{n}")))
    assert "trk-1" not in rig.cache
    rig.track(21, dumps(track_event("tc-2", rights=NEW_RIGHTS)))
    rig.uses(1, dumps(use_event(2)))
    asyncio.run(flusher.flush(rig.state))
    holders = _holders_written(store)
    assert holders.get("old-label") == 1 and holders.get("new-label") == 1


def test_a_track_evicted_during_the_flush_read_does_not_expire_its_uses() -> None:
    """The track is cached when the flush decides what to read from Redis, and evicted by
    TrackCreated handled during that read. Its old uses find no metadata at snapshot
    time; they wait for the next flush's lookup instead of expiring unchecked."""
    from streamer.pipeline.flusher import Flusher

    rig = Rig(cache_size=4)
    rig.cache.put("trk-1", plan_for(OLD_META))  # flushed to the catalog earlier

    def agent_runs_on() -> None:
        for n in range(20):
            rig.track(n, dumps(track_event(f"tc-other-{n}", track_id=f"trk-other-{n}")))

    store = RacingStore({"trk-1": OLD_META}, agent_runs_on)
    flusher = Flusher(rig.settings, store, rig.cache, rig.metrics)  # type: ignore[arg-type]
    rig.uses(0, dumps(use_event(1)))
    _lateness_push(rig, 1, ahead_ms=3 * HOUR)
    asyncio.run(flusher.flush(rig.state))
    assert "trk-1" not in rig.cache
    assert "_unattributed" not in _holders_written(store)
    asyncio.run(flusher.flush(rig.state))
    holders = _holders_written(store)
    assert holders.get("old-label") == 1 and "_unattributed" not in holders
    assert "trk-1" not in rig.state.pending
