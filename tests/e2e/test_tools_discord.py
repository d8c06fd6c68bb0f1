"""Gemini's tools on Discord: real discord.py and google-genai against the fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.genai import types

from tests.adapters.discord_harness import discord_service, idle
from tests.conftest import ADA, BOB
from tests.fakes.discord import BOT_ID, CHANNEL, FakeDiscord
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.gemini_tools import grounded, png, png_color
from tests.helpers import until

MENTION = f"<@{BOT_ID}>"
ANSWER = "Release 3.2 shipped on 5 May. It removed the legacy API."


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path):
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        yield service


def files(fake: FakeDiscord, channel: str) -> list[tuple[dict[str, Any], bytes]]:
    """(attachment, bytes) of every file the bot posted in `channel`."""
    return [(a, fake.files[a["id"]]) for m in fake.bot_messages(channel) for a in m["attachments"]]


async def test_grounded_answer_has_masked_source_links_without_embeds(
    svc, fake_discord: FakeDiscord, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(
        grounded(
            ANSWER,
            sources=[
                ("Release notes", "https://example.com/r/3.2", "Release 3.2 shipped on 5 May."),
                ("Changelog", "https://changes.test/log", "It removed the legacy API."),
            ],
            queries=["release 3.2"],
        )
    )
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} +researcher what changed in 3.2?")
    await idle(svc)
    [thread] = fake_discord.threads()
    text = "\n".join(m["content"] for m in fake_discord.bot_messages(thread["id"]))
    assert "Release 3.2 shipped on 5 May.[1] It removed the legacy API.[2]" in text
    assert "[1] [Release notes](<https://example.com/r/3.2>) (example.com)" in text
    assert "Searched: [release 3.2](<https://www.google.com/search?q=release+3.2>)" in text
    # No bare URL anywhere: every link is masked or in <...>, so nothing unfurls.
    assert "https://" not in text.replace("(<https://", "").replace("<https://", "")


async def test_a_long_grounded_reply_keeps_its_sources_in_the_last_message(
    svc, fake_discord: FakeDiscord, fake_gemini: FakeGemini
) -> None:
    long = " ".join(f"Fact {i} holds." for i in range(260))  # about 3,900 characters
    fake_gemini.enqueue(
        grounded(
            long,
            sources=[("Facts", "https://facts.test/all", "Fact 3 holds.")],
            queries=["facts"],
            chunk_size=200,
        )
    )
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} +researcher all the facts")
    await idle(svc)
    [thread] = fake_discord.threads()
    parts = [m["content"] for m in fake_discord.bot_messages(thread["id"])]
    assert len(parts) >= 2 and all(len(p) <= 2000 for p in parts)
    assert "Sources:" in parts[-1] and all("Sources:" not in p for p in parts[:-1])
    assert "Fact 3 holds.[1]" in parts[0]


async def test_image_in_image_out_and_make_it_blue(
    svc, fake_discord: FakeDiscord, fake_gemini: FakeGemini
) -> None:
    sketch = fake_discord.attachment("sketch.png", png(16, 16, (0, 255, 0)), "image/png")
    await fake_discord.say(
        CHANNEL, ADA, f"{MENTION} +illustrator tidy this sketch", attachments=[sketch]
    )
    await idle(svc)
    [thread] = fake_discord.threads()
    got = files(fake_discord, thread["id"])
    assert [a["filename"] for a, _ in got] == ["image-1.png"]
    assert png_color(got[0][1]) == (255, 0, 0)
    first = fake_gemini.generate_requests()[-1]
    assert "image/png" in first.inline_mimes()  # the sketch went to the model
    await fake_discord.say(thread["id"], ADA, "make it blue")
    await idle(svc)
    got = files(fake_discord, thread["id"])
    assert len(got) == 2 and png_color(got[1][1]) == (0, 0, 255)
    second = fake_gemini.generate_requests()[-1]
    model_parts = [p for c in second.contents() if c.get("role") == "model" for p in c["parts"]]
    assert any("inlineData" in p or "inline_data" in p for p in model_parts)


async def test_an_image_over_discords_limit_is_reported_not_lost(
    svc, fake_discord: FakeDiscord, fake_gemini: FakeGemini
) -> None:
    huge = b"\x89PNG\r\n\x1a\n" + bytes(11 * 1024 * 1024)  # over a bot's 10 MB
    fake_gemini.enqueue(
        Reply(
            [
                "Here it is.",
                types.Part(inline_data=types.Blob(mime_type="image/png", data=huge)),
            ]
        )
    )
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} +illustrator a huge poster")
    await idle(svc)
    [thread] = fake_discord.threads()
    texts = [m["content"] for m in fake_discord.bot_messages(thread["id"])]
    assert texts[0] == "Here it is."
    assert "image-1.png is larger than Discord allows a bot (10 MB)" in texts[-1]
    assert files(fake_discord, thread["id"]) == []


async def test_tools_command_switches_a_tool_off_for_the_channel(
    svc, fake_discord: FakeDiscord, fake_gemini: FakeGemini
) -> None:
    off = [
        {"name": "tool", "type": 3, "value": "code_execution"},
        {"name": "state", "type": 3, "value": "off"},
    ]
    inter = await fake_discord.interact("tools", user=BOB, options=off)
    await until(lambda: bool(inter.callbacks))
    assert "Only admins" in inter.callbacks[0]["data"]["content"]
    inter = await fake_discord.interact("tools", user=ADA, options=off)
    await until(lambda: bool(inter.callbacks))
    assert inter.callbacks[0]["data"]["content"] == "code_execution is now off in this channel."
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} +analyst plot 1 2 3")
    await idle(svc)
    assert fake_gemini.generate_requests()[-1].tools() == []
    [thread] = fake_discord.threads()
    # In the channel's threads too: the switch is the channel's.
    inter = await fake_discord.interact("tools", user=BOB, channel_id=thread["id"])
    await until(lambda: bool(inter.callbacks))
    assert (
        "code_execution (code execution): off (switched off by an admin)"
        in (inter.callbacks[0]["data"]["content"])
    )


async def test_an_image_only_answer_replaces_its_status_line(
    svc, fake_discord: FakeDiscord, fake_gemini: FakeGemini
) -> None:
    image = png(8, 8, (0, 0, 255))
    fake_gemini.enqueue(
        Reply([types.Part(inline_data=types.Blob(mime_type="image/png", data=image))])
    )
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} +illustrator just the picture")
    await idle(svc)
    [thread] = fake_discord.threads()
    texts = [m["content"] for m in fake_discord.bot_messages(thread["id"]) if m["content"]]
    assert texts == ["_Attached: image-1.png_"]
    assert [a["filename"] for a, _ in files(fake_discord, thread["id"])] == ["image-1.png"]
