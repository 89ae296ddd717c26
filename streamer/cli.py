"""``streamer`` command line: ``worker``, ``produce``, ``query``, ``load``, ``ledger``,
``report``.

Every failure a user can act on ends in one line, ``streamer: <what failed and what to
do>``, and an exit code from streamer/exit_codes.py (listed in ``--help``); Ctrl-C ends
quietly with 130. Anything else is a bug: one line too, and ``--traceback`` shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import replace
from datetime import date
from typing import IO, TYPE_CHECKING, Any, TypeVar

import orjson

from streamer.build_info import version_line
from streamer.config import ConfigError, Settings, load_settings
from streamer.events.validation import Rejected
from streamer.exit_codes import CommandFailed, ExitCode, exit_code_table

if TYPE_CHECKING:
    from streamer.ledger.audit import RedisDay
    from streamer.ledger.closing import CloseRun, DaySource

T = TypeVar("T")

_EPILOG = f"""\
exit codes:
{exit_code_table()}

Settings come from STREAMER_* environment variables (docs/CONFIGURATION.md). A failure ends
in one line on stderr, "streamer: <what failed and what to do>".
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter,
                     argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the epilog's table and shows every option's default."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer", epilog=_EPILOG, formatter_class=_HelpFormatter,
        description="Exactly-once usage counters for music licensing: run a worker, send "
                    "events, ask the query API, generate load.")
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, epilog=_EPILOG,
                              formatter_class=_HelpFormatter)

    worker = command("worker", "run a worker (consume, count, serve the query API)")
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warn", "error"],
                        help="log level; Faust, mode and aiokafka log at WARNING unless debug")

    produce = command("produce", "send events from a JSON-lines file")
    produce.add_argument("file", help="path of a JSON-lines file, or - for standard input")
    produce.add_argument("--kind", choices=["auto", "use", "track"], default="auto",
                         help="event type of every line (auto: a line with 'rights' is a track)")
    produce.add_argument("--batch-events", type=_positive_int, default=500,
                         help="SoundUsed per batch record")
    produce.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="progress bar on stderr (default: when stderr is a terminal)")

    query = command("query", "ask a worker's query API")
    query.add_argument("what", choices=["track", "holder", "genre", "trending", "ai-share",
                                        "health", "live", "ready"],
                       help="what to ask")
    query.add_argument("id", nargs="?", help="track, holder or genre id")
    query.add_argument("--window", help="window name (default: the API's, see docs/openapi.yaml)")
    query.add_argument("--at", type=int, help="epoch ms inside the window (default now)")
    query.add_argument("--limit", type=int, help="trending: how many tracks (API default 20)")
    query.add_argument("--genre", help="trending: only tracks of this genre")
    query.add_argument("--from", dest="first", metavar="YYYY-MM-DD",
                       help="track, holder, genre: first UTC day of a range (with --to; "
                            "not with --window or --at); ai-share: first day, time "
                            "(YYYY-MM-DDTHH:MM) or epoch ms")
    query.add_argument("--to", dest="last", metavar="YYYY-MM-DD",
                       help="last UTC day of the range, inclusive (at most 400 days); "
                            "ai-share: as --from, default now")
    query.add_argument("--top", type=int, help="ai-share: trending tracks per window (default 20)")
    query.add_argument("--by", choices=["territory"],
                       help="track, holder, genre: the counts per country as well")
    query.add_argument("--format", dest="output", choices=["json", "csv"], default="json",
                       help="csv (track, holder, genre): one row per count; with --by "
                            "territory one per country, else the totals with an empty "
                            "territory")
    query.add_argument("--url", default=None,
                       help="worker base URL (default http://STREAMER_WEB_HOST:STREAMER_WEB_PORT)")

    load = command("load", "send generated traffic (load generator, see streamer/loadgen)")
    from streamer.loadgen.cli import add_arguments as add_load_arguments

    add_load_arguments(load)

    from streamer.ledger.cli import register as register_ledger

    # close reads the days the partitions have sealed (meta cl) from Redis' a / av
    # hashes, as the worker does (pipeline/day_closing.py).
    register_ledger(sub, source_factory=_ledger_day_source, redis_days=_ledger_redis_days,
                    count_settings=_ledger_count_settings, after_close=_ledger_after_close)

    from streamer.reports.cli import register as register_reports

    register_reports(sub)
    return parser


