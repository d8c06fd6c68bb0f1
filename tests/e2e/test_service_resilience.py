"""`gemini-bot run` as its own process with Slack and Discord: one platform's bad input
never takes the other down, nor the process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.service_process import ServiceProcess
from tests.adapters.conftest import ADA
from tests.adapters.slack_harness import until
from tests.adapters.test_discord_resilience import poll_message
from tests.fakes.discord import BOT_ID, CHANNEL, FakeDiscord
from tests.fakes.discord import TOKEN as DISCORD_TOKEN
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlack, SlackDriver


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    fake.add_user(ADA, "ada")
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.close()


async def test_a_poisoned_discord_event_leaves_slack_and_the_process_running(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "DISCORD_TOKEN": DISCORD_TOKEN,
        "DISCORD_API_URL": fake_discord.api_url,
        "DISCORD_GATEWAY_URL": fake_discord.gateway_url,
    }
    async with ServiceProcess(fake_gemini, tmp_path, env) as service:
        assert service.proc is not None
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            await fake_discord.dispatch("MESSAGE_CREATE", poll_message(fake_discord))
            await fake_discord.dispatch("MESSAGE_CREATE", "garbage")
            fake_gemini.enqueue(Reply(["Slack still here."]))
            ev = driver.message("C1GEN", "U1ADA", f"<@{BOT_USER}> hello?")
            status, _ = await driver.event(driver.as_mention(ev))
            assert status == 200
            await until(
                lambda: (
                    [m.visible() for m in fake_slack.bot_messages("C1GEN", ev["ts"])]
                    == ["Slack still here."]
                ),
                limit=20,
            )
            fake_gemini.enqueue(Reply(["Discord too."]))
            msg = await fake_discord.say(CHANNEL, ADA, f"<@{BOT_ID}> and you?")
            await until(
                lambda: (
                    [m["content"] for m in fake_discord.bot_messages(msg["id"])] == ["Discord too."]
                ),
                limit=20,
            )
            await asyncio.sleep(0)
            assert service.proc.returncode is None
            async with service.session.get(f"http://127.0.0.1:{service.port}/healthz") as r:
                assert r.status == 200
        finally:
            await driver.close()
    log = (tmp_path / "service.log").read_text()
    assert "MESSAGE_CREATE" in log and DISCORD_TOKEN not in log
