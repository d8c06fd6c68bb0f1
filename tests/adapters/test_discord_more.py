"""Discord end to end: attachments, app commands, access, and both platforms in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.adapters.discord_harness import discord_service, idle, until
from tests.adapters.test_discord import MENTION
from tests.conftest import ADA, BOB
from tests.fakes.discord import ADMIN_ROLE, CHANNEL, FakeDiscord
from tests.fakes.gemini import FakeGemini, Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path):
    async with discord_service(
        fake_gemini, fake_discord, tmp_path, ATTACHMENT_MAX_BYTES=100_000
    ) as service:
        yield service


async def test_attachments_are_read_and_bad_ones_get_a_note(svc, fake_discord, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["Read them."]))
    files = [
        fake_discord.attachment("message.txt", b"a long pasted message " * 50, "text/plain"),
        fake_discord.attachment("pic.png", PNG, "image/png"),
        fake_discord.attachment("big.pdf", b"%PDF-1.4" + b"0" * 200_000, "application/pdf"),
        fake_discord.attachment("tool.exe", b"MZ\x90\x00" + b"\x00" * 100),
    ]
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} look at these", attachments=files)
    await idle(svc)
    req = fake_gemini.generate_requests()[-1]
    assert sorted(req.inline_mimes()) == ["image/png", "text/plain"]
    [thread] = fake_discord.threads()
    shown = "\n".join(m["content"] for m in fake_discord.bot_messages(thread["id"]))
    assert "Read them." in shown
    assert "Skipped big.pdf" in shown and "limit" in shown
    assert "Skipped tool.exe" in shown


async def test_summarize_command_defers_then_summarises_in_a_thread(
    svc, fake_discord, fake_gemini
) -> None:
    fake_gemini.enqueue(Reply(["A short summary."]), Reply(["Follow-up answer."]))
    att = fake_discord.attachment("notes.txt", b"meeting notes: ship it", "text/plain")
    inter = await fake_discord.interact(
        "summarize",
        user=BOB,
        options=[{"name": "file", "type": 11, "value": att["id"]}],
        resolved={"attachments": {att["id"]: att}},
    )
    await idle(svc)
    assert inter.callbacks[0]["type"] == 5  # deferred first
    [thread] = fake_discord.threads()
    assert [m["content"] for m in fake_discord.bot_messages(thread["id"])] == ["A short summary."]
    req = fake_gemini.generate_requests()[-1]
    assert req.inline_mimes() == ["text/plain"]
    assert any("Summarise the attached file" in t for t in req.texts())
    # The summary's thread is a conversation like any other.
    await fake_discord.say(thread["id"], BOB, "who ships it?")
    await idle(svc)
    assert fake_discord.bot_messages(thread["id"])[-1]["content"] == "Follow-up answer."


async def test_context_menu_summarises_a_messages_attachments(
    svc, fake_discord, fake_gemini
) -> None:
    fake_gemini.enqueue(Reply(["Summary of the image."]))
    att = fake_discord.attachment("pic.png", PNG, "image/png")
    target = await fake_discord.say(CHANNEL, BOB, "see this", attachments=[att])
    inter = await fake_discord.interact(
        "Summarize attachments", user=ADA, command_type=3, target=target
    )
    await idle(svc)
    assert inter.callbacks[0]["type"] == 5
    [thread] = fake_discord.threads()
    assert thread["id"] == target["id"]  # the thread hangs off the summarised message
    assert fake_discord.bot_messages(thread["id"])[-1]["content"] == "Summary of the image."
    bare = await fake_discord.say(CHANNEL, BOB, "no files here")
    inter = await fake_discord.interact(
        "Summarize attachments", user=ADA, command_type=3, target=bare
    )
    await idle(svc)
    assert "no attachments" in inter.followups[-1]["content"]


async def test_persona_autocomplete_thread_and_channel(svc, fake_discord, fake_gemini) -> None:
    inter = await fake_discord.interact(
        "persona",
        user=BOB,
        kind=4,
        options=[{"name": "name", "type": 3, "value": "co", "focused": True}],
    )
    await until(lambda: bool(inter.callbacks))
    assert inter.callbacks[0]["type"] == 8
    assert [c["name"] for c in inter.callbacks[0]["data"]["choices"]] == ["coder"]
    # Bob may not set the channel default; Ada (admin role) may.
    inter = await fake_discord.interact(
        "persona",
        user=BOB,
        options=[
            {"name": "name", "type": 3, "value": "coder"},
            {"name": "scope", "type": 3, "value": "channel"},
        ],
    )
    await until(lambda: bool(inter.callbacks))
    assert "Only admins" in inter.callbacks[0]["data"]["content"]
    inter = await fake_discord.interact(
        "persona",
        user=ADA,
        options=[
            {"name": "name", "type": 3, "value": "coder"},
            {"name": "scope", "type": 3, "value": "channel"},
        ],
    )
    await until(lambda: bool(inter.callbacks))
    assert "coder" in inter.callbacks[0]["data"]["content"]
    fake_gemini.enqueue(Reply(["As coder."]), Reply(["As editor."]))
    await fake_discord.say(CHANNEL, BOB, f"{MENTION} hello")
    await idle(svc)
    assert "senior software engineer" in fake_gemini.generate_requests()[-1].system_instruction()
    [thread] = fake_discord.threads()
    # Anyone in a thread may pick its persona.
    inter = await fake_discord.interact(
        "persona",
        user=BOB,
        channel_id=thread["id"],
        options=[{"name": "name", "type": 3, "value": "editor"}],
    )
    await until(lambda: bool(inter.callbacks))
    assert "editor" in inter.callbacks[0]["data"]["content"]
    await fake_discord.say(thread["id"], BOB, "again")
    await idle(svc)
    first, second = fake_gemini.generate_requests()[-2:]
    assert first.system_instruction() != second.system_instruction()
    inter = await fake_discord.interact(
        "persona",
        user=BOB,
        options=[{"name": "name", "type": 3, "value": "nope"}],
        channel_id=thread["id"],
    )
    await until(lambda: bool(inter.callbacks))
    assert "nope" in inter.callbacks[0]["data"]["content"]


async def test_forget_usage_and_help(svc, fake_discord, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["I know X."]), Reply(["Fresh."]))
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} remember X")
    await idle(svc)
    [thread] = fake_discord.threads()
    inter = await fake_discord.interact("forget", user=ADA, channel_id=thread["id"])
    await until(lambda: bool(inter.callbacks))
    assert inter.callbacks[0]["data"]["content"].startswith("Forgotten")
    assert inter.callbacks[0]["data"]["flags"] == 64  # only the user sees it
    await fake_discord.say(thread["id"], ADA, "what do you know?")
    await idle(svc)
    assert fake_gemini.generate_requests()[-1].texts() == ["[Ada] what do you know?"]
    inter = await fake_discord.interact("forget", user=ADA)
    await until(lambda: bool(inter.callbacks))
    assert "inside one of my threads" in inter.callbacks[0]["data"]["content"]
    inter = await fake_discord.interact("gemini-usage", user=ADA)
    await until(lambda: bool(inter.callbacks))
    assert "2 replies" in inter.callbacks[0]["data"]["content"]
    inter = await fake_discord.interact("gemini-help", user=ADA)
    await until(lambda: bool(inter.callbacks))
    assert "/summarize" in inter.callbacks[0]["data"]["content"]


async def test_access_by_role_and_channel(fake_gemini, fake_discord, tmp_path) -> None:
    async with discord_service(
        fake_gemini, fake_discord, tmp_path, ALLOWED_USERS=f"discord:role:{ADMIN_ROLE}"
    ) as service:
        fake_gemini.enqueue(Reply(["For Ada."]))
        await fake_discord.say(CHANNEL, BOB, f"{MENTION} me?")
        await fake_discord.say(CHANNEL, ADA, f"{MENTION} and me?")
        await idle(service)
        assert [r.texts() for r in fake_gemini.generate_requests()] == [["[Ada] and me?"]]
        inter = await fake_discord.interact("forget", user=BOB)
        await until(lambda: bool(inter.callbacks))
        assert "not allowed" in inter.callbacks[0]["data"]["content"]


async def test_slack_and_discord_in_one_process(fake_gemini, fake_discord, tmp_path) -> None:
    from tests.adapters.slack_harness import slack_service
    from tests.fakes.discord import TOKEN
    from tests.fakes.slack import BOT_USER, FakeSlack

    slack = FakeSlack()
    await slack.start()
    try:
        async with slack_service(
            fake_gemini,
            slack,
            tmp_path,
            DISCORD_TOKEN=TOKEN,
            DISCORD_API_URL=fake_discord.api_url,
            DISCORD_GATEWAY_URL=fake_discord.gateway_url,
        ) as (service, driver):
            assert sorted(a.name for a in service.adapters) == ["discord", "slack"]
            await until(lambda: all(a.connected for a in service.adapters), limit=15)
            fake_gemini.enqueue(Reply(["Slack answer."]), Reply(["Discord answer."]))
            ev = driver.message("C1GEN", "U1ADA", f"<@{BOT_USER}> from slack")
            await driver.event(driver.as_mention(ev))
            await idle(service)
            await fake_discord.say(CHANNEL, ADA, f"{MENTION} from discord")
            await idle(service)
            assert [m.visible() for m in slack.bot_messages("C1GEN", ev["ts"])] == ["Slack answer."]
            [thread] = fake_discord.threads()
            assert fake_discord.bot_messages(thread["id"])[0]["content"] == "Discord answer."
    finally:
        await slack.close()


async def test_forget_during_a_reply_is_deferred_then_answered(
    svc, fake_discord, fake_gemini
) -> None:
    fake_gemini.enqueue(Reply([f"w{i} " for i in range(20)], delay=0.1))
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} a long one")
    await until(lambda: bool(fake_discord.threads()))
    [thread] = fake_discord.threads()
    await until(lambda: any("w1" in m["content"] for m in fake_discord.bot_messages(thread["id"])))
    inter = await fake_discord.interact("forget", user=ADA, channel_id=thread["id"])
    await until(lambda: bool(inter.callbacks))
    assert inter.callbacks[0]["type"] == 5  # deferred at once: the reply still holds the thread
    await until(lambda: bool(inter.followups), limit=20)
    assert inter.followups[0]["content"].startswith("Forgotten")
    shown = [m["content"] for m in fake_discord.bot_messages(thread["id"])]
    assert any("w19" in c for c in shown)  # the reply finished before the thread was forgotten


async def test_no_typing_request_once_text_waits_to_be_shown(
    fake_gemini, fake_discord, tmp_path
) -> None:
    # A tight global budget (3 requests/s) makes the replies' text queue behind it.
    async with discord_service(
        fake_gemini, fake_discord, tmp_path, DISCORD_GLOBAL_RATE=3
    ) as service:
        for i in range(6):
            await fake_discord.say(CHANNEL, ADA, f"{MENTION} topic {i}")
            await idle(service)
        threads = fake_discord.threads()
        assert len(threads) == 6
        # Each thread's reply names its topic, whatever order the requests come in.
        fake_gemini.responder = lambda rec: Reply([f"Reply {rec.texts()[0].split()[-1]} now."])
        await asyncio.gather(*(fake_discord.say(t["id"], ADA, "and?") for t in threads))
        await idle(service, limit=60)
    for t in threads:
        i = t["name"].split()[-1]
        ready = fake_gemini.first_chunk_at[f"Reply {i} now."]
        late = [
            c
            for c in fake_discord.calls
            # (50 ms: a typing request already on the wire as the chunk left the fake)
            if c.route == "typing"
            and c.path == f"/channels/{t['id']}/typing"
            and c.at > ready + 0.05
        ]
        assert late == [], i
        assert fake_discord.bot_messages(t["id"])[-1]["content"] == f"Reply {i} now."
