"""The whole service in-process (same composition as `gemini-bot run`) on fake Discord + Gemini."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.service import Service
from bot.settings import load_settings
from tests.adapters.slack_harness import idle, until
from tests.fakes.discord import TOKEN, FakeDiscord
from tests.fakes.gemini import API_KEY, FakeGemini

__all__ = ["discord_service", "idle", "until"]


@asynccontextmanager
async def discord_service(
    gemini: FakeGemini, fake: FakeDiscord, data: Path, *, connect: bool = True, **overrides: Any
) -> AsyncIterator[Service]:
    """The service on the fakes; yielded once connected (`connect=False`: once started)."""
    values: dict[str, Any] = {
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_BASE_URL": gemini.base_url,
        "GEMINI_MODEL": "gemini-test",
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_URL": fake.api_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DATA_DIR": data,
        "HTTP_PORT": 0,
        "SHUTDOWN_GRACE_SECONDS": 5,
        **overrides,
    }
    service = Service(load_settings(_env_file=None, **values))
    await service.start()
    try:
        if connect:
            await until(lambda: all(a.connected for a in service.adapters), limit=15)
        yield service
    finally:
        await service.stop()
