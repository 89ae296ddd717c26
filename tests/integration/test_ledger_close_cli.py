"""``streamer ledger close`` on demand, against a real worker's Redis state.

Uses of two past UTC days are in Kafka before the worker starts; the worker counts them
and seals the days (meta ``cl``), closing them into its own ledger. The command, run as
a process with the same Redis but another ledger folder, closes the sealed days there
too: first up to ``--day`` only, then the rest. Checked: the command's ledger against
the events sent (uses per day, track, country and use; holder weights) and, table by
table, against the worker's ledger; closing again commits nothing and changes no file.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from support.pipeline import DAY, HOUR, Pipeline, now_ms, poll_until, right, track_event, use_event

from streamer.ledger import LedgerLocation, LedgerWriter
from streamer.pipeline.day_closing import day_of

COUNTRIES = ("DE", "US", "BR", "JP")
TABLES = ("tracks", "holders", "genres", "catalog", "attributions")
# track -> master shares (holder, share); None: never gets metadata (_unattributed)
TRACKS: dict[str, list[tuple[str, str]] | None] = {
    "cli-a": [("label-c1", "1")],
    "cli-b": [("label-c1", "0.25"), ("label-c2", "0.5")],
    "cli-x": None,
}
# Report names a TrackCreated may carry, to the ledger's catalog rows (cli-a has none).
NAMES = {"cli-b": {"title": "Tab\there | pipe \\ slash", "isrc": "USQX91300108",
                   "artist": "Daft Punk feat. Pharrell Williams", "label": "Columbia"}}


def run_close(pipe: Pipeline, ledger: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **pipe.env(STREAMER_LEDGER_URL=str(ledger))}
    return subprocess.run([sys.executable, "-m", "streamer.cli", "ledger", "close", *args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def rows(ledger: Path, table: str) -> list[tuple[Any, ...]]:
    found = DeltaTable(str(ledger / table)).to_pyarrow_table().to_pylist()
    return sorted((tuple(sorted(row.items())) for row in found), key=repr)


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in root.rglob("*") if path.is_file()}


async def test_ledger_close_closes_sealed_days_once(make_pipeline: Any, tmp_path: Path) -> None:
    pipe: Pipeline = await make_pipeline(partitions=2)
    today = now_ms() // DAY * DAY
    day_one, day_two = today - 3 * DAY, today - 2 * DAY
    uses = [use_event(track, ("play", "create")[n % 3 == 0],
                      day + (n % 24) * HOUR + n, country=COUNTRIES[(n * 5) % len(COUNTRIES)])
            for day in (day_one, day_two) for n, track in
            ((n, list(TRACKS)[n % len(TRACKS)]) for n in range(120))]
    uses.sort(key=lambda event: event["occurred_at"])
    async with pipe.producer(batch_events=40, linger_ms=20) as producer:
        for track, shares in TRACKS.items():
            if shares is not None:
                await producer.send_track(track_event(
                    track, day_one, rights=[right(h, "master", s) for h, s in shares],
                    **NAMES.get(track, {})))
        await producer.flush()
        for event in uses:
            await producer.send_use(event)

    days = [day_of(day_one), day_of(day_two)]
    worker_ledger = Path(pipe.env()["STREAMER_LEDGER_URL"])
    worker_writer = LedgerWriter(LedgerLocation(str(worker_ledger)), {})
    await pipe.start_worker()
    await pipe.drained()

    async def sealed_and_closed_by_worker() -> bool:
        closed = [await asyncio.to_thread(worker_writer.last_closed_day, p)
                  for p in range(pipe.partitions)]
        return all(day is not None and day >= days[1] for day in closed)

    await poll_until(sealed_and_closed_by_worker, 180, "both days sealed and closed")
    await pipe.workers[0].aterminate()  # nothing changes the sealed days' data any more

    ledger = tmp_path / "cli-ledger"
    first = run_close(pipe, ledger, "--day", days[0].isoformat())
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"p{p}: closed {days[0].isoformat()}"
                                         for p in range(pipe.partitions)]
    writer = LedgerWriter(LedgerLocation(str(ledger)), {})
    assert [writer.last_closed_day(p) for p in range(pipe.partitions)] == [days[0]] * 2

    rest = run_close(pipe, ledger)
    assert rest.returncode == 0, rest.stderr
    last = [worker_writer.last_closed_day(p) for p in range(pipe.partitions)]
    assert [writer.last_closed_day(p) for p in range(pipe.partitions)] == last
    for p, line in enumerate(rest.stdout.splitlines()):
        closed = [days[0] + timedelta(days=n) for n in range(1, (last[p] - days[0]).days + 1)]
        assert line == f"p{p}: closed {', '.join(d.isoformat() for d in closed)}"

    # Against the events: uses per day, track, country and use; master weights per holder.
    truth: Counter[tuple[Any, ...]] = Counter()
    weights: Counter[tuple[Any, ...]] = Counter()
    for event in uses:
        key = (day_of(event["occurred_at"]), event["track_id"], event["country"], event["use"])
        truth[key] += 1
        shares = TRACKS[event["track_id"]]
        for holder, micro in ([("_unattributed", 1_000_000)] if shares is None else
                              [(h, int(float(s) * 1_000_000)) for h, s in shares]
                              + [("_unclaimed", 1_000_000 - sum(int(float(s) * 1_000_000)
                                                                for _, s in shares))]):
            if micro:
                weights[(key[0], holder, event["use"])] += micro
    found: Counter[tuple[Any, ...]] = Counter()
    for row in DeltaTable(str(ledger / "tracks")).to_pyarrow_table().to_pylist():
        found[(row["day"], row["track_id"], row["country"], row["use"])] += row["uses"]
    assert found == truth
    weighed: Counter[tuple[Any, ...]] = Counter()
    for row in DeltaTable(str(ledger / "holders")).to_pyarrow_table().to_pylist():
        if row["right"] == "master":
            weighed[(row["day"], row["holder_id"], row["use"])] += row["weighted_micro"]
    assert +weighed == weights

    # The names came through Kafka, the worker's Redis entries and the close.
    catalog = DeltaTable(str(ledger / "catalog")).to_pyarrow_table().to_pylist()
    for row in catalog:
        assert {name: row[name] for name in ("title", "isrc", "artist", "label")} == \
            NAMES.get(row["track_id"], dict.fromkeys(("title", "isrc", "artist", "label")))
    assert {row["track_id"] for row in catalog} == set(TRACKS)

    # The same rows as the worker's own closes.
    for table in TABLES:
        assert rows(ledger, table) == rows(worker_ledger, table), table

    # Closing again commits nothing and changes no file.
    before = files(ledger)
    again = run_close(pipe, ledger)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"p{p}: closed nothing new"
                                         for p in range(pipe.partitions)]
    assert files(ledger) == before
