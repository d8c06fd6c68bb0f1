"""The fake Discord itself, driven by a real discord.py client: history, permissions,
files, interactions, DMs and message flags behave as Discord's API does."""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import pytest
import yarl

from adapters.discord.ratelimits import bucket_wait
from tests.conftest import ADA, BOB
from tests.fakes.discord import BOT_ID, CHANNEL, TOKEN, FakeDiscord, is_ephemeral
from tests.fakes.discord_perms import READ_MESSAGE_HISTORY, ROLE_OVERWRITE, VIEW_CHANNEL
from tests.fakes.discord_wire import MIB
from tests.helpers import until

START = datetime(2026, 1, 1, tzinfo=UTC)
Connect = Callable[[], Awaitable[discord.Client]]


def png(width: int = 2, height: int = 1) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
async def connect(fake_discord: FakeDiscord) -> AsyncIterator[Connect]:
    """Log a discord.py client into the fake; it is READY (guild cached) when returned."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    running: list[tuple[discord.Client, asyncio.Task[None]]] = []

    async def make() -> discord.Client:
        discord.http.Route.BASE = fake_discord.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake_discord.gateway_url)
        intents = discord.Intents.default()
        intents.members = True  # so every member (not only the bot) is cached
        intents.message_content = True
        client = discord.Client(
            intents=intents, chunk_guilds_at_startup=False, guild_ready_timeout=0.05
        )
        await client.login(TOKEN)
        running.append((client, asyncio.create_task(client.connect(reconnect=False))))
        await asyncio.wait_for(client.wait_until_ready(), 10)
        return client

    try:
        yield make
    finally:
        for client, task in running:
            await client.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


def text_channel(client: discord.Client, cid: str = CHANNEL) -> discord.TextChannel:
    channel = client.get_channel(int(cid))
    assert isinstance(channel, discord.TextChannel)
    return channel


def history_calls(fake: FakeDiscord) -> int:
    return sum(1 for c in fake.calls if c.route == "history")


# -- history -------------------------------------------------------------------------


async def test_history_after_a_datetime_gets_exactly_the_window(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    seeded = fake_discord.seed(CHANNEL, count=5000, start=START, step=timedelta(seconds=1))
    assert discord.utils.snowflake_time(int(seeded[7]["id"])) == START + timedelta(seconds=7)
    assert seeded[7]["timestamp"] == "2026-01-01T00:00:07.000000+00:00"
    channel = text_channel(await connect())
    since = START + timedelta(seconds=1234.5)
    got = [m async for m in channel.history(limit=None, after=since)]
    assert [str(m.id) for m in got] == [m["id"] for m in seeded[1235:]]  # oldest first
    assert got[0].created_at == START + timedelta(seconds=1235)
    assert got[0].author.id == int(seeded[1235]["author"]["id"])
    assert history_calls(fake_discord) == 38  # 3,765 messages: 37 full pages and one of 65
    until = START + timedelta(seconds=1300)
    window = [m async for m in channel.history(limit=None, after=since, before=until)]
    assert [str(m.id) for m in window] == [m["id"] for m in seeded[1235:1300]]
    newest_first = channel.history(limit=None, after=since, oldest_first=False)
    assert [str(m.id) async for m in newest_first] == [m["id"] for m in seeded[:1234:-1]]


async def test_before_and_around_paging(fake_discord: FakeDiscord, connect: Connect) -> None:
    seeded = fake_discord.seed(
        CHANNEL, count=1200, start=START, step=timedelta(minutes=1), text=lambda i: f"m{i}"
    )
    client = await connect()
    channel = text_channel(client)
    anchor = discord.Object(id=int(seeded[1000]["id"]))
    got = [m async for m in channel.history(limit=250, before=anchor)]
    assert [m.content for m in got] == [f"m{i}" for i in range(999, 749, -1)]  # newest first
    assert history_calls(fake_discord) == 3
    latest = [m.content async for m in channel.history(limit=3)]
    assert latest == ["m1199", "m1198", "m1197"]
    raw = await client.http.logs_from(CHANNEL, 5, around=seeded[500]["id"])
    assert [m["content"] for m in raw] == ["m502", "m501", "m500", "m499", "m498"]
    raw = await client.http.logs_from(CHANNEL, 4, after=seeded[10]["id"])
    assert [m["content"] for m in raw] == ["m14", "m13", "m12", "m11"]  # newest first too
    default = await client.http.logs_from(CHANNEL, 50)
    assert len(default) == 50
    for bad in ({"limit": 0}, {"limit": 101}):
        with pytest.raises(discord.HTTPException) as err:
            await client.http.logs_from(CHANNEL, bad["limit"])
        assert (err.value.status, err.value.code) == (400, 50035)
    with pytest.raises(discord.HTTPException) as err:
        await client.http.logs_from(CHANNEL, 5, before=seeded[9]["id"], after=seeded[1]["id"])
    assert err.value.code == 50035


async def test_a_seeded_thread_with_an_attachment(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    step = timedelta(seconds=30)
    thread, msgs = await fake_discord.seed_thread(
        CHANNEL, "old talk", count=150, start=START, step=step, authors=[ADA, BOB]
    )
    att = fake_discord.add_attachment(msgs[3], "notes.txt", b"ship it", "text/plain")
    client = await connect()  # the thread comes with GUILD_CREATE
    channel = client.get_channel(int(thread["id"]))
    assert isinstance(channel, discord.Thread) and channel.parent_id == int(CHANNEL)
    got = [m async for m in channel.history(limit=None, oldest_first=True)]
    assert [str(m.id) for m in got] == [m["id"] for m in msgs]
    assert [m.author.id for m in got[:2]] == [int(ADA), int(BOB)]
    assert all(m.created_at == START + i * step for i, m in enumerate(got))
    assert int(thread["id"]) < int(msgs[0]["id"])
    [file] = got[3].attachments
    assert (file.filename, file.content_type, str(file.id)) == (
        "notes.txt",
        "text/plain",
        att["id"],
    )
    assert await file.read() == b"ship it"


# -- permissions -----------------------------------------------------------------------


async def test_a_channel_hidden_from_a_user(fake_discord: FakeDiscord, connect: Connect) -> None:
    client = await connect()
    guild = client.guilds[0]
    channel = text_channel(client)
    bob, ada = guild.get_member(int(BOB)), guild.get_member(int(ADA))
    assert bob is not None and ada is not None
    assert channel.permissions_for(bob).view_channel
    updated = asyncio.ensure_future(client.wait_for("guild_channel_update", timeout=5))
    await fake_discord.hide_channel(CHANNEL, from_user=BOB)
    await updated  # CHANNEL_UPDATE reached the client's cache
    assert not channel.permissions_for(bob).view_channel
    assert not channel.permissions_for(bob).read_message_history
    assert channel.permissions_for(ada).view_channel
    assert channel.permissions_for(guild.me).view_channel
    assert not fake_discord.can(BOB, CHANNEL, VIEW_CHANNEL)
    assert fake_discord.can(ADA, CHANNEL, VIEW_CHANNEL | READ_MESSAGE_HISTORY)


async def test_role_overwrites_known_before_connect(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    muted = "600000000000000009"
    await fake_discord.add_role(muted, "muted", 0, members=[ADA])
    await fake_discord.deny(CHANNEL, muted, VIEW_CHANNEL, kind=ROLE_OVERWRITE)
    await fake_discord.allow(CHANNEL, ADA, VIEW_CHANNEL)  # a member's own overwrite wins
    await fake_discord.deny(CHANNEL, BOB, READ_MESSAGE_HISTORY)
    thread, _ = await fake_discord.seed_thread(CHANNEL, "t", start=START)
    client = await connect()
    guild = client.guilds[0]
    bob, ada = guild.get_member(int(BOB)), guild.get_member(int(ADA))
    assert bob is not None and ada is not None
    assert [r.name for r in ada.roles] == ["@everyone", "gemini-admins", "muted"]
    channel = text_channel(client)
    assert channel.permissions_for(ada).view_channel
    assert channel.permissions_for(bob).view_channel
    assert not channel.permissions_for(bob).read_message_history
    sub = client.get_channel(int(thread["id"]))
    assert isinstance(sub, discord.Thread)
    assert not sub.permissions_for(bob).read_message_history  # threads follow their parent
    assert fake_discord.permissions(ADA, CHANNEL) & VIEW_CHANNEL
    assert not fake_discord.permissions(BOB, thread["id"]) & READ_MESSAGE_HISTORY


async def test_a_channel_hidden_from_the_bot(fake_discord: FakeDiscord, connect: Connect) -> None:
    fake_discord.seed(CHANNEL, count=3, start=START, step=timedelta(seconds=1))
    client = await connect()
    channel = text_channel(client)
    updated = asyncio.ensure_future(client.wait_for("guild_channel_update", timeout=5))
    await fake_discord.deny(CHANNEL, BOT_ID, READ_MESSAGE_HISTORY)
    await updated
    assert not channel.permissions_for(channel.guild.me).read_message_history
    assert [m async for m in channel.history(limit=10)] == []  # Discord: no messages at all
    updated = asyncio.ensure_future(client.wait_for("guild_channel_update", timeout=5))
    await fake_discord.hide_from_bot(CHANNEL)
    await updated
    assert not channel.permissions_for(channel.guild.me).view_channel
    with pytest.raises(discord.Forbidden) as err:
        [m async for m in channel.history(limit=10)]
    assert (err.value.status, err.value.code) == (403, 50001)
    with pytest.raises(discord.Forbidden):
        await channel.send("hello?")
    assert fake_discord.bot_messages(CHANNEL) == []


# -- files, flags and DMs -----------------------------------------------------------


async def test_a_file_the_bot_sends_is_stored_with_bytes_and_type(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    image = png(3, 2)
    channel = text_channel(await connect())
    sent = await channel.send("chart", file=discord.File(io.BytesIO(image), "a.png"))
    stored = fake_discord.messages[CHANNEL][str(sent.id)]
    [att] = stored["attachments"]
    assert (att["filename"], att["content_type"], att["size"]) == ("a.png", "image/png", len(image))
    assert (att["width"], att["height"]) == (3, 2)
    assert fake_discord.files[att["id"]] == image
    assert stored["content"] == "chart"
    assert sent.attachments[0].content_type == "image/png"
    assert await sent.attachments[0].read() == image  # through the fake CDN


async def test_an_oversized_file_gets_413(fake_discord: FakeDiscord, connect: Connect) -> None:
    channel = text_channel(await connect())
    with pytest.raises(discord.HTTPException) as err:
        await channel.send(file=discord.File(io.BytesIO(b"\0" * (10 * MIB + 1)), "big.bin"))
    assert (err.value.status, err.value.code) == (413, 40005)
    assert err.value.text == "Request entity too large"
    assert fake_discord.bot_messages(CHANNEL) == []
    ok = await channel.send(file=discord.File(io.BytesIO(b"\0" * (10 * MIB)), "max.bin"))
    assert ok.attachments[0].size == 10 * MIB


async def test_suppressed_embeds_are_kept_on_create_and_edit(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    channel = text_channel(await connect())
    sent = await channel.send(
        "see https://example.com", embed=discord.Embed(title="card"), suppress_embeds=True
    )
    stored = fake_discord.messages[CHANNEL][str(sent.id)]
    assert stored["flags"] & 4 and stored["embeds"] == []
    assert sent.flags.suppress_embeds
    edited = await sent.edit(content="still no preview", suppress=True)
    assert edited.flags.suppress_embeds and stored["content"] == "still no preview"
    await sent.edit(suppress=False)
    assert not stored["flags"] & 4


async def test_the_bot_opens_a_dm_for_a_long_answer(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    client = await connect()
    bob = await client.fetch_user(int(BOB))
    dm = await bob.create_dm()
    parts = ["a" * 2000, "b" * 1500]
    for part in parts:
        await dm.send(part)
    assert str(dm.id) == fake_discord.open_dm(BOB)
    assert [m["content"] for m in fake_discord.bot_messages(str(dm.id))] == parts
    with pytest.raises(discord.HTTPException) as err:
        await dm.send("c" * 2001)
    assert (err.value.status, err.value.code) == (400, 50035)
    fake_discord.closed_dms.add(BOB)
    with pytest.raises(discord.Forbidden) as refused:
        await dm.send("hello?")
    assert refused.value.code == 50007


# -- interactions --------------------------------------------------------------------


async def receive(client: discord.Client, run: Awaitable[object]) -> discord.Interaction:
    waiter = asyncio.ensure_future(client.wait_for("interaction", timeout=5))
    await run
    return await waiter


def raw(interaction: discord.Interaction) -> dict[str, Any]:
    """The interaction's `data` as Discord sent it."""
    return dict(interaction.data or {})


