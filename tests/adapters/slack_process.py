"""`gemini-bot run` as its own process on fake Slack (HTTP mode) and fake Gemini, with its
stderr kept apart so a test can count the tracebacks the service printed."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

import aiohttp

from tests.fakes.gemini import API_KEY, FakeGemini
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlackServiceProcess:
    """The service in a subprocess: `async with` starts it and waits for /healthz."""

    def __init__(self, gemini: FakeGemini, slack: FakeSlack, data: Path, **env: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GEMINI_API_KEY": API_KEY,
            "GEMINI_BASE_URL": gemini.base_url,
            "GEMINI_MODEL": "gemini-test",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "DATA_DIR": str(data),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "LOG_LEVEL": "INFO",
            **env,
        }
        self.stderr_path = data / "stderr.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def __aenter__(self) -> SlackServiceProcess:
        with self.stderr_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                env=self.env,
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        async with aiohttp.ClientSession() as http:
            while loop.time() < end and self.proc.returncode is None:
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        # __aexit__ does not run when __aenter__ raises: stop the process here, or it stays.
        await self.__aexit__(None, None, None)
        raise RuntimeError(f"service did not start: {self.stderr()[-3000:]}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)
