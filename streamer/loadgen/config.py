"""What traffic to generate: the knobs of the synthetic workload, with realistic defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from streamer.loadgen.territories import ALL_TERRITORIES

TRACKS_PER_DAY = 2_000_000
DAY_S = 86_400
# The model's longest tick of event time; a tick is sent once the clock reaches its end.
TICK_MAX_MS = 1_000
# An early track's TrackCreated follows its first use by this much (uniformly drawn).
EARLY_DELAY_MIN_MS = 5_000
EARLY_DELAY_MAX_MS = 120_000
# The allowed lateness must be at least this many times jitter + tick + early delay.
LATENESS_MARGIN = 2


@dataclass(slots=True)
class LoadConfig:
    """One generated stream. Rates are per *simulated* second (event time).

    The same ``seed`` and ``start_ms`` give the same events, byte for byte, whatever the
    number of sending processes. ``schedule`` is a list of ``(sim_seconds, uses_per_s)``
    segments; without it the stream is ``duration_s`` at ``use_rate``.
    """

    seed: int = 1
    # Simulated wall clock at the first tick, epoch ms (default: now, chosen by the caller).
    start_ms: int | None = None
    duration_s: float = 60.0
    use_rate: float = 1_000.0
    schedule: list[tuple[float, float]] | None = None
    track_rate: float = TRACKS_PER_DAY / DAY_S
    # Tracks that exist before the run; their TrackCreated are sent first (the preamble).
    catalog: int = 20_000
    zipf: float = 1.1
    # Share of new tracks that burst into trending, the peak popularity of a burst as a
    # Zipf rank (log-uniform between these), and how fast a burst rises and decays.
    trend_prob: float = 0.001
    trend_rank_min: float = 10.0
    trend_rank_max: float = 10_000.0
    trend_rise_s: float = 900.0
    trend_half_life_s: float = 7_200.0
    initial_trending: int = 20
    ai_share: float = 0.4
    # Uses that are 'create' (a video made with the sound) rather than 'play'.
    create_share: float = 0.05
    users: int = 50_000_000
    # Territories uses come from: the first N of loadgen.territories' ranking (a few
    # large markets, then a long tail; 211 = all of them).
    countries: int = ALL_TERRITORIES
    # Faults mixed into the stream (fractions of uses, or of new tracks for early_rate).
    duplicate_rate: float = 0.005
    late_rate: float = 0.001
    early_rate: float = 0.02
    invalid_rate: float = 0.001
    # Arrival jitter of valid events (occurred_at slightly before they are sent).
    jitter_ms: int = 2_000
    # Lateness the worker is configured with (decides which 'late' events are really late).
    allowed_lateness_ms: int = 3_600_000
    # The worker's dedupe horizon: duplicates are re-sent up to this much event time after
    # their original (less when the allowed lateness is shorter; see ``duplicate_delay_max_ms``).
    dedupe_horizon_ms: int = 300_000
    # Share of the catalog whose TrackCreated is replaced mid-run with other splits.
    replace_share: float = 0.002
    # Longest wait of an early track's TrackCreated behind its creation (None: 120 s, or
    # less so that it fits the allowed lateness; see ``early_delay_max_ms``).
    early_delay_ms: int | None = None
    # Events per batch record; 1 sends every SoundUsed as its own record.
    batch_events: int = 500
    # A partly filled batch is sent once it is this old (wall ms; 0: only when full).
    linger_ms: int = 50
    # Target uses per generation tick (bigger ticks are cheaper, smaller are smoother).
    tick_uses: int = 2_000
    windows: tuple[tuple[str, int], ...] = (
        ("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000))
    # The worker's territory windows (STREAMER_TERRITORY_WINDOWS), for the ground truth.
    territory_windows: tuple[tuple[str, int], ...] = (("1d", 86_400_000),)
    extra: dict[str, Any] = field(default_factory=dict)

    def segments(self) -> list[tuple[float, float]]:
        if self.schedule:
            return [(float(d), float(r)) for d, r in self.schedule]
        return [(float(self.duration_s), float(self.use_rate))]

    @property
    def total_sim_s(self) -> float:
        return sum(d for d, _ in self.segments())

    @property
    def expected_uses(self) -> int:
        return int(sum(d * r for d, r in self.segments()))

    @property
    def early_delay_max_ms(self) -> int:
        """Longest hold-back of an early track's TrackCreated (event time).

        The worker settles uses still waiting for their track as ``_unattributed`` once
        the watermark is the allowed lateness past them, so by default the delay shrinks
        from 120 s to fit a short lateness (``validate`` checks the margin).
        """
        if self.early_delay_ms is not None:
            return int(self.early_delay_ms)
        fits = self.allowed_lateness_ms // LATENESS_MARGIN - self.jitter_ms - TICK_MAX_MS
        return int(max(EARLY_DELAY_MIN_MS, min(EARLY_DELAY_MAX_MS, fits)))

    @property
    def duplicate_delay_max_ms(self) -> int:
        """Longest wait of a duplicate behind its original's ``occurred_at``.

        The duplicate is sent in a tick ending at most a tick after that, when the
        partition's watermark can be at most that tick's end: still within the dedupe
        horizon (so the worker surely remembers the id) and within the allowed lateness
        (so it is a duplicate, not a late event).
        """
        span = min(self.dedupe_horizon_ms, self.allowed_lateness_ms)
        return max(0, span - 2 * TICK_MAX_MS - self.jitter_ms)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["windows"] = [list(w) for w in self.windows]
        data["territory_windows"] = [list(w) for w in self.territory_windows]
        return data

    def validate(self) -> None:
        """Raise ValueError, naming the field, for a config that cannot give exact truth."""
        fractions = ("duplicate_rate", "late_rate", "early_rate", "invalid_rate", "ai_share",
                     "create_share", "trend_prob", "replace_share")
        for name in fractions:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.duplicate_rate + self.late_rate + self.invalid_rate > 0.5:
            raise ValueError("duplicate_rate + late_rate + invalid_rate must be at most 0.5")
        if not 1 <= self.batch_events <= 10_000:
            raise ValueError("batch_events must be within [1, 10000] (the worker's batch limit)")
        if self.catalog < 1:
            raise ValueError("catalog must hold at least one track")
        if not 1 <= self.countries <= ALL_TERRITORIES:
            raise ValueError(f"countries must be within [1, {ALL_TERRITORIES}], "
                             f"got {self.countries}")
        if self.users < 1:
            raise ValueError(f"users must be at least 1, got {self.users}")
        if self.tick_uses < 1:
            raise ValueError(f"tick_uses must be at least 1, got {self.tick_uses}")
        if self.initial_trending < 0:
            raise ValueError(f"initial_trending must not be negative, got {self.initial_trending}")
        for name in ("duration_s", "use_rate", "track_rate", "jitter_ms", "allowed_lateness_ms",
                     "linger_ms", "dedupe_horizon_ms"):
            _check_amount(name, getattr(self, name))
        if self.schedule is not None:
            for number, segment in enumerate(self.schedule):
                if len(segment) != 2:
                    raise ValueError(f"schedule[{number}] must be (sim_seconds, uses_per_s)")
                _check_amount(f"schedule[{number}] duration", segment[0])
                _check_amount(f"schedule[{number}] rate", segment[1])
        if not (math.isfinite(self.zipf) and self.zipf > 0):
            raise ValueError(f"zipf exponent must be positive and finite, got {self.zipf}")
        for name in ("trend_rank_min", "trend_rank_max", "trend_rise_s", "trend_half_life_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value}")
        if self.trend_rank_max < self.trend_rank_min:
            raise ValueError(f"trend_rank_max ({self.trend_rank_max}) must not be below "
                             f"trend_rank_min ({self.trend_rank_min})")
        if not self.windows:
            raise ValueError("windows must list at least one (name, size_ms) window")
        for window in self.windows:
            if len(window) != 2 or not (isinstance(window[1], int) and window[1] > 0):
                raise ValueError(f"windows: {window!r} is not a (name, positive size_ms) pair")
        if self.early_delay_ms is not None and not (
                EARLY_DELAY_MIN_MS <= self.early_delay_ms <= 86_400_000):
            raise ValueError(f"early_delay_ms must be within [{EARLY_DELAY_MIN_MS}, 86400000], "
                             f"got {self.early_delay_ms}")
        if self.duplicate_rate > 0 and min(self.dedupe_horizon_ms, self.allowed_lateness_ms) < (
                2 * TICK_MAX_MS + self.jitter_ms):
            raise ValueError(
                f"dedupe_horizon_ms ({self.dedupe_horizon_ms}) and allowed_lateness_ms must be "
                f"at least 2 x tick {TICK_MAX_MS} + jitter_ms {self.jitter_ms}: a duplicate "
                "sent in the next tick could otherwise be forgotten or late (or set "
                "duplicate_rate to 0)")
        early = self.early_delay_max_ms if self.early_rate > 0 else 0
        need = LATENESS_MARGIN * (self.jitter_ms + TICK_MAX_MS + early)
        if self.allowed_lateness_ms < need:
            raise ValueError(
                f"allowed_lateness_ms ({self.allowed_lateness_ms}) must be at least "
                f"{LATENESS_MARGIN} x (jitter_ms {self.jitter_ms} + tick {TICK_MAX_MS} + "
                f"early_delay_ms {early}) = {need}: with less, the worker would reject valid "
                "uses as late or settle early uses before their TrackCreated arrives "
                "(lower jitter_ms or early_delay_ms, or set early_rate to 0)")


def _check_amount(name: str, value: float) -> None:
    """A rate or duration: a finite number, not negative (NaN and infinities refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number and not negative, got {value!r}")
