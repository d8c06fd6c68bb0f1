"""`gemini-bot run` in its own process on the fakes, as deployed, for the benchmarks."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp

from tests.fakes.gemini import API_KEY, FakeGemini


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_total(text: str, name: str) -> float:
    """The sum of a /metrics text's samples named `name` (over all their labels)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


class ServiceProcess:
    """`python -m bot run` on the fakes, in its own process."""

    module = "bot"  # what `python -m` runs (a subclass may wrap the service)
    start_limit = 30.0  # seconds to become healthy

    def __init__(self, gemini: FakeGemini, data: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "GEMINI_API_KEY": API_KEY,
            "GEMINI_BASE_URL": gemini.base_url,
            "GEMINI_MODEL": "gemini-test",
            "DATA_DIR": str(data),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            **env,
        }
        self.log = data / "service.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.session = aiohttp.ClientSession()

    async def __aenter__(self) -> ServiceProcess:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, "run", env=self.env, stdout=log, stderr=log
            )
        loop = asyncio.get_running_loop()
        end = loop.time() + self.start_limit
        while loop.time() < end:
            try:
                async with self.session.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                    if r.status == 200:
                        return self
            except aiohttp.ClientError:
                pass
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        await self.__aexit__()
        raise RuntimeError(f"service did not start: {self.log.read_text()[-2000:]}")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        await self.session.close()

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    async def metric(self, name: str) -> float:
        async with self.session.get(f"http://127.0.0.1:{self.port}/metrics") as r:
            text = await r.text()
        return metric_total(text, name)

    async def settle(self, turns: float, limit: float) -> None:
        """Until `turns` turns are done and nothing is in flight."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while loop.time() < end:
            done = await self.metric("gemini_bot_turns_total")
            if done >= turns and await self.metric("gemini_bot_turns_in_flight") == 0:
                await asyncio.sleep(0.3)  # the final edit may still be on its way
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("service still busy")
