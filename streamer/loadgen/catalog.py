"""The catalog side of the traffic model: who the tracks are and who holds their rights.

A track's metadata depend only on (seed, track index), drawn from its own SplitMix64
stream, so every sending process gives a track the same TrackCreated whatever
partitions it owns. Popularity helpers (a bounded Zipf law) live here too.

Replacements: a share of the catalog (``LoadConfig.replace_share``) gets a second
TrackCreated mid-run that changes the track's splits. Such a track's rights, before and
after, go to holders of its own (``rpl-<index>-...``) and claim both rights whole, and
its genre and origin stay the same: which uses the worker attributes with the old or
the new splits depends on how it interleaves two topics, so only these holders'
counters may differ from the generator's order, and their weighted sums may not
(``streamer.verify.truth.fold_replaced_holders``).
"""

from __future__ import annotations

from bisect import bisect
from itertools import accumulate
from typing import Any

from aiokafka.partitioner import murmur2

from streamer.loadgen.config import LoadConfig
from streamer.loadgen.popularity import zipf_index
from streamer.verify.truth import REPLACED_HOLDER_PREFIX

_MASK64 = (1 << 64) - 1

GENRES: tuple[tuple[str, float], ...] = (
    ("pop", 16), ("hip-hop", 13), ("lofi", 10), ("edm", 8), ("latin", 7), ("hyperpop", 6),
    ("ambient", 6), ("rock", 6), ("r-and-b", 5), ("k-pop", 4), ("afrobeats", 4), ("phonk", 4),
    ("country", 3), ("classical", 2), ("jazz", 2), ("soundtrack", 2), ("drill", 2))

COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 20), ("BR", 9), ("IN", 9), ("ID", 7), ("MX", 6), ("GB", 5), ("PH", 4), ("DE", 4),
    ("FR", 4), ("JP", 4), ("TR", 3), ("VN", 3), ("TH", 3), ("ES", 3), ("NG", 2), ("EG", 2),
    ("KR", 2), ("IT", 2), ("CA", 2), ("AU", 2), ("PK", 2), ("SA", 2), ("AR", 2), ("CO", 2),
    ("PL", 1), ("NL", 1), ("ZA", 1), ("SE", 1))

AI_TOOLS = ("studio-gen-3", "melodylab-2.1", "beatsmith-1.4", "voxforge-5")
_TITLE_A = ("midnight", "neon", "paper", "velvet", "lost", "golden", "static", "ocean",
            "broken", "electric", "slow", "summer", "hollow", "cosmic", "quiet")
_TITLE_B = ("drive", "dreams", "hearts", "signals", "rain", "city", "echoes", "skyline",
            "tape", "bloom", "waves", "ghosts", "lights", "fever", "garden")
_ARTIST_A = ("Luna", "DJ", "Kid", "Nova", "MC", "Lil", "Echo", "Sable", "Vera", "Juno",
             "Rex", "Mira", "Ozzy", "Pixel", "Saint")
_ARTIST_B = ("Rivers", "Haze", "Nine", "Static", "Bloom", "Vega", "Kane", "Moth", "Orbit",
             "Fox", "Marlowe", "Quartz", "Tide", "Wren", "Zero")
_LABELS = ("Nightshift Records", "Blue Hour Music", "Paper Planes Recordings",
           "Kite & Key", "Low Tide Audio", "Open Sky Records")


