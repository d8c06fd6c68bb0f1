"""`gemini-bot run` as its own process with Slack and Discord: one platform's bad input
never takes the other down, nor the process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.service_process import ServiceProcess
from tests.adapters.slack_harness import until
from tests.adapters.test_discord_resilience import poll_message
from tests.conftest import ADA
from tests.fakes.discord import BOT_ID, CHANNEL, FakeDiscord
from tests.fakes.discord import TOKEN as DISCORD_TOKEN
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlack, SlackDriver
from tests.helpers import until as until_async


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


async def _status(service: ServiceProcess) -> int:
    async with service.session.get(f"http://127.0.0.1:{service.port}/healthz") as r:
        return r.status


async def test_healthz_is_503_while_the_gateway_is_down_and_replies_ping_nobody(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    env = {
        "DISCORD_TOKEN": DISCORD_TOKEN,
        "DISCORD_API_URL": fake_discord.api_url,
        "DISCORD_GATEWAY_URL": fake_discord.gateway_url,
        "DISCORD_GLOBAL_RATE": "10000",
    }
    fake_discord.global_limit = None  # pacing is not under test here
    async with ServiceProcess(fake_gemini, tmp_path, env) as service:
        assert await _status(service) == 200
        await fake_discord.drop_connections(refuse_for=1.5)
        seen: list[int] = []

        async def down() -> bool:
            seen.append(await _status(service))
            return seen[-1] == 503

        await until_async(down, limit=10)
        await until(lambda: fake_discord.refused >= 1, limit=10)
        assert await _status(service) == 503

        async def up() -> bool:
            return await _status(service) == 200

        await until_async(up, limit=30)
        assert fake_discord.resumes + fake_discord.identifies >= 2
        # Model text with every mention form, in 50 threads: nobody is pinged.
        pings = "@everyone and @here, <@123> <@!123> <@&456> and <@100000000000000002>"
        fake_gemini.responder = lambda rec: Reply([pings[:30], pings[30:]], delay=0.2)
        for i in range(50):
            await fake_discord.say(CHANNEL, ADA, f"<@{BOT_ID}> q{i:02d}")

        def all_answered() -> bool:
            threads = fake_discord.threads()
            return len(threads) == 50 and all(
                [m["content"] for m in fake_discord.bot_messages(t["id"])] == [pings]
                for t in threads
            )

        await until(all_answered, limit=60)
    writes = [
        c
        for c in fake_discord.calls
        if c.route == "write" and c.method in ("POST", "PATCH") and c.status == 200
    ]
    assert len([c for c in writes if c.method == "POST"]) >= 50
    for c in writes:
        mentions = c.body["allowed_mentions"]
        assert mentions["parse"] == [] and not mentions.get("replied_user")
        assert "users" not in mentions and "roles" not in mentions
