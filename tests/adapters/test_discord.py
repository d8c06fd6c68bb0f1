"""Discord end to end: real discord.py and google-genai against the fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.discord_harness import discord_service, idle
from tests.fakes.discord import BOT_ID, CHANNEL, FakeDiscord
from tests.fakes.gemini import FakeGemini, Reply

MENTION = f"<@{BOT_ID}>"
ADA, BOB = "100000000000000001", "100000000000000002"


@pytest.fixture
async def fake_discord() -> FakeDiscord:
    fake = FakeDiscord()
    fake.add_user(ADA, "ada")
    fake.add_user(BOB, "bob")
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path):
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        yield service


async def test_mention_creates_a_thread_and_the_thread_continues(
    svc, fake_discord, fake_gemini
) -> None:
    fake_gemini.enqueue(Reply(["Hello ", "Ada!"]), Reply(["Still here."]))
    msg = await fake_discord.say(CHANNEL, ADA, f"{MENTION} what is **tea**?")
    await idle(svc)
    [thread] = fake_discord.threads()
    assert thread["id"] == msg["id"] and thread["name"] == "what is tea?"
    assert [m["content"] for m in fake_discord.bot_messages(thread["id"])] == ["Hello Ada!"]
    assert fake_gemini.generate_requests()[-1].texts() == ["[Ada] what is **tea**?"]
    await fake_discord.say(thread["id"], BOB, "and me?")
    await idle(svc)
    assert [m["content"] for m in fake_discord.bot_messages(thread["id"])] == [
        "Hello Ada!",
        "Still here.",
    ]
    assert fake_gemini.generate_requests()[-1].texts() == [
        "[Ada] what is **tea**?",
        "Hello Ada!",
        "[Bob] and me?",
    ]
    assert fake_discord.count_429() == 0
