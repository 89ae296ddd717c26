"""``streamer produce`` and ``streamer load`` against the real broker, as a user runs them.

Rejected lines are each named and the run ends with exit 3; the progress bar shows the
total, the rate and the time left; Ctrl-C in the middle of a run ends quietly with 130
and no "Unclosed AIOKafkaProducer"; events that were sent are really in Kafka. An input
topic that does not exist: ``produce`` says so in one line (exit 11) and creates nothing,
``load`` creates it as the worker does; input topics of different partition counts: one
line, exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from streamer.exit_codes import ExitCode
from tests.conftest import MakeTopic, unique_name
from tests.support.interrupt import default_sigint


def env_for(bootstrap: str, topics: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(STREAMER_KAFKA_BOOTSTRAP=bootstrap, STREAMER_USES_TOPIC=topics["uses"],
               STREAMER_TRACKS_TOPIC=topics["tracks"], STREAMER_DLQ_TOPIC=topics["dlq"],
               STREAMER_PARTITIONS="4")
    return env


@pytest.fixture
async def topics(make_topic: MakeTopic) -> dict[str, str]:
    return {"uses": await make_topic("cli-uses", partitions=4),
            "tracks": await make_topic("cli-tracks", partitions=4),
            "dlq": await make_topic("cli-dlq", partitions=4)}


def use_line(number: int) -> str:
    return json.dumps({"event_id": f"cli-{number}", "track_id": f"T{number % 37}",
                       "use": "play", "occurred_at": int(time.time() * 1000) - 60_000,
                       "user_id": "u1", "country": "DE"})


def progress_lines(stderr: str) -> list[str]:
    return [part for part in re.split(r"[\r\n]", stderr) if "|" in part]


async def count_records(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.assignment() or set()
        while not partitions:
            await consumer.getmany(timeout_ms=200)
            partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        return sum(ends.values())
    finally:
        await consumer.stop()


async def test_produce_names_each_rejected_line_and_shows_progress(
        kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [use_line(n) for n in range(2_000)]
    lines[10] = "{not json"
    lines[20] = json.dumps({"event_id": "x", "track_id": "T1", "use": "sneeze"})
    events.write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "-m", "streamer", "produce", str(events),
                           "--progress"], capture_output=True, text=True, timeout=120,
                          env=env_for(kafka_bootstrap, topics), check=False)
    assert done.returncode == ExitCode.REJECTED, done.stderr
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr
    assert json.loads(done.stdout) == {"sent": 1_998, "rejected": 2,
                                       "records": json.loads(done.stdout)["records"]}
    assert f"{events}:11: not_json" in done.stderr
    assert f"{events}:21: " in done.stderr
    assert done.stderr.splitlines()[-1].startswith("streamer: 2 of 2,000 events rejected")
    size = events.stat().st_size
    final = progress_lines(done.stderr)[-1]
    # total (the file's size), the percentage, the rate; tqdm's [elapsed<left, rate]
    assert "100%" in final and f"/{size / 1000:.0f}k" in final.replace(".0k", "k"), final
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, *[\d.]+[kM]?B/s", final), final


async def test_load_progress_has_total_rate_and_eta_and_writes_truth(
        kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "load", "--rate", "400", "--duration", "5",
         "--speed", "2", "--catalog", "200", "--progress", "--truth", str(truth)],
        capture_output=True, text=True, timeout=180, env=env_for(kafka_bootstrap, topics),
        check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    bars = progress_lines(done.stderr)
    # mid-run: percentage, done of the total, [elapsed<time left, rate]
    mid_run = re.compile(r"\b[1-9]\d?%\|.*\| *[\d.]+k?/2\.00k "
                         r"\[\d\d:\d\d<\d\d:\d\d, *[\d.]+k?ev/s")
    assert any(mid_run.search(bar) for bar in bars), bars
    assert "100%" in bars[-1] and "ev/s" in bars[-1], bars[-1]
    assert truth.stat().st_size > 0
    assert summary["events"] >= 2_000


@pytest.mark.parametrize("command", ["load", "produce"])
async def test_ctrl_c_mid_run_is_quiet_and_closes_the_producer(
        kafka_bootstrap: str, topics: dict[str, str], command: str) -> None:
    args = (["load", "--rate", "200", "--duration", "120", "--catalog", "100"]
            if command == "load" else ["produce", "-"])
    process = subprocess.Popen([sys.executable, "-m", "streamer", *args],
                               env=env_for(kafka_bootstrap, topics), stdin=subprocess.PIPE,
                               preexec_fn=default_sigint,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdin is not None
    if command == "produce":
        process.stdin.write("\n".join(use_line(n) for n in range(50)) + "\n")
        process.stdin.flush()  # and the pipe stays open: produce waits for more
    # Interrupt mid-run: once events are in Kafka (the CLI is past start-up and sending),
    # not after a fixed sleep, which a loaded machine's slow imports outlast.
    deadline = time.monotonic() + 90
    while await count_records(kafka_bootstrap, topics["uses"]) == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no event reached Kafka in 90 s"
        await asyncio.sleep(0.5)
    await asyncio.sleep(1)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err and "Unclosed" not in err and "Error" not in err, err
    assert err.strip() == ""


@pytest.mark.parametrize("missing", ["uses", "tracks"])
async def test_produce_to_a_missing_topic_is_one_line_naming_it(
        kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, topics: dict[str, str],
        missing: str, tmp_path: Path) -> None:
    """Was: ~100 lines of aiokafka's "Topic ... not found in cluster metadata", then
    "Kafka unreachable" (exit 5) about a broker that had answered all along."""
    events = tmp_path / "events.jsonl"
    events.write_text(use_line(1) + "\n")
    absent = unique_name("absent")
    variable = {"uses": "STREAMER_USES_TOPIC", "tracks": "STREAMER_TRACKS_TOPIC"}[missing]
    done = subprocess.run([sys.executable, "-m", "streamer", "produce", str(events)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=env_for(kafka_bootstrap, {**topics, missing: absent}))
    assert done.returncode == ExitCode.NO_TOPIC, done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == "", done.stderr
    line = done.stderr.strip()
    assert line.startswith(f"streamer: Kafka at {kafka_bootstrap} has no topic "
                           f"'{absent}' ({variable}); start `streamer worker` once"), line
    assert absent not in await kafka_admin.list_topics()  # nothing was created
    assert await count_records(kafka_bootstrap, topics["uses"]) == 0  # nothing was sent
    if missing == "tracks":  # uses alone need no tracks topic
        done = subprocess.run(
            [sys.executable, "-m", "streamer", "produce", "--kind", "use", str(events)],
            capture_output=True, text=True, timeout=120, check=False,
            env=env_for(kafka_bootstrap, {**topics, missing: absent}))
        assert done.returncode == ExitCode.OK, done.stderr
        assert await count_records(kafka_bootstrap, topics["uses"]) == 1


async def test_load_creates_missing_input_topics_like_the_worker(
        kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, tmp_path: Path) -> None:
    absent = {"uses": unique_name("absent-uses"), "tracks": unique_name("absent-tracks"),
              "dlq": unique_name("absent-dlq")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "streamer", "load", "--rate", "200", "--duration", "1",
             "--speed", "0", "--catalog", "50", "--no-progress"],
            capture_output=True, text=True, timeout=180, check=False,
            env=env_for(kafka_bootstrap, absent))
        assert done.returncode == 0, done.stderr
        assert "not found in cluster metadata" not in done.stderr, done.stderr
        assert set(absent.values()) <= set(await kafka_admin.list_topics())
        assert await count_records(kafka_bootstrap, absent["uses"]) > 0
    finally:
        with contextlib.suppress(Exception):
            await kafka_admin.delete_topics(list(absent.values()))


async def test_load_on_topics_of_different_partition_counts_is_one_line(
        kafka_bootstrap: str, make_topic: MakeTopic) -> None:
    """Was exit 5 "cannot prepare the topics ... check the broker's log": the broker had
    answered; the topics named are what is wrong."""
    topics = {"uses": await make_topic("cli-uses", partitions=4),
              "tracks": await make_topic("cli-tracks", partitions=2),
              "dlq": await make_topic("cli-dlq", partitions=4)}
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "load", "--rate", "10", "--duration", "1",
         "--no-progress"], capture_output=True, text=True, timeout=120, check=False,
        env=env_for(kafka_bootstrap, topics))
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == "", done.stderr
    assert "must have the same number of partitions" in done.stderr
    assert "point STREAMER_USES_TOPIC and STREAMER_TRACKS_TOPIC at topics" in done.stderr
    assert await count_records(kafka_bootstrap, topics["uses"]) == 0
