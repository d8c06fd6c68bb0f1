"""Discord sharding: the fake gateway's shard rules (raw websockets), and the service with
DISCORD_SHARD_COUNT / DISCORD_SHARD_IDS in-process (`auto`, /healthz per shard, a shard
that drops while the other keeps serving). Two replicas as processes: tests/e2e."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from adapters.discord.shards import IdentifyPacer, ShardedDiscordBot
from tests.adapters.discord_harness import discord_service, idle, until
from tests.conftest import ADA
from tests.fakes.discord import BOT_ID, CHANNEL, GUILD, TOKEN, FakeDiscord, shard_of
from tests.fakes.gemini import FakeGemini, Reply

MENTION = f"<@{BOT_ID}>"


def guild_on(shard: int, count: int, k: int = 0) -> str:
    """A guild id Discord puts on `shard` of `count`."""
    return str(((10_000 * count + shard + count * k) << 22) | 7)


def add_guilds(fake: FakeDiscord, count: int) -> dict[int, str]:
    """A guild with a text channel on every shard GUILD is not on; shard -> channel id."""
    channels = {shard_of(GUILD, count): CHANNEL}
    for shard in range(count):
        if shard not in channels:
            gid = guild_on(shard, count)
            fake.add_guild(gid, f"guild {shard}")
            channels[shard] = str(int(gid) + 1)
            fake.add_channel(channels[shard], "general", guild=gid)
    return channels


# -- the fake gateway -------------------------------------------------------------------


class Gateway:
    """Raw gateway connections to the fake, as a client library would make them."""

    def __init__(self, fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
        self.fake = fake
        self.http = http

    async def identify(self, shard: Any = None) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(self.fake.gateway_url)
        hello = await ws.receive_json()
        assert hello["op"] == 10
        d: dict[str, Any] = {"token": TOKEN, "intents": 0, "properties": {}}
        if shard is not None:
            d["shard"] = shard
        await ws.send_json({"op": 2, "d": d})
        return ws

    @staticmethod
    async def events(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
        return [json.loads((await ws.receive(timeout=5)).data) for _ in range(n)]


@pytest.fixture
async def gateway(fake_discord: FakeDiscord) -> AsyncIterator[Gateway]:
    async with aiohttp.ClientSession() as http:
        yield Gateway(fake_discord, http)


async def test_gateway_bot_recommends_shards(fake_discord: FakeDiscord) -> None:
    fake_discord.gateway_shards = 4
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"}) as http,
        http.get(f"{fake_discord.api_url}/gateway/bot") as r,
    ):
        body = await r.json()
    assert body["url"] == fake_discord.gateway_url and body["shards"] == 4
    assert set(body["session_start_limit"]) == {
        "total",
        "remaining",
        "reset_after",
        "max_concurrency",
    }


async def test_each_shard_gets_its_guilds_and_their_events_only(
    fake_discord: FakeDiscord, gateway: Gateway
) -> None:
    channels = add_guilds(fake_discord, 2)
    shards = [await gateway.identify([i, 2]) for i in range(2)]
    for i, ws in enumerate(shards):
        ready, create = await gateway.events(ws, 2)
        assert ready["t"] == "READY" and ready["d"]["shard"] == [i, 2]
        owned = [g["id"] for g in ready["d"]["guilds"]]
        assert owned == [g for g in fake_discord.guild_ids if shard_of(g, 2) == i]
        assert create["t"] == "GUILD_CREATE" and create["d"]["id"] == owned[0]
    assert fake_discord.connected_shards() == [(0, 2), (1, 2)]
    unsharded = await gateway.identify()
    ready, *creates = await gateway.events(unsharded, 3)
    assert "shard" not in ready["d"] and len(creates) == 2  # every guild, as before

    for shard, cid in channels.items():
        msg = await fake_discord.say(cid, ADA, f"hello shard {shard}")
        (got,) = await gateway.events(shards[shard], 1)
        assert got["t"] == "MESSAGE_CREATE" and got["d"]["id"] == msg["id"]
        (seen,) = await gateway.events(unsharded, 1)
        assert seen["d"]["id"] == msg["id"]
    dm = fake_discord.open_dm(ADA)
    await fake_discord.say(dm, ADA, "a DM goes to shard 0")
    (got,) = await gateway.events(shards[0], 1)
    assert got["d"]["channel_id"] == dm
    events = [(s, g) for s, e, g in fake_discord.delivered if e == "MESSAGE_CREATE"]
    assert events.count(((0, 2), None)) == 1 and ((1, 2), None) not in events
    for shard, cid in channels.items():
        guild = fake_discord.channels[cid]["guild_id"]
        assert [s for s, g in events if g == guild] == [(shard, 2), None]
    for ws in [*shards, unsharded]:
        await ws.close()


@pytest.mark.parametrize("shard", [[2, 2], [-1, 2], [0, 0], [0], "0,2", [True, 2]])
async def test_an_invalid_shard_is_refused_with_4010(
    fake_discord: FakeDiscord, gateway: Gateway, shard: Any
) -> None:
    ws = await gateway.identify(shard)
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4010
    assert fake_discord.refusals == [(shard, 4010)] and fake_discord.identifies == 0


async def test_a_shard_already_connected_is_refused(
    fake_discord: FakeDiscord, gateway: Gateway
) -> None:
    first = await gateway.identify([0, 2])
    (ready,) = await gateway.events(first, 1)
    assert ready["t"] == "READY"
    second = await gateway.identify([0, 2])
    msg = await second.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4010
    await first.close()
    await until(lambda: not fake_discord.connected_shards())
    again = await gateway.identify([0, 2])  # free once its session is gone
    (ready,) = await gateway.events(again, 1)
    assert ready["t"] == "READY"
    await again.close()


async def test_too_many_guilds_for_one_session_is_4011(
    fake_discord: FakeDiscord, gateway: Gateway
) -> None:
    add_guilds(fake_discord, 2)
    fake_discord.max_guilds_per_session = 1
    ws = await gateway.identify()
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4011
    sharded = await gateway.identify([1, 2])
    (ready,) = await gateway.events(sharded, 1)
    assert ready["t"] == "READY" and len(ready["d"]["guilds"]) == 1
    await sharded.close()


# -- IDENTIFY pacing --------------------------------------------------------------------


def test_identify_pacing_follows_max_concurrency() -> None:
    one = IdentifyPacer(max_concurrency=1, window=5)
    assert [one.reserve(i, now=0) for i in range(3)] == [0, 5, 10]
    assert one.reserve(0, now=20) == 0  # long after: at once
    many = IdentifyPacer(max_concurrency=2, window=5)
    assert [many.reserve(i, now=0) for i in range(4)] == [0, 0, 5, 5]
    assert many.reserve(0, now=1) == 9  # bucket 0's next slot is at 10


# -- the service, sharded ---------------------------------------------------------------


async def healthz(service: Any) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{service.http.port}/healthz") as r,
    ):
        return r.status, (await r.json())["components"]


async def test_auto_reads_the_shard_count_from_gateway_bot(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path
) -> None:
    fake_discord.gateway_shards = 2
    fake_discord.max_concurrency = 2  # both shards IDENTIFY at once
    add_guilds(fake_discord, 2)
    async with discord_service(
        fake_gemini, fake_discord, tmp_path, DISCORD_SHARD_COUNT="auto"
    ) as svc:
        discord = svc.adapters[0]
        assert isinstance(discord.bot, ShardedDiscordBot) and discord.bot.shard_count == 2
        assert [c.path for c in fake_discord.calls].count("/gateway/bot") == 1
        assert fake_discord.connected_shards() == [(0, 2), (1, 2)]
        assert await healthz(svc) == (
            200,
            {
                "store": "ok",
                "discord": "connected",
                "discord:shard:0": "connected",
                "discord:shard:1": "connected",
            },
        )


async def test_no_shard_settings_keep_one_unsharded_connection(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path
) -> None:
    async with discord_service(fake_gemini, fake_discord, tmp_path) as svc:
        assert type(svc.adapters[0].bot).__name__ == "DiscordBot"
        assert await healthz(svc) == (200, {"store": "ok", "discord": "connected"})
    assert "/gateway/bot" not in [c.path for c in fake_discord.calls]
    assert fake_discord.connected_shards() == [] and fake_discord.identifies == 1


async def test_a_shard_down_makes_healthz_unhealthy_while_the_other_serves(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path
) -> None:
    fake_discord.max_concurrency = 2
    channels = add_guilds(fake_discord, 2)
    async with discord_service(
        fake_gemini, fake_discord, tmp_path, DISCORD_SHARD_COUNT=2, DISCORD_SHARD_IDS="0,1"
    ) as svc:
        down, up = 1, 0
        await fake_discord.drop_connections(refuse_for=1.0, shards={down})
        await until(lambda: svc.adapters[0].health_parts()[f"discord:shard:{down}"] is False)
        status, components = await healthz(svc)
        assert status == 503
        assert components[f"discord:shard:{down}"] == "disconnected"
        assert components[f"discord:shard:{up}"] == "connected"
        # The other shard's guilds are still answered (while this one reconnects).
        await mention_is_answered(svc, fake_discord, fake_gemini, channels[up])
        await until(lambda: svc.adapters[0].connected, limit=20)
        assert (await healthz(svc))[0] == 200
        await mention_is_answered(svc, fake_discord, fake_gemini, channels[down])


async def mention_is_answered(
    service: Any, fake: FakeDiscord, gemini: FakeGemini, channel: str
) -> None:
    gemini.enqueue(Reply([f"Answer in {channel}."]))
    msg = await fake.say(channel, ADA, f"{MENTION} are you there?")
    await until(lambda: bool(fake.bot_messages(msg["id"])), limit=15)
    await idle(service)
    assert [m["content"] for m in fake.bot_messages(msg["id"])] == [f"Answer in {channel}."]
