"""The whole service in-process (same composition as `gemini-bot run`) on fake Slack + Gemini."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, cast

from bot.service import Service
from bot.settings import load_settings
from tests import helpers
from tests.fakes.gemini import API_KEY, FakeGemini
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, TEAM, FakeSlack, SlackDriver


class Drainable(Protocol):
    """An adapter that can say when the requests it acknowledged have been handled."""

    @property
    def preparing(self) -> int: ...

    async def drain(self) -> None: ...


@asynccontextmanager
async def slack_service(
    gemini: FakeGemini, slack: FakeSlack, data: Path, **overrides: Any
) -> AsyncIterator[tuple[Service, SlackDriver]]:
    values: dict[str, Any] = {
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_BASE_URL": gemini.base_url,
        "GEMINI_MODEL": "gemini-test",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "DATA_DIR": data,
        "HTTP_PORT": 0,
        "SHUTDOWN_GRACE_SECONDS": 5,
        **overrides,
    }
    settings = load_settings(_env_file=None, **values)
    service = Service(settings)
    await service.start()
    driver = SlackDriver(slack, f"http://127.0.0.1:{service.http.port}/slack/events")
    try:
        await until(lambda: all(a.connected for a in service.adapters))
        yield service, driver
    finally:
        await driver.close()
        await service.stop()


async def until(cond: Callable[[], object], limit: float = 10.0) -> None:
    """Wait for `cond()` (sync, or async: awaited, never taken as a truthy coroutine)."""
    await helpers.until(cond, limit=limit)


async def drain(service: Service, limit: float = 30.0) -> None:
    """Explicitly wait until every acknowledged request has been handled and every turn it
    started is finished (delivered or given up): adapters' drain(), then engine.in_flight,
    again until neither has work. A negative test asserts after this, not after a pause."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while True:
        adapters = [cast(Drainable, a) for a in service.adapters]
        for adapter in adapters:
            await asyncio.wait_for(adapter.drain(), max(0.0, end - loop.time()))
        await until(lambda: service.engine.in_flight == 0, max(0.0, end - loop.time()))
        if not any(a.preparing for a in adapters):
            return


async def idle(service: Service, limit: float = 30.0, quiet: float = 0.3) -> None:
    """Wait until the service has nothing to do. With adapters that can be drained (Slack),
    that is drain(); others (Discord) cannot say when a received event has been handed on,
    so for them nothing must be busy for `quiet` seconds in a row."""
    if all(hasattr(a, "drain") for a in service.adapters):
        await drain(service, limit)
        return
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    calm_since: float | None = None
    while True:
        busy = service.engine.in_flight > 0 or any(
            getattr(a, "preparing", 0) for a in service.adapters
        )
        now = loop.time()
        if busy:
            calm_since = None
        elif calm_since is None:
            calm_since = now
        elif now - calm_since >= quiet:
            return
        if now > end:
            raise AssertionError("service still busy")
        await asyncio.sleep(0.01)


# A call that reached the fake this soon after a 429 on its budget was already on its way.
IN_FLIGHT_S = 0.1


def retry_after_ignored(fake: FakeSlack) -> list[tuple[str, float]]:
    """Calls on a budget (method, and channel or workspace) that started after a 429 on it
    and before its Retry-After had passed: each is a 429 not honoured."""

    def budget(c: Any) -> tuple[str, str]:
        scope = fake.limits.get(c.method, (0.0, 0, "team"))[2]
        channel = str(c.args.get("channel") or c.args.get("channel_id"))
        return c.method, channel if scope == "channel" else fake.channel_team.get(channel, TEAM)

    ignored = []
    for i, c in enumerate(fake.calls):
        if c.status != 429:
            continue
        for d in fake.calls[i + 1 :]:
            if budget(d) == budget(c) and c.at + IN_FLIGHT_S < d.at < c.at + c.retry_after:
                ignored.append((d.method, round(d.at - c.at, 3)))
    return ignored
