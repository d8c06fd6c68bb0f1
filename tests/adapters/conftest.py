"""Fixtures of the adapter tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], str]]]]:
    """A stand-in for the service's /slack/events: what the fake's driver sends, recorded."""
    got: list[tuple[dict[str, str], str]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.text()))
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", got
    finally:
        await runner.cleanup()
