"""Discord against hostile input and a flaky gateway: poisoned events, drops, resumes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.discord import adapter as discord_adapter
from bot.compose import build_store
from bot.types import Author, NewTurn, TextPart, ThreadKey
from tests.adapters.discord_harness import discord_service, idle, until
from tests.adapters.test_discord import MENTION
from tests.conftest import ADA
from tests.fakes.discord import CHANNEL, GUILD, TOKEN, FakeDiscord
from tests.fakes.gemini import FakeGemini, Reply


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path):
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        yield service


def poll_message(fake: FakeDiscord) -> dict[str, Any]:
    """A message with a poll whose expiry is null (Discord's docs allow it: "non-expiring
    polls"); discord.py 2.7's Poll parser reads it as a timestamp and raises."""
    msg = fake.public(fake._message(CHANNEL, ADA, f"{MENTION} vote please"))
    msg["poll"] = {
        "question": {"text": "Lunch?"},
        "answers": [
            {"answer_id": 1, "poll_media": {"text": "Pizza"}},
            {"answer_id": 2, "poll_media": {"text": "Soup"}},
        ],
        "expiry": None,
        "allow_multiselect": False,
        "layout_type": 1,
    }
    return msg


async def mention_is_answered(service: Any, fake: FakeDiscord, gemini: FakeGemini) -> None:
    gemini.enqueue(Reply(["Still answering."]))
    before = len(fake.threads())
    msg = await fake.say(CHANNEL, ADA, f"{MENTION} are you there?")
    await until(lambda: len(fake.threads()) > before and bool(fake.bot_messages(msg["id"])))
    await idle(service)
    assert [m["content"] for m in fake.bot_messages(msg["id"])] == ["Still answering."]


async def test_a_poll_with_null_expiry_is_skipped_and_the_adapter_keeps_serving(
    svc, fake_discord, fake_gemini, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    discord = svc.adapters[0]
    await fake_discord.dispatch("MESSAGE_CREATE", poll_message(fake_discord))
    await mention_is_answered(svc, fake_discord, fake_gemini)
    assert discord.connected
    warned = [r for r in caplog.records if "MESSAGE_CREATE" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


async def test_garbage_payloads_are_skipped(svc, fake_discord, fake_gemini, caplog) -> None:
    caplog.set_level(logging.WARNING)
    await fake_discord.dispatch("MESSAGE_CREATE", "garbage")
    await fake_discord.dispatch("MESSAGE_CREATE", {"id": "not a snowflake", "channel_id": []})
    await fake_discord.dispatch("THREAD_CREATE", [1, 2, 3])
    await fake_discord.dispatch("INTERACTION_CREATE", {"token": "itoken-secret", "type": 2})
    await mention_is_answered(svc, fake_discord, fake_gemini)
    assert svc.adapters[0].connected
    warned = [r for r in caplog.records if r.name.startswith("adapters.discord")]
    assert len(warned) == 4
    assert all("itoken-secret" not in r.getMessage() for r in caplog.records)


async def healthz(service: Any) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{service.http.port}/healthz") as r,
    ):
        return r.status


async def status_becomes(service: Any, want: int, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while (status := await healthz(service)) != want:
        assert loop.time() < end, f"/healthz never answered {want} (last {status})"
        await asyncio.sleep(0.02)


async def test_healthz_follows_the_gateway_through_resume_and_reidentify(
    svc, fake_discord, fake_gemini
) -> None:
    assert await healthz(svc) == 200
    # Down, and refusing reconnects for a while: unhealthy all that time.
    await fake_discord.drop_connections(refuse_for=1.5)
    await status_becomes(svc, 503, limit=5)
    await until(lambda: fake_discord.refused >= 1, limit=10)
    assert await healthz(svc) == 503
    # Back: the client RESUMEs the session.
    await status_becomes(svc, 200)
    assert fake_discord.resumes == 1 and fake_discord.identifies == 1
    await mention_is_answered(svc, fake_discord, fake_gemini)
    # The session cannot be resumed this time: INVALID_SESSION, then a fresh IDENTIFY.
    fake_discord.resume_ok = False
    await fake_discord.drop_connections()
    await status_becomes(svc, 503, limit=5)
    await status_becomes(svc, 200)
    assert fake_discord.identifies == 2
    await mention_is_answered(svc, fake_discord, fake_gemini)


def syncs(fake: FakeDiscord) -> list[str]:
    return [c.path for c in fake.calls if c.method == "PUT" and c.path.endswith("/commands")]


async def test_commands_sync_only_when_the_command_set_changes(
    fake_gemini, fake_discord, tmp_path, monkeypatch
) -> None:
    for _ in range(2):
        async with discord_service(fake_gemini, fake_discord, tmp_path):
            pass
    assert len(syncs(fake_discord)) == 1
    assert {c["name"] for c in fake_discord.commands["global"]} >= {"summarize", "persona"}

    register = discord_adapter.register_commands

    def with_extra(adapter: Any, tree: Any) -> None:
        register(adapter, tree)

        @tree.command(name="extra", description="A command added in a new release")
        async def extra(interaction: Any) -> None:
            return None

    monkeypatch.setattr(discord_adapter, "register_commands", with_extra)
    for _ in range(2):
        async with discord_service(fake_gemini, fake_discord, tmp_path):
            pass
    assert len(syncs(fake_discord)) == 2
    assert "extra" in {c["name"] for c in fake_discord.commands["global"]}
    # The same commands synced to one guild instead: another scope, another sync.
    for _ in range(2):
        async with discord_service(
            fake_gemini, fake_discord, tmp_path, DISCORD_SYNC_GUILD="800000000000000001"
        ):
            pass
    assert len(syncs(fake_discord)) == 3
    assert syncs(fake_discord)[-1].endswith("/guilds/800000000000000001/commands")


async def test_fifty_replies_with_every_mention_form_ping_nobody(
    svc, fake_discord, fake_gemini
) -> None:
    pings = "@everyone and @here, <@123> <@!123> <@&456> and <@100000000000000002>"
    fake_gemini.responder = lambda rec: Reply(
        [f"{rec.texts()[-1][-3:]}: ", pings[:30], pings[30:]], delay=0.6
    )
    for i in range(50):
        await fake_discord.say(CHANNEL, ADA, f"{MENTION} q{i:02d}")
    await idle(svc, limit=120)
    threads = fake_discord.threads()
    assert len(threads) == 50
    for t in threads:
        [m] = fake_discord.bot_messages(t["id"])
        assert m["content"].endswith(pings)
    writes = [
        c
        for c in fake_discord.calls
        if c.route == "write" and c.method in ("POST", "PATCH") and c.status == 200
    ]
    assert len([c for c in writes if c.method == "POST"]) == 50
    assert [c for c in writes if c.method == "PATCH"]  # streamed: edits are covered too
    for c in writes:
        mentions = c.body["allowed_mentions"]
        assert mentions["parse"] == []
        assert "users" not in mentions and "roles" not in mentions
        assert not mentions.get("replied_user")


async def test_a_crashed_client_is_restarted_by_the_service(
    svc, fake_discord, fake_gemini, caplog
) -> None:
    # A frame that is not JSON fails in discord.py before any parser: the client's start()
    # raises. The service restarts the adapter (a fresh client, a new IDENTIFY).
    assert await healthz(svc) == 200
    await fake_discord.send_raw("{this is not json")
    await status_becomes(svc, 503, limit=5)
    await status_becomes(svc, 200)
    assert fake_discord.identifies == 2
    await mention_is_answered(svc, fake_discord, fake_gemini)
    assert any("adapter discord failed" in r.getMessage() for r in caplog.records)


async def leave_pending(settings: Any, key: ThreadKey) -> None:
    """What a process killed mid-reply (or a replica's hand-off) leaves: a follow-up whose
    reply is still pending, with no message posted for it yet."""
    store = build_store(settings)
    await store.open()
    try:
        assert await store.get_conversation(key) is not None
        await store.accept_turn(
            key,
            user=NewTurn("user", (TextPart("and then?"),), author=Author(ADA, "Ada")),
            reply=NewTurn("model", (), status="pending"),
            event=None,
        )
    finally:
        await store.close()


async def test_a_pending_reply_is_recovered_over_rest_before_the_gateway_connects(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    # With many shards the gateway can take minutes to connect them all (IDENTIFYs are
    # paced 5 s apart per max_concurrency); recovery needs only REST and must not wait.
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        fake_gemini.enqueue(Reply(["First answer."]))
        msg = await fake_discord.say(CHANNEL, ADA, f"{MENTION} start a thread")
        await until(lambda: bool(fake_discord.bot_messages(msg["id"])))
        await idle(service)
        settings = service.settings
    await leave_pending(settings, ThreadKey("discord", GUILD, CHANNEL, str(msg["id"])))
    fake_discord.hold_ready = asyncio.Event()
    fake_gemini.enqueue(Reply(["Recovered before READY."]))
    async with discord_service(fake_gemini, fake_discord, tmp_path, connect=False) as service:
        discord = service.adapters[0]

        def recovered() -> bool:
            return any(
                m["content"].endswith("Recovered before READY.")
                for m in fake_discord.bot_messages(msg["id"])
            )

        await until(recovered, limit=15)
        assert not discord.connected  # the gateway still holds READY back
        fake_discord.hold_ready.set()
        await until(lambda: discord.connected, limit=15)
    contents = [m["content"] for m in fake_discord.bot_messages(msg["id"])]
    assert contents == [
        "First answer.",
        "_Regenerated after a restart._\n\nRecovered before READY.",
    ]


async def test_a_reply_chains_pending_reply_is_recovered_into_the_chain(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    fake = FakeDiscord()
    fake.add_user(ADA, "ada")
    fake.can_create_threads = False  # the bot answers in reply chains
    await fake.start()
    try:
        fake_gemini.enqueue(Reply(["One."]))
        async with discord_service(fake_gemini, fake, tmp_path) as service:
            q = await fake.say(CHANNEL, ADA, f"{MENTION} start")
            await idle(service)
            settings = service.settings
        await leave_pending(settings, ThreadKey("discord", GUILD, CHANNEL, str(q["id"])))
        fake_gemini.enqueue(Reply(["Two."]), Reply(["Three."]))
        async with discord_service(fake_gemini, fake, tmp_path) as service:
            await until(lambda: len(fake.bot_messages(CHANNEL)) == 2)
            await idle(service)
            recovered = fake.bot_messages(CHANNEL)[-1]
            assert recovered["content"].endswith("Two.")
            assert recovered["message_reference"]["message_id"] == q["id"]  # in the chain
            await fake.say(CHANNEL, ADA, "and after that?", reference=recovered["id"])
            await until(lambda: len(fake.bot_messages(CHANNEL)) == 3)
            await idle(service)
        assert fake_gemini.generate_requests()[-1].texts() == [
            "[Ada] start",
            "One.",
            "[Ada] and then?",
            "Two.",
            "[Ada] and after that?",
        ]
    finally:
        await fake.close()
