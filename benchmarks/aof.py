"""``python -m benchmarks.aof``: what the flush costs Redis, per usage event, in AOF bytes.

Under ``appendfsync always`` every byte a flush appends to the AOF is written and
fsynced before Redis answers, and the AOF's growth rate decides how often Redis
rewrites it (a rewrite stalls every write for seconds). This measures, without Kafka
and deterministically (bytes and command counts, not timings):

* AOF bytes per counted usage event, split by command and by kind of key;
* Redis CPU (``used_cpu_user + used_cpu_sys``) and ``EVALSHA`` time per event (these
  two are timings, so they vary with the machine's load; the bytes do not);
* with ``--callgrind``, the instructions Redis executes per event during the measured
  flushes (valgrind; slow, so use ``--seconds 2 --warmup 1``), which a busy machine
  does not change.

It starts a private ``redis-server`` (AOF on, ``appendfsync always``, rewrites off) in a
temporary directory, generates traffic with the load generator's model at ``--rate``
events/s of event time, counts it with the worker's own ``RecordProcessor`` and flushes
every partition once per second of event time with the worker's ``Flusher`` and
``RedisStore``, as a worker at that rate would. The first ``--warmup`` seconds (and
the catalog preamble) are not measured. The same ``--seed`` gives the same events and
the same flushes, so two versions of the flush script compare byte for byte.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis

from streamer.config import Settings
from streamer.loadgen.config import LoadConfig
from streamer.loadgen.model import TrafficModel
from streamer.loadgen.records import TRACKS, RecordBuilder
from streamer.metrics import Metrics
from streamer.pipeline.attribution import plan_bytes
from streamer.pipeline.flusher import Flusher
from streamer.pipeline.processor import RecordProcessor
from streamer.state.catalog import CatalogCache
from streamer.state.keys import KeyLayout
from streamer.state.partition import PartitionState
from streamer.state.store import RedisStore

_KIND = re.compile(rb"^(?:\{[^}]*\}:(?P<counter>zg|tt|th|tg|av|[thgza]):"
                   rb"|\{[^}]*\}:(?P<part>meta|pending|dd)|[^{]*:cat:)")


def parse_aof(data: bytes) -> list[list[bytes]]:
    """The commands of a RESP-encoded AOF segment (no RDB preamble)."""
    commands: list[list[bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        if data[pos:pos + 1] != b"*":
            raise ValueError(f"not a RESP array at byte {pos}")
        line_end = data.index(b"\r\n", pos)
        count = int(data[pos + 1:line_end])
        pos = line_end + 2
        args: list[bytes] = []
        for _ in range(count):
            line_end = data.index(b"\r\n", pos)
            size = int(data[pos + 1:line_end])
            args.append(data[line_end + 2:line_end + 2 + size])
            pos = line_end + 2 + size + 2
        commands.append(args)
    return commands


def command_size(args: list[bytes]) -> int:
    return len(f"*{len(args)}\r\n") + sum(len(f"${len(a)}\r\n") + len(a) + 2 for a in args)


def kind_of(args: list[bytes]) -> str:
    """``HSET t`` etc.: the command and the kind of key it writes (t/h/g/z counters,
    zg per-genre trending, tt/th/tg territory counters, a/av the day's attributions)."""
    name = args[0].decode().upper()
    if len(args) < 2 or name in ("MULTI", "EXEC", "SELECT"):
        return name
    match = _KIND.match(args[1])
    if match is None:
        return f"{name} ?"
    kind = match.group("counter") or match.group("part") or b"cat"
    return f"{name} {kind.decode()}"


def incr_file(aof_dir: Path) -> Path:
    """The AOF segment Redis appends to now (Redis 7 multi-part AOF)."""
    manifest = next(aof_dir.glob("*.manifest")).read_text()
    names = re.findall(r"file (\S+) seq \d+ type i", manifest)
    return aof_dir / names[-1]


async def redis_stats(client: aioredis.Redis) -> dict[str, float]:
    cpu = await client.info("cpu")
    stats = await client.info("commandstats")
    evalsha = stats.get("cmdstat_evalsha", {})
    return {"cpu": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            "evalsha_usec": float(evalsha.get("usec", 0)),
            "evalsha_calls": float(evalsha.get("calls", 0))}


def callgrind(what: str, pid: int | None = None) -> None:
    """Switch callgrind's instruction counting of the Redis process (``--callgrind``)."""
    pid = pid or _CALLGRIND_PID[0]
    if pid:
        subprocess.run(["callgrind_control", "-i", what, str(pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_CALLGRIND_PID: list[int] = [0]


def callgrind_instructions(out: Path) -> int:
    """Instructions counted (the ``totals:`` line of a callgrind output file)."""
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"no totals in {out}")


async def run(opts: argparse.Namespace, url: str, aof_dir: Path) -> dict[str, Any]:
    settings = (Settings() if opts.territory_windows is None else
                Settings(territory_windows=tuple(filter(None, opts.territory_windows.split(",")))))
    client = aioredis.from_url(url, decode_responses=False)
    store = RedisStore(client, KeyLayout(opts.prefix))
    cache = CatalogCache(settings.catalog_cache_bytes, plan_bytes)
    metrics = Metrics()
    processor = RecordProcessor(settings, cache, metrics)
    flusher = Flusher(settings, store, cache, metrics)
    total_s = opts.warmup + opts.seconds
    cfg = LoadConfig(use_rate=opts.rate, duration_s=total_s, seed=opts.seed,
                     batch_events=opts.batch_events, catalog=opts.catalog)
    # Event time well in the past (not 'future'), within the allowed lateness.
    start = opts.start_ms or (int(time.time() * 1000) // 60_000 - 30) * 60_000 + opts.offset_ms
    cfg.start_ms = start
    model = TrafficModel(cfg, opts.partitions, catalog_ms=start)
    builder = RecordBuilder(opts.batch_events)
    states: dict[int, PartitionState] = {}
    for partition in range(opts.partitions):
        claimed = await store.claim(partition, f"aof-bench:{partition}")
        states[partition] = PartitionState(partition, f"aof-bench:{partition}", claimed.seq,
                                           settings.dedupe_horizon_ms)
    offsets: Counter[tuple[int, int]] = Counter()

    async def flush_all() -> None:
        for state in states.values():
            state.rejections.clear()
            state.dlq_pending.clear()  # no DLQ here: rejections are not what is measured
            await flusher.flush(state)

    def feed(records: list[Any]) -> int:
        events = 0
        now_ms = int(time.time() * 1000)
        for record in records:
            state = states[record.partition]
            key = (record.topic, record.partition)
            offset = offsets[key]
            offsets[key] += 1
            if record.topic == TRACKS:
                processor.handle_track(state, offset, record.value, now_ms)
            else:
                events += processor.handle_uses(state, offset, record.value, now_ms)
        return events

    feed(builder.add(model.catalog_tick()))
    await flush_all()
    measure_from = start + opts.warmup * 1000
    next_flush = start + 1000
    measuring = False
    aof_start = 0
    rounds: list[tuple[int, dict[str, float]]] = []  # (events, Redis stats) per round
    pending_events = 0

    async def measured_round() -> None:
        before = await redis_stats(client)
        callgrind("on")
        await flush_all()
        callgrind("off")
        after = await redis_stats(client)
        rounds.append((pending_events, {k: after[k] - before[k] for k in after}))

    for tick in model.ticks(start):
        pending_events += feed(builder.add(tick))
        if tick.end_ms >= next_flush:
            next_flush += 1000
            if measuring:
                await measured_round()
            else:
                await flush_all()
                if tick.end_ms >= measure_from:
                    measuring = True
                    aof_start = incr_file(aof_dir).stat().st_size
            pending_events = 0
    await measured_round()
    data = incr_file(aof_dir).read_bytes()[aof_start:]
    if opts.dump:
        await dump(client, opts.dump)
    await client.aclose()
    by_kind: Counter[str] = Counter()
    commands: Counter[str] = Counter()
    for args in parse_aof(data):
        kind = kind_of(args)
        by_kind[kind] += command_size(args)
        commands[kind] += 1
    events = sum(n for n, _ in rounds)
    return {"events": events, "flushes": len(rounds), "aof_bytes": len(data),
            "cpu_s": sum(r["cpu"] for _, r in rounds),
            "evalsha_usec": sum(r["evalsha_usec"] for _, r in rounds),
            "best_cpu_us": min(r["cpu"] * 1e6 / n for n, r in rounds if n >= 1_000),
            "by_kind": by_kind, "commands": commands}


async def dump(client: aioredis.Redis, path: Path) -> None:
    """Every key's value (not its TTL), sorted: two runs of the same seed and
    ``--start-ms`` must write identical files whatever the flush script."""
    lines: list[bytes] = []
    async for key in client.scan_iter(count=1000):
        # This client does not decode replies: every value is bytes.
        kind = cast(bytes, await client.type(key))
        if kind == b"hash":
            fields = cast(dict[bytes, bytes], await client.hgetall(key))
            value = b" ".join(f + b"=" + v for f, v in sorted(fields.items()))
        elif kind == b"zset":
            members = cast(list[tuple[bytes, float]],
                           await client.zrange(key, 0, -1, withscores=True))
            value = b" ".join(m + b"=" + repr(s).encode() for m, s in members)
        else:
            raw = cast(bytes | None, await client.get(key))
            value = (raw or b"").hex().encode()
        lines.append(key + b" " + kind + b" " + value)
    path.write_bytes(b"\n".join(sorted(lines)) + b"\n")


def start_redis(port: int, directory: Path, valgrind: bool) -> subprocess.Popen[bytes]:
    tool = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={directory / 'callgrind.out'}"] if valgrind else []
    process = subprocess.Popen(
        [*tool, shutil.which("redis-server") or "redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--appenddirname", "aof",
         "--auto-aof-rewrite-percentage", "0", "--daemonize", "no",
         "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(redis.ConnectionError):
            if redis.Redis(port=port).ping():
                return process
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"redis-server on port {port} did not start")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.aof", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=90_000.0, help="usage events/s (90000)")
    p.add_argument("--seconds", type=int, default=10, help="measured seconds of event time")
    p.add_argument("--warmup", type=int, default=3, help="seconds flushed before measuring")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--batch-events", type=int, default=500)
    p.add_argument("--catalog", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--offset-ms", type=int, default=10_000,
                   help="start this far into a minute (the 1m windows roll over at 50 s)")
    p.add_argument("--start-ms", type=int, default=0,
                   help="event time of the first tick (default: half an hour ago)")
    p.add_argument("--dump", type=Path, help="write every key's value here, sorted")
    p.add_argument("--port", type=int, default=6390, help="private redis-server port (6390)")
    p.add_argument("--prefix", default="aofbench")
    p.add_argument("--territory-windows", metavar="NAMES",
                   help="STREAMER_TERRITORY_WINDOWS for the run ('' : territory off; "
                        "default: the default windows)")
    p.add_argument("--keep", action="store_true", help="keep the Redis directory")
    p.add_argument("--callgrind", action="store_true",
                   help="run redis-server under valgrind's callgrind and report the "
                        "instructions it executes during the measured flushes (slow, but "
                        "unlike CPU time the same on a busy machine)")
    opts = p.parse_args(argv)

    directory = Path(tempfile.mkdtemp(prefix="streamer-aof-"))
    instructions = 0
    process = start_redis(opts.port, directory, opts.callgrind)
    if opts.callgrind:
        _CALLGRIND_PID[0] = process.pid
    try:
        result = asyncio.run(run(opts, f"redis://127.0.0.1:{opts.port}/0", directory / "aof"))
    finally:
        process.terminate()
        process.wait(timeout=120)
        if opts.callgrind:
            instructions = callgrind_instructions(directory / "callgrind.out")
        if not opts.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"Redis directory kept: {directory}")
    events = result["events"]
    print(f"{events:,} usage events counted in {result['flushes']} flush rounds of "
          f"{opts.partitions} partitions ({opts.rate:,.0f}/s, seed {opts.seed}):")
    print(f"  AOF bytes per event     {result['aof_bytes'] / events:8.2f}  "
          f"({result['aof_bytes']:,} bytes)")
    print(f"  Redis CPU per event     {result['cpu_s'] * 1e6 / events:8.2f} us  "
          f"(used_cpu_user+sys during the flushes; a timing, varies with load)")
    print(f"  Redis CPU, best round   {result['best_cpu_us']:8.2f} us per event")
    print(f"  EVALSHA time per event  {result['evalsha_usec'] / events:8.2f} us")
    if opts.callgrind:
        print(f"  Redis instructions per event {instructions / events:8,.0f}  (callgrind)")
    print("  AOF bytes per event by command and key kind (commands per flush round):")
    rounds = result["flushes"]
    for kind, size in result["by_kind"].most_common():
        print(f"    {kind:14s} {size / events:8.2f}  ({result['commands'][kind] / rounds:,.1f})")


if __name__ == "__main__":
    main()
