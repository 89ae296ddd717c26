"""An idle partition closes a day by the wall clock, held back by STREAMER_IDLE_CLOSE_DELAY.

A producer that buffered through an outage delivers a day's last uses after midnight;
closing by the bare wall clock dead-lettered them (and made the suite, whose events are
up to about two hours old, fail when it ran in the hours after midnight UTC)."""

from __future__ import annotations

from typing import Any

import pytest

from streamer.config import load_settings
from streamer.pipeline import day_closing
from streamer.pipeline.day_closing import DayCloser
from streamer.state.keys import DAY_MS, TRACKS_CODE, USES_CODE
from streamer.state.partition import PartitionState

DAY = 1_796_601_600_000  # a UTC midnight
LATENESS_MS = 120_000


def _idle_state() -> PartitionState:
    state = PartitionState(partition=0, owner="w:1", seq=1, dedupe_horizon_ms=300_000)
    state.advance_watermark(USES_CODE, DAY + 3_600_000)
    state.advance_watermark(TRACKS_CODE, DAY + 3_600_000)
    state.note_uses_caught_up(True)
    state.note_tracks_caught_up(True)
    return state


def _seal_at(monkeypatch: pytest.MonkeyPatch, wall_ms: int, **env: str) -> int:
    settings = load_settings({"STREAMER_ALLOWED_LATENESS": "2m", **env})
    closer = DayCloser(settings, store=Any)  # type: ignore[arg-type]  # seal reads no Redis
    monkeypatch.setattr(day_closing.time, "time", lambda: wall_ms / 1000)
    state = _idle_state()
    closer.seal(state)
    return state.closed_before


def test_the_default_delay_keeps_a_day_open_six_hours_past_its_end_plus_lateness(
        monkeypatch: pytest.MonkeyPatch) -> None:
    end = DAY + DAY_MS
    ten_past_midnight = end + 10 * 60_000
    assert _seal_at(monkeypatch, ten_past_midnight) < end
    assert _seal_at(monkeypatch, end + LATENESS_MS + 6 * 3_600_000 - 1) < end
    assert _seal_at(monkeypatch, end + LATENESS_MS + 6 * 3_600_000) == end


def test_the_delay_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    end = DAY + DAY_MS
    env = {"STREAMER_IDLE_CLOSE_DELAY": "20m"}
    assert _seal_at(monkeypatch, end + LATENESS_MS + 20 * 60_000 - 1, **env) < end
    assert _seal_at(monkeypatch, end + LATENESS_MS + 20 * 60_000, **env) == end
