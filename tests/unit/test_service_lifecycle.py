"""Service lifecycle: adapters supervised with backoff, resources closed whatever fails."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.service import Service
from bot.settings import load_settings
from tests.adapters.slack_harness import until


def settings(tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "GEMINI_API_KEY": "k",
        "GEMINI_BASE_URL": "http://127.0.0.1:9",
        "DISCORD_TOKEN": "unused: the adapter is replaced by a fake",
        "DATA_DIR": tmp_path,
        "HTTP_PORT": 0,
        "SHUTDOWN_GRACE_SECONDS": 1,
        **overrides,
    }
    return load_settings(_env_file=None, **values)


class FlakyAdapter:
    """Fails its first `failures` runs; then waits for `gate`, connects and serves."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0
        self.connected = False
        self.gate = asyncio.Event()
        self.closed = asyncio.Event()

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError(f"boom {self.runs}")
        await self.gate.wait()
        self.connected = True
        await self.closed.wait()

    async def aclose(self) -> None:
        self.connected = False
        self.closed.set()


class SteadyAdapter(FlakyAdapter):
    name = "steady"

    def __init__(self) -> None:
        super().__init__(0)
        self.gate.set()


async def healthz(service: Service) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{service.http.port}/healthz") as r,
    ):
        return r.status, await r.json()


async def test_a_failing_adapter_is_restarted_with_backoff_and_reported_down(
    tmp_path: Path,
) -> None:
    from bot.supervise import Backoff

    service = Service(settings(tmp_path))
    flaky, steady = FlakyAdapter(failures=3), SteadyAdapter()
    service.adapters = [flaky, steady]  # type: ignore[list-item]
    service.backoff = Backoff(initial=0.05, cap=0.15)
    await service.start()
    stop = asyncio.Event()
    waiting = asyncio.create_task(service.wait(stop))
    try:
        await until(lambda: flaky.runs >= 2)
        status, body = await healthz(service)
        assert status == 503 and body["components"]["flaky"] != "connected"
        assert body["components"]["steady"] == "connected"
        await until(lambda: flaky.runs == 4)
        assert not waiting.done()  # the service goes on: no exit
        flaky.gate.set()
        await until(lambda: flaky.connected)
        status, body = await healthz(service)
        assert status == 200 and body["components"]["flaky"] == "connected"
        delays = next(s.delays for s in service.supervisors if s.adapter is flaky)
        assert delays == [0.05, 0.1, 0.15]
    finally:
        stop.set()
        failed = await waiting
        await service.stop()
    assert failed is False


async def test_backoff_doubles_up_to_a_cap_and_stop_ends_it(monkeypatch) -> None:
    from bot.supervise import Backoff, Supervisor

    flaky = FlakyAdapter(failures=9)
    sup = Supervisor(flaky, backoff=Backoff())  # type: ignore[arg-type]

    async def no_wait(self: Supervisor, seconds: float) -> None:
        await asyncio.sleep(0)

    monkeypatch.setattr(Supervisor, "_pause", no_wait)
    task = asyncio.create_task(sup.run())
    await until(lambda: flaky.runs == 10)
    assert sup.delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert sup.status in ("disconnected", "connected")
    flaky.gate.set()
    await sup.stop()
    await asyncio.wait_for(task, 5)
    assert sup.restarts == 9


async def test_the_store_is_closed_when_the_http_server_cannot_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        service = Service(settings(tmp_path, HTTP_PORT=taken.getsockname()[1]))
        with pytest.raises(OSError):
            await service.start()
        assert not await service.store.ping()
    # A second start with the port free works: nothing was left half-open.
    service.http.port = 0
    service.adapters = [SteadyAdapter()]  # type: ignore[list-item]
    await service.start()
    try:
        assert await service.store.ping()
    finally:
        await service.stop()
    assert not await service.store.ping()