async def test_an_ephemeral_follow_up_is_recorded_with_flag_64(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    client = await connect()
    call = fake_discord.interact("ask", user=ADA, options=[{"name": "q", "type": 3, "value": "?"}])
    interaction = await receive(client, call)
    [inter] = fake_discord.interactions.values()
    assert raw(interaction)["options"][0]["value"] == "?"
    await interaction.response.defer(ephemeral=True, thinking=True)
    assert inter.original is not None and inter.original["flags"] == 64 | 128  # loading
    await interaction.followup.send("only for you")  # edits the loading message
    await interaction.followup.send("also private", ephemeral=True)
    await interaction.followup.send("for all", file=discord.File(io.BytesIO(png()), "p.png"))
    first, second, third = inter.followups
    assert first is inter.original and first["content"] == "only for you"
    assert first["flags"] == 64 and is_ephemeral(first) and is_ephemeral(second)
    assert second["flags"] == 64 and not is_ephemeral(third)
    assert third["attachments"][0]["content_type"] == "image/png"
    assert inter.user == ADA
    shown = [m.content async for m in text_channel(client).history(limit=10)]
    assert shown == ["for all"]  # ephemeral messages are not in the channel
    with pytest.raises(discord.HTTPException) as err:
        await interaction.followup.send("x" * 2001, ephemeral=True)
    assert (err.value.status, err.value.code) == (400, 50035)


async def test_an_ephemeral_reply_then_a_second_callback_is_refused(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    client = await connect()
    interaction = await receive(client, fake_discord.interact("help", user=BOB))
    await interaction.response.send_message("just you", ephemeral=True)
    [inter] = fake_discord.interactions.values()
    assert inter.original is not None and inter.original["flags"] == 64
    assert inter.callbacks[0]["data"]["flags"] == 64
    assert fake_discord.bot_messages(CHANNEL) == []
    again = discord.http.Route(
        "POST", "/interactions/{iid}/{token}/callback", iid=inter.id, token=inter.token
    )
    with pytest.raises(discord.HTTPException) as err:
        await client.http.request(again, json={"type": 4, "data": {"content": "again"}})
    assert (err.value.status, err.value.code) == (400, 40060)
    await interaction.edit_original_response(content="just you, edited")
    assert inter.original["content"] == "just you, edited" and inter.original["flags"] == 64
    await interaction.delete_original_response()
    assert inter.original is None and fake_discord.ephemeral == {}


async def test_a_deferred_answer_is_edited_in(fake_discord: FakeDiscord, connect: Connect) -> None:
    client = await connect()
    interaction = await receive(client, fake_discord.interact("ask", user=BOB))
    await interaction.response.defer()
    [inter] = fake_discord.interactions.values()
    assert inter.original is not None and inter.original["flags"] == 128
    with pytest.raises(discord.HTTPException) as err:
        await interaction.edit_original_response(content="y" * 2001)
    assert (err.value.status, err.value.code) == (400, 50035)
    done = await interaction.edit_original_response(
        content="done", attachments=[discord.File(io.BytesIO(b"csv,1"), "t.csv")]
    )
    assert inter.original["content"] == "done" and inter.original["flags"] == 0
    assert fake_discord.bot_messages(CHANNEL) == [inter.original]
    assert done.attachments[0].filename == "t.csv"
    assert inter.original["attachments"][0]["content_type"] == "text/csv"


async def test_a_message_context_menu_and_resolved_options(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    client = await connect()
    target = await fake_discord.say(CHANNEL, BOB, "summarise me")
    interaction = await receive(
        client, fake_discord.interact("Summarize attachments", user=ADA, target=target)
    )
    data = raw(interaction)
    assert data["type"] == 3 and data["target_id"] == target["id"]
    assert data["resolved"]["messages"][target["id"]]["content"] == "summarise me"
    att = fake_discord.attachment("n.txt", b"hi", "text/plain")
    options = [
        {"name": "file", "type": 11, "value": att["id"]},
        {"name": "who", "type": 6, "value": BOB},
    ]
    interaction = await receive(
        client, fake_discord.interact("summarize", user=ADA, options=options)
    )
    data = raw(interaction)
    assert data["type"] == 1
    assert data["resolved"]["attachments"][att["id"]]["filename"] == "n.txt"
    assert data["resolved"]["users"][BOB]["username"] == "bob"
    assert interaction.permissions.administrator  # Ada is in the admin role
    assert interaction.app_permissions.view_channel
    assert interaction.app_permissions.read_message_history


async def test_bucket_wait_reads_discord_py_record_of_the_headers(
    fake_discord: FakeDiscord, connect: Connect
) -> None:
    # A channel whose bucket Discord says is smaller than the usual 5 per 5 s: discord.py
    # records the X-RateLimit headers, and bucket_wait() reads that record.
    fake_discord.channel_limit = 2
    fake_discord.channel_window = 1.0
    client = await connect()
    channel = text_channel(client)
    assert bucket_wait(client.http, CHANNEL) == 0.0  # no record yet
    await channel.send("one")
    assert bucket_wait(client.http, CHANNEL) == 0.0  # one write left
    # The write that empties the bucket: discord.py holds it (and the bucket) until the
    # reset; meanwhile any other write would queue there, so the scheduler must wait.
    second = asyncio.ensure_future(channel.send("two"))
    await until(lambda: len(fake_discord.bot_messages(CHANNEL)) == 2, limit=5)
    wait = bucket_wait(client.http, CHANNEL)
    assert 0 < wait <= fake_discord.channel_window
    assert bucket_wait(client.http, "1") == 0.0  # another channel: nothing known
    await second
    assert bucket_wait(client.http, CHANNEL) == 0.0  # reset
