"""`python -m bot run` as a child process of a test: started (until /healthz answers 200),
SIGKILLed as in a crash, restarted on the same DATA_DIR, stopped. Each run's stderr is kept
in DATA_DIR/stderr-N.log for the failure messages.

Used by the crash-recovery tests (one process, restarted) and the replica tests (several
processes on one PostgreSQL database).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.fakes.gemini import API_KEY, FakeGemini
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack

ROOT = Path(__file__).resolve().parents[1]


def slack_replica_env(slack: FakeSlack, gemini: FakeGemini, database: str) -> dict[str, str]:
    """A replica's settings: the fake Slack in HTTP mode, the fake Gemini, one database."""
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "GEMINI_BASE_URL": gemini.base_url,
        "DATABASE_URL": database,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """`python -m bot run` on one DATA_DIR and HTTP port, started, killed and restarted."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data = data
        self.port = free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GEMINI_API_KEY": API_KEY,
            "GEMINI_MODEL": "gemini-test",
            "DATA_DIR": str(data),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "LOG_LEVEL": "INFO",
            "SHUTDOWN_GRACE_SECONDS": "2",
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def db(self) -> Path:
        """The SQLite database (when DATABASE_URL does not name another one)."""
        return self.data / "gemini-bot.db"

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "service not started"
        return self.proc.pid

    def log_path(self, run: int) -> Path:
        return self.data / f"stderr-{run}.log"

    def log(self, run: int | None = None) -> str:
        runs = [run] if run is not None else range(1, self.runs + 1)
        return "\n".join(
            f"--- run {r} ---\n{self.log_path(r).read_text(errors='replace')}" for r in runs
        )

    async def start(self, **env: str) -> None:
        self.runs += 1
        started = time.monotonic()
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log_path(self.runs).open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                env={**self.env, **env},
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - started < 30 and self.proc.returncode is None:
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"service did not start:\n{self.log(self.runs)[-4000:]}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.proc is not None and self.proc.returncode is None, "service not running"
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def until(cond: Callable[[], bool], *, limit: float, what: Callable[[], str]) -> None:
    """Poll `cond` (the state of processes seen from outside) until true; after `limit` s
    fail with `what()`, the state seen."""
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {limit}s waiting: {what()}")
        await asyncio.sleep(0.02)