def _ledger_redis_days(day: date) -> Mapping[int, RedisDay]:
    """``ledger verify``'s Redis side: the day's plain 1d counters per partition."""
    from redis.exceptions import RedisError

    from streamer.ledger.redis_day import redis_days_from_settings

    try:
        return redis_days_from_settings(day)
    except (RedisError, OSError, TimeoutError) as exc:
        raise CommandFailed(ExitCode.UNREACHABLE, f"ledger verify: Redis did not answer "
                            f"({_describe(exc)}); check STREAMER_REDIS_URL") from None


def _ledger_count_settings() -> Mapping[str, object]:
    from streamer.pipeline.day_closing import count_settings

    return count_settings(load_settings())


def _ledger_day_source(args: argparse.Namespace) -> DaySource:
    """``ledger close``'s days: every partition's sealed, not yet closed days, read from
    Redis up front (the close itself is synchronous)."""
    from streamer.ledger.cli import location_of
    from streamer.ledger.writer import LedgerWriter
    from streamer.pipeline.day_closing import read_sealed_days
    from streamer.state.keys import KeyLayout
    from streamer.state.store import RedisStore, connect

    settings = load_settings()
    writer = LedgerWriter(location_of(settings), {})
    partitions = args.partitions or settings.partitions

    async def read() -> DaySource:
        client = connect(settings.redis_url)
        try:
            store = RedisStore(client, KeyLayout(settings.key_prefix))
            return await read_sealed_days(store, writer, partitions, args.day)
        finally:
            await client.aclose()

    return _with_redis("ledger close", lambda: asyncio.run(read()))


def _ledger_after_close(partition: int, run: CloseRun) -> None:
    """The worker's grace TTL on the Redis data of the days just closed (or found closed)."""
    from streamer.pipeline.day_closing import expire_days
    from streamer.state.keys import KeyLayout
    from streamer.state.store import connect

    days = [result.day for result in run.results]
    if not days:
        return
    settings = load_settings()

    async def expire() -> None:
        client = connect(settings.redis_url)
        try:
            await expire_days(client, KeyLayout(settings.key_prefix), partition, days,
                              settings.territory_retention_ms, settings.territory)
        finally:
            await client.aclose()

    _with_redis("ledger close", lambda: asyncio.run(expire()))


def _with_redis(what: str, call: Callable[[], T]) -> T:
    from redis.exceptions import RedisError

    try:
        return call()
    except (RedisError, OSError, TimeoutError) as exc:
        raise CommandFailed(ExitCode.UNREACHABLE, f"{what}: Redis did not answer "
                            f"({_describe(exc)}); check STREAMER_REDIS_URL") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except CommandFailed as exc:
        report(exc)
        return exc.code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # stdout went away (``streamer query ... | head``): nothing left to say.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return ExitCode.OK
    except Exception as exc:
        if args.traceback:
            raise
        print(f"streamer: unexpected error: {type(exc).__name__}: {exc} "
              "(a bug: rerun with --traceback and report it)", file=sys.stderr)
        return ExitCode.INTERNAL


