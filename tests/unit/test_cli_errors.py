"""``streamer`` as a new user meets it: each failure ends in one line and a documented code.

Every case runs the real command in a subprocess (``python -m streamer``) and checks
the exit code, that stderr is exactly one line starting ``streamer: `` with no
traceback, and what the line says. Worker answers come from a small HTTP server in this
process that answers like a broken proxy, a slow worker or a 404; nothing here needs
Kafka or Redis (tests/integration/test_cli_kafka.py has the cases that do).
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.exit_codes import EXIT_CODE_MEANINGS, ExitCode
from tests.support.interrupt import default_sigint

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_KAFKA = "127.0.0.1:1"


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env["STREAMER_KAFKA_BOOTSTRAP"] = UNREACHABLE_KAFKA  # no test here may reach Kafka
    env.update(settings)
    return env


def streamer(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamer", *args], capture_output=True,
                          text=True, timeout=timeout, env=env or clean_env(), cwd=cwd,
                          stdin=subprocess.DEVNULL, check=False)


def one_line(done: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    """The single ``streamer: ...`` line of a failed run, after checking the code."""
    assert "Traceback" not in done.stderr, done.stderr
    assert "Unclosed" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamer: "), done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    return lines[0]


# ---------------------------------------------------------------- a fake worker


class _Answers(http.server.BaseHTTPRequestHandler):
    mode = "ok"

    def do_GET(self) -> None:
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "hang":
            self.server.asked.set()  # type: ignore[attr-defined]
            time.sleep(30)
            return
        status, body, kind = {
            "html502": (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                        "text/html"),
            "json404": (404, b'{"error": "no such route"}', "application/json"),
            "plain404": (404, b"404: Not Found", "text/plain"),
            "json401": (401, b'{"error": "missing or wrong bearer token"}',
                        "application/json"),
            "json400": (400, b'{"error": "unknown window \'2m\'; use one of [\'1m\']"}',
                        "application/json"),
            "html200": (200, b"<html>hello</html>", "text/html"),
            "health503": (503, b'{"status": "unavailable", "worker_id": "w1", '
                               b'"rebalancing": true, "delivery_stalled": false, '
                               b'"partitions": {}}', "application/json"),
        }[mode]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def fake_worker() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.daemon_threads = True
    server.mode = "ok"  # type: ignore[attr-defined]
    server.asked = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


# ---------------------------------------------------------------- the failures


def test_produce_a_missing_file(tmp_path: Path) -> None:
    line = one_line(streamer("produce", "nope.jsonl", cwd=tmp_path), ExitCode.FILE)
    assert "'nope.jsonl'" in line and "JSON-lines file" in line


def test_produce_a_folder(tmp_path: Path) -> None:
    line = one_line(streamer("produce", str(tmp_path)), ExitCode.FILE)
    assert "is a directory" in line


def test_produce_checks_the_file_before_kafka(tmp_path: Path) -> None:
    """The file is the user's first mistake to fix; Kafka is unreachable here too."""
    line = one_line(streamer("produce", str(tmp_path / "x.jsonl")), ExitCode.FILE)
    assert "Kafka" not in line


