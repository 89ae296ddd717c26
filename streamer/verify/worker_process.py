"""A ``streamer worker`` run as a subprocess, for tests that kill and restart it.

    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        await worker.wait_healthy(60)
        ...
        worker.kill()            # SIGKILL, like a crash
        worker.start()           # same settings, same log file (appended)
        await worker.wait_healthy(60)

The context manager (sync or async) starts the worker if it is not running and always
SIGKILLs it at the end; when the block fails, the tail of the worker's log is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp


class WorkerFailed(RuntimeError):
    """The worker exited or never became healthy; the message carries its log's tail."""


class WorkerProcess:
    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path | str,
        *,
        loglevel: str = "info",
        inherit_env: bool = True,
        command: Sequence[str] | None = None,
    ) -> None:
        """``env`` is added to this process's environment (unless ``inherit_env=False``)."""
        self.env = {**(os.environ if inherit_env else {}), **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = Path(log_path)
        self.command = list(command) if command is not None else [
            sys.executable, "-m", "streamer.cli", "worker", "--loglevel", loglevel]
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    # -- process control --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = self.env.get("STREAMER_WEB_HOST") or "127.0.0.1"
        port = self.env.get("STREAMER_WEB_PORT") or "6066"
        return f"http://{host}:{port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def start(self) -> WorkerProcess:
        """Start the worker (again); an instance runs at most one process at a time."""
        if self.alive:
            raise RuntimeError(f"worker already running (pid {self.pid})")
        self._close_log()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _close_log
        self.starts += 1
        stamp = time.strftime("%H:%M:%S")
        self._log.write(f"\n===== start #{self.starts} at {stamp}: "
                        f"{' '.join(self.command)}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def restart(self) -> WorkerProcess:
        """SIGKILL the worker if it runs, then start it again."""
        self.kill()
        return self.start()

    def kill(self) -> None:
        """SIGKILL (a crash: no flush, no goodbye to the group) and reap the process."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        self._note(f"killed with SIGKILL, exit code {process.returncode}")
        self._close_log()

    def terminate(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (graceful stop: final flush, leave the group) and wait; SIGKILL after
        ``timeout``. Blocks; in async code prefer ``await aterminate()``."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._note(f"did not stop within {timeout}s of SIGTERM; SIGKILL")
                self.kill()
        self._note(f"terminated, exit code {process.returncode}")
        self._close_log()
        return process.returncode

    async def aterminate(self, timeout: float = 40.0) -> int | None:
        """``terminate()`` without blocking the event loop."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        return self.terminate(timeout=1.0)

    # -- health and HTTP --------------------------------------------------------------

    async def get(self, path: str, params: Mapping[str, Any] | None = None,
                  timeout: float = 10.0) -> tuple[int, Any]:
        """GET ``path`` from the worker's API: ``(status, parsed JSON or text)``."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session, session.get(
                self.base_url + path, params=query) as response:
            text = await response.text()
            try:
                body: Any = await response.json(content_type=None)
            except ValueError:
                body = text
            return response.status, body

    async def wait_healthy(self, timeout: float = 90.0) -> dict[str, Any]:
        """Poll ``GET /v1/health`` until it answers 200; return its body.

        Raises WorkerFailed (with the log's tail, also printed) if the process exits or
        is not healthy within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last: Any = "no answer yet"
        while True:
            if not self.alive:
                self._fail(f"worker exited with code {self.returncode} before it was healthy")
            try:
                status, body = await self.get("/v1/health", timeout=3.0)
                if status == 200:
                    return body if isinstance(body, dict) else {"body": body}
                last = f"{status} {body}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = repr(exc)
            if time.monotonic() >= deadline:
                self._fail(f"worker not healthy after {timeout:.0f}s (last answer: {last})")
            await asyncio.sleep(0.25)

    # -- logs -------------------------------------------------------------------------

    def log_tail(self, lines: int = 80) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                data = handle.read().decode(errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc})"
        return "\n".join(data.splitlines()[-lines:])

    def print_log_tail(self, lines: int = 80) -> None:
        print(f"----- last {lines} lines of {self.log_path} -----\n{self.log_tail(lines)}\n"
              "----- end of worker log -----", file=sys.stderr)

    def _fail(self, message: str) -> None:
        self.print_log_tail()
        raise WorkerFailed(f"{message}; log: {self.log_path}\n{self.log_tail(40)}")

    def _note(self, message: str) -> None:
        if self._log is not None and not self._log.closed:
            self._log.write(f"===== {message}\n".encode())
            self._log.flush()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- context managers -------------------------------------------------------------

    def __enter__(self) -> WorkerProcess:
        if not self.alive:
            self.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.print_log_tail()
        self.kill()

    async def __aenter__(self) -> WorkerProcess:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)