def report(failure: CommandFailed) -> None:
    print(f"streamer: {failure.message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise CommandFailed(ExitCode.USAGE, f"configuration error: {exc}") from None
    if args.command == "worker":
        return run_worker(settings, args.loglevel)
    if args.command == "load":
        from streamer.loadgen.cli import run_load

        return asyncio.run(run_load(settings, args))
    if args.command == "produce":
        return asyncio.run(produce_file(settings, args.file, args.kind, args.batch_events,
                                        progress=args.progress))
    if args.command == "ledger":
        code: int = args.ledger_run(args)
        return code
    if args.command == "report":
        report_code: int = args.report_run(args)
        return report_code
    return run_query(settings, args)


# -- worker ------------------------------------------------------------------------


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    import uvloop

    from streamer.logs import StreamerWorker, configure_logging
    from streamer.pipeline.app import create_app, tune_gc
    from streamer.pipeline.heap import configure_malloc
    from streamer.pipeline.topics import ensure_topics

    # Before any thread exists: an arena limit applies to arenas created after it.
    applied = configure_malloc(settings.malloc_mmap_threshold_bytes, settings.malloc_arena_max)
    configure_logging(loglevel, settings.log_format.lower())
    partitions = asyncio.run(prepare_topics(settings, ensure_topics))
    asyncio.run(_check_state_layout(settings))
    logging.getLogger(__name__).info("malloc settings: %s", ", ".join(applied) or "glibc's")
    if partitions != settings.partitions:
        settings = replace(settings, partitions=partitions)
    uvloop.install()
    try:
        app = create_app(settings)
    except ConfigError as exc:  # e.g. STREAMER_WEB_TOKENS_FILE does not validate
        raise CommandFailed(ExitCode.USAGE, f"configuration error: {exc}") from None
    worker = StreamerWorker(app, loglevel=loglevel, quiet=True)
    worker.log_format = settings.log_format.lower()
    # At --loglevel warn or error, Faust's terminal spinner would set the root logger to
    # DEBUG (to spin on every record): every debug call of aiokafka, one per Kafka
    # request, would then build a log record for nothing (measured: docs/BENCHMARKS.md).
    worker.spinner = None
    tune_gc(settings.gc_gen0_threshold)
    worker.execute_from_commandline()
    return ExitCode.OK


async def prepare_topics(settings: Settings, ensure_topics: Callable[[Settings], Any]) -> int:
    """Create missing input and dead-letter topics (worker, load); their partition count."""
    from streamer.pipeline.topics import TopicsNotCoPartitioned

    await kafka_reachable(settings)
    try:
        partitions: int = await asyncio.wait_for(ensure_topics(settings), timeout=60)
    except TopicsNotCoPartitioned as exc:  # Kafka answered: the topics named do not fit
        raise CommandFailed(ExitCode.USAGE, f"{exc}; point STREAMER_USES_TOPIC and "
                            "STREAMER_TRACKS_TOPIC at topics with equal partition counts"
                            ) from None
    except Exception as exc:
        raise CommandFailed(ExitCode.UNREACHABLE, f"cannot prepare the topics on Kafka at "
                            f"{settings.kafka.bootstrap}: {_describe(exc)}; check the broker's "
                            "log and the STREAMER_KAFKA_* settings") from None
    return partitions


async def _check_state_layout(settings: Settings) -> None:
    """Refuse to start on Redis state of a layout this release does not know.

    A Redis that does not answer (down, wrong password) does not stop the start: the
    worker rides out Redis outages (it retries and answers 503 on /v1/ready and
    /v1/health meanwhile), so it starts, and says the layout went unchecked.
    """
    from redis.exceptions import RedisError

    from streamer.state.connection import describe as describe_redis
    from streamer.state.schema_version import UnknownSchemaVersion, check_schema_version
    from streamer.state.store import connect

    where = describe_redis(settings.redis_url)  # never the password
    client = connect(settings.redis_url)
    try:
        await asyncio.wait_for(check_schema_version(client, settings.key_prefix, where),
                               settings.connect_timeout_s)
    except UnknownSchemaVersion as exc:
        raise CommandFailed(ExitCode.STATE, str(exc)) from None
    except (RedisError, OSError, TimeoutError) as exc:
        logging.getLogger(__name__).warning(
            "Redis at %s did not answer within %g s (%s): starting without checking its "
            "state layout; the worker retries Redis and answers 503 on /v1/ready until it "
            "does", where, settings.connect_timeout_s, _describe(exc))
    finally:
        await client.aclose()


async def kafka_reachable(settings: Settings) -> None:
    """Fail with one line unless a broker answers within STREAMER_CONNECT_TIMEOUT_S."""
    from streamer.loadgen.sender import KafkaUnreachable, check_kafka

    try:
        await check_kafka(settings.kafka.aiokafka_kwargs(), settings.connect_timeout_s)
    except KafkaUnreachable as exc:
        if exc.refused:  # the broker answered: the settings are wrong, not the network
            raise CommandFailed(ExitCode.USAGE, f"Kafka at {settings.kafka.bootstrap} refused "
                                f"the connection: {exc.detail}; check STREAMER_KAFKA_SECURITY_"
                                "PROTOCOL and the STREAMER_KAFKA_SASL_* / _SSL_* settings"
                                ) from None
        raise CommandFailed(ExitCode.UNREACHABLE, kafka_unreachable_text(settings)) from None


def kafka_unreachable_text(settings: Settings) -> str:
    return (f"Kafka unreachable at {settings.kafka.bootstrap}: no broker answered within "
            f"{settings.connect_timeout_s:g} s; is it running (make up)? "
            "Set STREAMER_KAFKA_BOOTSTRAP to point elsewhere, "
            "STREAMER_CONNECT_TIMEOUT_S to wait longer")


def missing_topics_text(settings: Settings, topics: list[str]) -> str:
    """What to do when Kafka lacks an input topic: create it, or name the right one."""
    variables = {settings.uses_topic: "STREAMER_USES_TOPIC",
                 settings.tracks_topic: "STREAMER_TRACKS_TOPIC"}
    names = ", ".join(f"{topic!r} ({variables.get(topic, 'topic')})" for topic in topics)
    noun = "topic" if len(topics) == 1 else "topics"
    return (f"Kafka at {settings.kafka.bootstrap} has no {noun} {names}; start `streamer "
            "worker` once (it creates the input and dead-letter topics with "
            "STREAMER_PARTITIONS partitions), or point the variable at an existing topic")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- produce -----------------------------------------------------------------------


@contextlib.contextmanager
def _open_input(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise CommandFailed(ExitCode.FILE, f"no file {path!r}; give the path of a "
                            "JSON-lines file, or - for standard input") from None
    except IsADirectoryError:
        raise CommandFailed(ExitCode.FILE, f"{path!r} is a directory; give the "
                            "path of a JSON-lines file") from None
    except OSError as exc:
        raise CommandFailed(ExitCode.FILE, f"cannot read {path!r}: "
                            f"{exc.strerror or exc}") from None
    with handle:
        yield handle


async def _input_lines(handle: IO[bytes]) -> AsyncIterator[bytes]:
    """Lines of the input without blocking the event loop on a pipe or terminal.

    ``tail -f events.jsonl | streamer produce -`` keeps its pipe open: a blocking read
    there would also stop the producer's linger task, so nothing would be sent until the
    pipe closed. A regular file never blocks and is read directly (faster).
    """
    try:
        regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
    except (OSError, ValueError):
        regular = True
    if regular:
        for line in handle:
            yield line
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_LINE_BYTES)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), handle)
    except (OSError, ValueError):  # not pollable (e.g. /dev/null): it does not block
        for line in handle:
            yield line
        return
    try:
        while line := await reader.readline():
            yield line
    finally:
        transport.close()


