"""``streamer`` command line: ``worker``, ``produce``, ``query``, ``load``.

Errors a user can fix (bad configuration, unreachable Kafka, invalid input lines)
end with one clear message and a non-zero exit code, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

import orjson

from streamer.config import ConfigError, Settings, load_settings
from streamer.events.validation import Rejected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a worker (consume, count, serve the query API)")
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warn", "error"])

    produce = sub.add_parser("produce", help="send events from a JSON-lines file")
    produce.add_argument("file", help="path of a JSON-lines file, or - for standard input")
    produce.add_argument("--kind", choices=["auto", "use", "track"], default="auto",
                         help="event type of every line (auto: a line with 'rights' is a track)")
    produce.add_argument("--batch-events", type=int, default=500)

    query = sub.add_parser("query", help="ask a worker's query API")
    query.add_argument("what", choices=["track", "holder", "genre", "trending", "ai-share",
                                        "health"])
    query.add_argument("id", nargs="?", help="track, holder or genre id")
    query.add_argument("--window")
    query.add_argument("--at", type=int, help="epoch ms inside the window (default now)")
    query.add_argument("--limit", type=int)
    query.add_argument("--genre", help="trending: only tracks of this genre")
    query.add_argument("--from", dest="from_", help="ai-share: first day or time (UTC) or epoch ms")
    query.add_argument("--to", help="ai-share: last day or time (UTC) or epoch ms (default now)")
    query.add_argument("--top", type=int, help="ai-share: trending tracks per window (default 20)")
    query.add_argument("--url", default=None, help="worker base URL (default from settings)")

    load = sub.add_parser("load", help="send generated traffic (load generator, see "
                          "streamer/loadgen)")
    from streamer.loadgen.cli import add_arguments as add_load_arguments

    add_load_arguments(load)

    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"streamer: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "worker":
        return run_worker(settings, args.loglevel)
    if args.command == "load":
        from streamer.loadgen.cli import main as load_main

        return load_main(settings, args)
    if args.command == "produce":
        return asyncio.run(produce_file(settings, args.file, args.kind, args.batch_events))
    return run_query(settings, args)


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    import faust
    import uvloop

    from streamer.pipeline.app import create_app, tune_gc
    from streamer.pipeline.heap import configure_malloc
    from streamer.pipeline.worker import ensure_topics

    # Before any thread exists: an arena limit applies to arenas created after it.
    applied = configure_malloc(settings.malloc_mmap_threshold_bytes, settings.malloc_arena_max)
    logging.basicConfig(level=loglevel.upper() if loglevel != "warn" else "WARNING")
    logging.getLogger(__name__).info("malloc settings: %s", ", ".join(applied) or "glibc's")
    try:
        partitions = asyncio.run(asyncio.wait_for(ensure_topics(settings), timeout=60))
    except Exception as exc:
        print(f"streamer: cannot prepare topics on Kafka at {settings.kafka.bootstrap}: {exc!r}",
              file=sys.stderr)
        return 1
    if partitions != settings.partitions:
        from dataclasses import replace

        settings = replace(settings, partitions=partitions)
    uvloop.install()
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # At --loglevel warn or error, Faust's terminal spinner would set the root logger to
    # DEBUG (to spin on every record): every debug call of aiokafka, one per Kafka
    # request, would then build a log record for nothing (2 % of the worker's time).
    worker.spinner = None
    tune_gc(settings.gc_gen0_threshold)
    worker.execute_from_commandline()
    return 0


async def produce_file(settings: Settings, path: str, kind: str, batch_events: int) -> int:
    from aiokafka.errors import KafkaConnectionError

    from streamer.producer import UsageProducer

    stream: TextIO = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    producer = UsageProducer(settings.kafka, uses_topic=settings.uses_topic,
                             tracks_topic=settings.tracks_topic, batch_events=batch_events)
    try:
        await producer.start()
    except KafkaConnectionError as exc:
        print(f"streamer: Kafka unreachable at {settings.kafka.bootstrap}: {exc}", file=sys.stderr)
        return 1
    sent = rejected = 0
    try:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
                is_track = kind == "track" or (
                    kind == "auto" and isinstance(event, dict) and "rights" in event)
                if is_track:
                    await producer.send_track(event)
                else:
                    await producer.send_use(event)
                sent += 1
            except orjson.JSONDecodeError as exc:
                rejected += 1
                print(f"{path}:{number}: not_json: {exc}", file=sys.stderr)
            except Rejected as exc:
                rejected += 1
                print(f"{path}:{number}: {exc.reason}", file=sys.stderr)
    finally:
        await producer.stop()
        if stream is not sys.stdin:
            stream.close()
    print(json.dumps({"sent": sent, "rejected": rejected, "records": producer.records_sent}))
    return 0 if rejected == 0 else 3


def run_query(settings: Settings, args: argparse.Namespace) -> int:
    base = args.url or f"http://{settings.web_host}:{settings.web_port}"
    paths = {"track": "/v1/tracks/{}/usage", "holder": "/v1/holders/{}/usage",
             "genre": "/v1/genres/{}/usage", "trending": "/v1/trending", "health": "/v1/health",
             "ai-share": "/v1/genres/{}/ai-share" if args.id else "/v1/ai-share"}
    if args.what in ("track", "holder", "genre") and not args.id:
        print(f"streamer query {args.what}: give the {args.what} id", file=sys.stderr)
        return 2
    path = paths[args.what].format(urllib.parse.quote(args.id or "", safe=""))
    params = {k: v for k, v in (("window", args.window), ("at", args.at), ("limit", args.limit),
                                ("genre", args.genre), ("from", args.from_), ("to", args.to),
                                ("top", args.top)) if v is not None}
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    request = urllib.request.Request(url)
    if settings.web_token:
        request.add_header("Authorization", f"Bearer {settings.web_token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: Any = json.load(response)
            status = 0
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        status = 1
    except urllib.error.URLError as exc:
        print(f"streamer: no worker answers at {base}: {exc.reason}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