def test_produce_without_kafka(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1"}\n')
    line = one_line(streamer("produce", str(events)), ExitCode.UNREACHABLE)
    assert f"Kafka unreachable at {UNREACHABLE_KAFKA}" in line
    assert "STREAMER_KAFKA_BOOTSTRAP" in line


def test_worker_without_kafka(tmp_path: Path) -> None:
    line = one_line(streamer("worker", env=clean_env(STREAMER_CONNECT_TIMEOUT_S="2",
                                                     STREAMER_DATA_DIR=str(tmp_path))),
                    ExitCode.UNREACHABLE)
    assert f"Kafka unreachable at {UNREACHABLE_KAFKA}" in line


def test_kafka_that_never_answers_gives_up_after_the_connect_timeout() -> None:
    """A broker address that accepts connections and says nothing (a hung broker)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        done = streamer("produce", "-", env=clean_env(STREAMER_KAFKA_BOOTSTRAP=address,
                                                      STREAMER_CONNECT_TIMEOUT_S="1.5"))
        took = time.monotonic() - started
    line = one_line(done, ExitCode.UNREACHABLE)
    assert "within 1.5 s" in line and "STREAMER_CONNECT_TIMEOUT_S" in line
    assert took < 15


def test_load_checks_the_truth_path_before_any_work(tmp_path: Path) -> None:
    """Before: the path was checked after the whole run. Kafka is unreachable here, so
    FILE (not UNREACHABLE) proves the check comes first."""
    for bad, says in ((tmp_path / "missing" / "x", "folder that does not exist"),
                      (tmp_path, "is a directory")):
        line = one_line(streamer("load", "--truth", str(bad), "--duration", "1"),
                        ExitCode.FILE)
        assert "--truth" in line and says in line


def test_load_refuses_bad_options_with_the_option_named() -> None:
    line = one_line(streamer("load", "--rate", "nan"), ExitCode.USAGE)
    assert "--rate" in line


def test_query_with_an_invalid_url() -> None:
    for url in ("notaurl", "ftp://host/x", "http://127.0.0.1:99999"):
        line = one_line(streamer("query", "health", "--url", url), ExitCode.USAGE)
        assert repr(url) in line and "http://127.0.0.1:6066" in line


def test_query_without_a_worker() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    line = one_line(streamer("query", "health", "--url", f"http://127.0.0.1:{port}"),
                    ExitCode.UNREACHABLE)
    assert f"no worker answers at http://127.0.0.1:{port}" in line


def test_query_a_worker_that_never_answers(fake_worker: http.server.ThreadingHTTPServer
                                           ) -> None:
    fake_worker.mode = "hang"  # type: ignore[attr-defined]
    started = time.monotonic()
    done = streamer("query", "trending", "--url", url_of(fake_worker),
                    env=clean_env(STREAMER_QUERY_TIMEOUT_S="1"))
    line = one_line(done, ExitCode.UNREACHABLE)
    assert "within 1 s" in line and "STREAMER_QUERY_TIMEOUT_S" in line
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(("mode", "status", "says"), [
    ("html502", 502, "non-JSON answer"),
    ("json404", 404, "no such route"),
    ("plain404", 404, "non-JSON answer"),
    ("json401", 401, "STREAMER_WEB_TOKEN"),
    ("json400", 400, "unknown window"),
])
def test_query_an_error_answer_names_the_http_status(
        fake_worker: http.server.ThreadingHTTPServer, mode: str, status: int, says: str
) -> None:
    fake_worker.mode = mode  # type: ignore[attr-defined]
    done = streamer("query", "track", "T1", "--url", url_of(fake_worker))
    line = one_line(done, ExitCode.WORKER_ERROR)
    assert f"HTTP {status}" in line and says in line
    assert done.stdout == ""  # no "{}" pretending to be an answer


def test_query_a_200_that_is_not_the_api(fake_worker: http.server.ThreadingHTTPServer) -> None:
    fake_worker.mode = "html200"  # type: ignore[attr-defined]
    line = one_line(streamer("query", "trending", "--url", url_of(fake_worker)),
                    ExitCode.WORKER_ERROR)
    assert "HTTP 200" in line and "non-JSON answer" in line


def test_query_health_of_an_unavailable_worker_prints_it_and_fails(
        fake_worker: http.server.ThreadingHTTPServer) -> None:
    fake_worker.mode = "health503"  # type: ignore[attr-defined]
    done = streamer("query", "health", "--url", url_of(fake_worker))
    line = one_line(done, ExitCode.WORKER_ERROR)
    assert "HTTP 503" in line and "unavailable" in line
    assert '"rebalancing": true' in done.stdout


def test_query_without_the_id() -> None:
    line = one_line(streamer("query", "track"), ExitCode.USAGE)
    assert "give the track id" in line


def test_bad_setting() -> None:
    line = one_line(streamer("query", "health", env=clean_env(STREAMER_PARTITIONS="many")),
                    ExitCode.USAGE)
    assert "STREAMER_PARTITIONS" in line


def test_ctrl_c_is_quiet_with_130(fake_worker: http.server.ThreadingHTTPServer) -> None:
    """Before: a 40-line KeyboardInterrupt traceback."""
    fake_worker.mode = "hang"  # type: ignore[attr-defined]
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", "query", "health", "--url", url_of(fake_worker)],
        env=clean_env(STREAMER_QUERY_TIMEOUT_S="60"), preexec_fn=default_sigint,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Interrupt once the request is out (imports done, waiting for the answer), not after
    # a fixed sleep that a loaded machine's imports outlast.
    assert fake_worker.asked.wait(60), "the CLI never sent its request"  # type: ignore[attr-defined]
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == ExitCode.INTERRUPTED
    assert int(ExitCode.INTERRUPTED) == 130
    assert err == "" and out == ""


def test_an_unexpected_error_is_one_line_unless_traceback_is_asked(tmp_path: Path) -> None:
    """A bug (forced here through sitecustomize) is one line pointing at --traceback;
    with --traceback, the traceback."""
    (tmp_path / "sitecustomize.py").write_text(
        "import streamer.cli\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('boom')\n"
        "streamer.cli.run_query = boom\n")
    env = clean_env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    line = one_line(streamer("query", "health", env=env), ExitCode.INTERNAL)
    assert "RuntimeError: boom" in line and "--traceback" in line
    done = streamer("--traceback", "query", "health", env=env)
    assert done.returncode == 1 and "Traceback" in done.stderr


# ---------------------------------------------------------------- the friendly parts


def test_version_and_python_dash_m() -> None:
    import streamer as package

    for command in ([sys.executable, "-m", "streamer", "--version"],
                    [str(Path(sys.executable).parent / "streamer"), "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              env=clean_env(), check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"streamer {package.__version__} (commit ")
        assert "faust-streaming" in done.stdout and "aiokafka" in done.stdout


def test_help_shows_defaults_choices_and_the_exit_codes() -> None:
    done = streamer("--help")
    assert done.returncode == 0
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert re.search(rf"^\s+{int(code)}\s+{re.escape(meaning)}$", done.stdout, re.M), code
    produce = streamer("produce", "--help").stdout
    assert "{auto,use,track}" in produce and "(default: auto)" in produce
    assert "(default: 500)" in produce
    worker = streamer("worker", "--help").stdout
    assert "{debug,info,warn,error}" in worker and "(default: info)" in worker


def test_operations_doc_lists_the_same_exit_codes() -> None:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    section = text.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|", section, re.M))
    assert {int(k): v for k, v in rows.items()} == {
        int(code): meaning for code, meaning in EXIT_CODE_MEANINGS.items()}