_MAX_LINE_BYTES = 64 << 20  # far above any event or batch record the producer accepts


def _input_size(handle: IO[bytes]) -> int | None:
    try:
        size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError):
        return None
    return size or None


async def produce_file(settings: Settings, path: str, kind: str, batch_events: int,
                       progress: bool | None = None) -> int:
    from aiokafka.errors import KafkaError

    from streamer.producer import MissingTopics, UsageProducer
    from streamer.progress import progress_bar

    sent = rejected = 0
    with _open_input(path) as stream:
        await kafka_reachable(settings)
        producer = UsageProducer(settings.kafka, uses_topic=settings.uses_topic,
                                 tracks_topic=settings.tracks_topic, batch_events=batch_events,
                                 require_tracks_topic=kind != "use")
        try:
            await asyncio.wait_for(producer.start(), settings.connect_timeout_s)
        except (KafkaError, TimeoutError, OSError):
            await producer.stop()
            raise CommandFailed(ExitCode.UNREACHABLE, kafka_unreachable_text(settings)) from None
        except MissingTopics as exc:
            await producer.stop()
            raise CommandFailed(ExitCode.NO_TOPIC, missing_topics_text(settings, exc.topics)
                                ) from None
        bar = progress_bar(total=_input_size(stream), unit="B", desc="reading",
                           enabled=progress)
        try:
            number = 0
            async for line in _input_lines(stream):
                number += 1
                bar.update(len(line))
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
                    bar.write(f"{path}:{number}: not_json: {exc}", file=sys.stderr)
                except Rejected as exc:
                    rejected += 1
                    bar.write(f"{path}:{number}: {exc.reason}", file=sys.stderr)
                if number % 1000 == 0:
                    bar.set_postfix(events=sent, rejected=rejected, refresh=False)
            await producer.flush()
        except KafkaError as exc:
            raise CommandFailed(ExitCode.SEND_FAILED, f"Kafka refused records after "
                                f"{sent:,} events: {_describe(exc)}; events from line "
                                f"{sent + rejected + 1} on may not have been sent") from None
        finally:
            bar.close()
            with contextlib.suppress(Exception):
                await producer.stop()
    print(orjson.dumps({"sent": sent, "rejected": rejected,
                        "records": producer.records_sent}).decode())
    if rejected:
        raise CommandFailed(ExitCode.REJECTED, f"{rejected:,} of {sent + rejected:,} "
                            "events rejected (each named above with its line); fix them and "
                            "send those lines again")
    return ExitCode.OK


# -- query -------------------------------------------------------------------------