class SplitMix:
    """SplitMix64: a tiny seeded stream, so each track's metadata is its own."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def random(self) -> float:
        self.state = z = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0)

    def below(self, n: int) -> int:
        return int(self.random() * n)


def partition_of(track_id: str, partitions: int) -> int:
    digest: int = murmur2(track_id.encode())
    return (digest & 0x7FFFFFFF) % partitions


def track_id_of(index: int) -> str:
    return f"trk{index:08x}"


def is_replaced(seed: int, index: int, catalog: int, share: float) -> bool:
    """Whether catalog track ``index`` gets a replacement TrackCreated mid-run."""
    if index >= catalog or share <= 0:
        return False
    return SplitMix(seed * 0x5851F42D4C957F2D + index * 0x14057B7EF767814F + 7).random() < share


class TrackMaker:
    """TrackCreated events of one configured stream (metadata from (seed, index))."""

    def __init__(self, cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.tag = f"e{cfg.seed:x}-"
        self._genre_cum = list(accumulate(w for _, w in GENRES))

    def replaced(self, index: int) -> bool:
        return is_replaced(self.cfg.seed, index, self.cfg.catalog, self.cfg.replace_share)

    def track_event(self, index: int, occurred_at: int) -> dict[str, Any]:
        """The TrackCreated of one track; its metadata depend only on (seed, index)."""
        r = SplitMix(self.cfg.seed * 0x100000001B3 + index * 0x9E3779B97F4A7C15 + 1)
        cfg = self.cfg
        track_id = track_id_of(index)
        genre = GENRES[bisect(self._genre_cum, r.random() * self._genre_cum[-1])][0]
        x = r.random()
        if x < cfg.ai_share:
            origin = "ai_generated" if x < cfg.ai_share * 0.65 else "ai_assisted"
        else:
            origin = "human"
        creator = f"usr{r.below(cfg.users)}"
        rights = self._rights(r, origin, creator)
        event: dict[str, Any] = {
            "event_id": f"{self.tag}c{index:x}",
            "track_id": track_id,
            "occurred_at": occurred_at,
            "creator_id": creator,
            "genre": genre,
            "ai_origin": origin,
            "rights": rights,
            "isrc": (f"QZ{'SKX'[r.below(3)]}{'AB9'[r.below(3)]}{r.below(10)}"
                     f"{index % 10_000_000:07d}"),
            "title": f"{_TITLE_A[r.below(len(_TITLE_A))]} {_TITLE_B[r.below(len(_TITLE_B))]}",
            "duration_ms": 8_000 + r.below(232_000),
        }
        if r.random() < 0.6:
            event["iswc"] = f"T{r.below(10_000_000_000):010d}"
        if origin != "human":
            event["ai_tool"] = AI_TOOLS[r.below(len(AI_TOOLS))]
        self._report_names(r, event, rights[0]["holder_id"] if rights else None)
        if index < cfg.catalog and self.replaced(index):
            holder = f"{REPLACED_HOLDER_PREFIX}{index:x}"
            event["rights"] = [{"holder_id": f"{holder}-l0", "right": "master", "share": 1},
                               {"holder_id": f"{holder}-p0", "right": "publishing",
                                "share": "1"}]
        return event

    @staticmethod
    def _report_names(r: SplitMix, event: dict[str, Any], master: str | None) -> None:
        """Title, ISRC, display artist and label as a UGC catalog has them (drawn after
        everything else, so the other fields are what they were before these existed):
        nearly every track is named, most credit an artist (the creator's name, now and
        then featuring another), ISRCs only for the share distributed to DSPs, and a
        label name where a label holds the master rather than the creator."""
        if r.random() < 0.03:
            del event["title"]
        if r.random() < 0.62:
            del event["isrc"]
        if r.random() < 0.88:
            creator = int(event["creator_id"][3:])
            artist = (f"{_ARTIST_A[creator % len(_ARTIST_A)]} "
                      f"{_ARTIST_B[creator // len(_ARTIST_A) % len(_ARTIST_B)]}")
            if r.random() < 0.08:
                other = r.below(len(_ARTIST_A))
                artist += f" feat. {_ARTIST_A[other]} {_ARTIST_B[other]}"
            event["artist"] = artist
        if master is not None and master.startswith("lbl-") and r.random() < 0.9:
            event["label"] = f"{_LABELS[int(master[4:]) % len(_LABELS)]} {master[4:]}"

    def replacement_event(self, index: int, occurred_at: int) -> dict[str, Any]:
        """The second TrackCreated of a replaced track: the master split in two."""
        event = self.track_event(index, occurred_at)
        holder = f"{REPLACED_HOLDER_PREFIX}{index:x}"
        event["event_id"] = f"{self.tag}r{index:x}"
        event["rights"] = [{"holder_id": f"{holder}-l1", "right": "master", "share": "0.6"},
                           {"holder_id": f"{holder}-l2", "right": "master", "share": 0.4},
                           {"holder_id": f"{holder}-p1", "right": "publishing", "share": 1}]
        return event

    @staticmethod
    def _share(r: SplitMix, micro: int) -> Any:
        """A share as a JSON number or a decimal string (at most 6 decimals)."""
        text = f"{micro // 1_000_000}.{micro % 1_000_000:06d}".rstrip("0").rstrip(".")
        if r.random() < 0.5:
            return text
        return 1 if micro == 1_000_000 else float(text)

    def _rights(self, r: SplitMix, origin: str, creator: str) -> list[dict[str, Any]]:
        """1-4 holders: labels own the master, publishers the composition, with the
        splits seen in practice and often a remainder nobody claimed."""
        label = f"lbl-{zipf_index(r.random(), 2_000, 1.2)}"
        if origin == "ai_generated" and r.random() < 0.5:
            label = creator  # self-released AI track
        x = r.random()
        if x < 0.55:
            master = [(label, 1_000_000)]
        elif x < 0.7:
            master = [(label, (850_000, 900_000, 950_000)[r.below(3)])]
        else:
            second = f"lbl-{zipf_index(r.random(), 2_000, 1.2)}"
            if second == label:
                second = f"dist-{r.below(300)}"
            a = (500_000, 600_000, 700_000, 750_000, 800_000)[r.below(5)]
            b = 1_000_000 - a - (50_000 if r.random() < 0.3 else 0)
            master = [(label, a), (second, b)]
        y = r.random()
        publishers = [f"pub-{zipf_index(r.random(), 5_000, 1.2)}" for _ in range(3)]
        if len(set(publishers)) < 3:
            publishers = [f"{p}-{i}" for i, p in enumerate(publishers)]
        if y < 0.12:
            publishing: list[tuple[str, int]] = []  # composition entirely unclaimed
        elif y < 0.45:
            publishing = [(publishers[0], (1_000_000, 500_000, 750_000)[r.below(3)])]
        elif y < 0.85:
            pair = ((500_000, 500_000), (600_000, 400_000), (333_333, 333_333),
                    (500_000, 250_000))[r.below(4)]
            publishing = list(zip(publishers[:2], pair, strict=True))
        else:
            triple = ((333_333, 333_333, 333_333), (500_000, 250_000, 250_000),
                      (400_000, 300_000, 200_000))[r.below(3)]
            publishing = list(zip(publishers, triple, strict=True))
        if len(master) + len(publishing) > 4:
            publishing = publishing[:4 - len(master)]
        rights = [{"holder_id": h, "right": "master", "share": self._share(r, m)}
                  for h, m in master]
        rights += [{"holder_id": h, "right": "publishing", "share": self._share(r, m)}
                   for h, m in publishing]
        return rights
