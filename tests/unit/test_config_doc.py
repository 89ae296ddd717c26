"""docs/CONFIGURATION.md is generated from the declarations and must not go stale;
``python -m streamer.config`` writes it and checks an environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streamer.config import env_names
from streamer.config.doc import COMMAND, render

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "CONFIGURATION.md"


def run_config(*args: str, env: dict[str, str] | None = None,
               cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    return subprocess.run([sys.executable, "-m", "streamer.config", *args], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=60, check=False)


def test_configuration_doc_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        f"docs/CONFIGURATION.md is stale: run `{COMMAND}`")


def test_doc_lists_every_setting_once() -> None:
    text = render()
    for name in env_names():
        assert text.count(f"| `{name}` |") == 1, name
    assert "$TMPDIR/streamer" in text  # not this machine's temporary folder
    assert "hunter" not in text


def test_doc_command_prints_and_writes_the_doc(tmp_path: Path) -> None:
    printed = run_config("doc")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == render()
    target = tmp_path / "CONFIGURATION.md"
    written = run_config("doc", "--write", str(target))
    assert written.returncode == 0, written.stderr
    assert target.read_text(encoding="utf-8") == render()


def test_check_command_reports_problems_and_typos() -> None:
    bad = run_config("check", env={"STREAMER_WEB_PORT": "99999",
                                   "STREAMER_CATALOG_CACHE_MB": "-1",
                                   "STREAMER_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"})
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()
    assert lines[0] == ("streamer: configuration warning: STREAMER_KAFKA_BOOTSTRAP_SERVERS is "
                        "not a streamer setting and is ignored; did you mean "
                        "STREAMER_KAFKA_BOOTSTRAP?")
    assert lines[1] == ("streamer: configuration error: STREAMER_CATALOG_CACHE_MB must be at "
                        "least 1, got '-1'; STREAMER_WEB_PORT must be at most 65535, got '99999'")
    good = run_config("check", env={"STREAMER_WEB_PORT": "8080"})
    assert (good.returncode, good.stdout, good.stderr) == (0, "streamer: configuration ok\n", "")