def run_query(settings: Settings, args: argparse.Namespace) -> int:
    import msgspec

    from streamer.client import (
        InvalidURL,
        QueryClient,
        WorkerHTTPError,
        WorkerUnreachable,
    )

    base = args.url or f"http://{settings.web_host}:{settings.web_port}"
    what = args.what
    if what in ("track", "holder", "genre") and not args.id:
        raise CommandFailed(ExitCode.USAGE, f"query {what}: give the {what} id, "
                            f"e.g. streamer query {what} ID")
    usage = what in ("track", "holder", "genre")
    ranged = args.first is not None or args.last is not None
    series = what == "ai-share"  # --from/--to bound its series (--to defaults to now)
    if not usage and ((ranged and not series) or args.by or args.output != "json"):
        raise CommandFailed(ExitCode.USAGE, f"query {what}: --from, --to, --by and --format "
                            "csv are for track, holder and genre (--from, --to: ai-share too)")
    if ranged and usage and (args.first is None or args.last is None):
        raise CommandFailed(ExitCode.USAGE, f"query {what}: a range needs both --from and "
                            "--to (UTC days YYYY-MM-DD)")
    try:
        client = QueryClient(base, token=settings.web_token, timeout_s=settings.query_timeout_s)
    except InvalidURL as exc:
        raise CommandFailed(ExitCode.USAGE, str(exc)) from None
    window = {"window": args.window, "at": args.at, "by": args.by}
    calls: dict[str, Callable[[], Any]] = {
        "track": lambda: (client.track_range(args.id, args.first, args.last, by=args.by)
                          if ranged else client.track_usage(args.id, **window)),
        "holder": lambda: (client.holder_range(args.id, args.first, args.last, by=args.by)
                           if ranged else client.holder_usage(args.id, **window)),
        "genre": lambda: (client.genre_range(args.id, args.first, args.last, by=args.by)
                          if ranged else client.genre_usage(args.id, **window)),
        "trending": lambda: client.trending(window=args.window, at=args.at, limit=args.limit,
                                            genre=args.genre),
        "ai-share": lambda: client.ai_share(args.id, window=args.window, from_=args.first,
                                            to=args.last, top=args.top),
        "health": client.health, "live": client.live, "ready": client.ready,
    }
    try:
        answer = calls[what]()
    except WorkerUnreachable as exc:
        raise CommandFailed(ExitCode.UNREACHABLE, str(exc)) from None
    except WorkerHTTPError as exc:
        hint = {400: "; check the arguments", 401: "; set STREAMER_WEB_TOKEN to the worker's "
                "token", 404: "; is this URL a streamer worker of this version?"}
        raise CommandFailed(ExitCode.WORKER_ERROR,
                            f"{exc}{hint.get(exc.status, '')}") from None
    if args.output == "csv":
        write_usage_csv(what, msgspec.to_builtins(answer), sys.stdout)
        return ExitCode.OK
    print(msgspec.json.format(msgspec.json.encode(answer), indent=2).decode())
    status = getattr(answer, "status", "ok")
    if status != "ok":
        reason = getattr(answer, "reason", None) or "see the answer above"
        raise CommandFailed(ExitCode.WORKER_ERROR, f"query {what}: the worker at {base} "
                            f"answered HTTP 503, status {status!r}: {reason}")
    return ExitCode.OK


_CSV_DIMENSIONS = {"track": ("use",), "holder": ("right", "use"), "genre": ("ai_origin", "use")}


def write_usage_csv(what: str, body: dict[str, Any], out: IO[str]) -> None:
    """A usage answer as CSV: one row per count; per country with ``territories``
    (their sum is the total), else the totals with an empty ``territory``."""
    key_name = {"track": "track_id", "holder": "holder_id", "genre": "genre"}[what]
    period = (["from", "to", "closed_days"] if "from" in body else ["window"])
    values = ["uses", "weighted_micro"] if what == "holder" else ["uses"]
    columns = [key_name, *period, "start_ms", "end_ms", "territory",
               *_CSV_DIMENSIONS[what], *values]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    head = [body[key_name], *(body[name] for name in period), body["start_ms"], body["end_ms"]]
    counts_name = {"track": "uses", "holder": "rights", "genre": "uses_by_origin"}[what]
    scopes = (sorted(body["territories"].items()) if body.get("territories") is not None
              else [("", body[counts_name])])
    for territory, counts in scopes:
        for dims, row_values in _count_rows(what, counts):
            writer.writerow([*head, territory, *dims, *row_values])


def _count_rows(what: str, counts: dict[str, Any]) -> Iterator[tuple[list[str], list[int]]]:
    if what == "track":
        for use, uses in counts.items():
            yield [use], [uses]
    elif what == "holder":
        for right, measures in counts.items():
            for use, uses in measures["uses"].items():
                yield [right, use], [uses, measures["weighted_micro"][use]]
    else:
        for origin, by_use in counts.items():
            for use, uses in by_use.items():
                yield [origin, use], [uses]


if __name__ == "__main__":
    sys.exit(main())
