"""Discord sharding over replicas: two `gemini-bot run` processes with DISCORD_SHARD_COUNT=4,
one running shards 0,1 and the other 2,3, against one fake Discord whose gateway serves
`GET /gateway/bot` (4 shards) and routes each guild's events to its shard only.

Guilds are spread over all four shards (two or three each). A mention in every guild is
answered exactly once, by the replica that runs the guild's shard; each event of a guild
reached that shard's connection and no other; each replica's /healthz lists its two shards.

Each replica has its own SQLite DATA_DIR: nothing but the shard split keeps them apart, so
an event delivered to both would be answered twice and stored in both databases.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ADA
from tests.fakes.discord import BOT_ID, TOKEN, FakeDiscord, shard_of
from tests.fakes.gemini import FakeGemini, Recorded, Reply
from tests.helpers import until
from tests.service_process import ServiceProcess

SHARDS = 4
REPLICAS = {"a": (0, 1), "b": (2, 3)}
PER_SHARD = 2


def guild_on(shard: int, k: int) -> str:
    """A guild id Discord puts on `shard` of SHARDS."""
    return str(((10_000 * SHARDS + shard + SHARDS * k) << 22) | 7)


def answer(i: int) -> str:
    return f"Answer to question {i:02d}."


def conversations(db: Path) -> set[tuple[str, str]]:
    """(guild, thread) of every conversation a replica stored (read after it stopped)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT workspace_id, thread_id FROM conversations").fetchall()
    finally:
        con.close()
    return {(str(g), str(t)) for g, t in rows}


async def components(replica: ServiceProcess) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{replica.port}/healthz") as r,
    ):
        return r.status, (await r.json())["components"]


@pytest.fixture
async def replicas(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> AsyncIterator[dict[str, ServiceProcess]]:
    fake_discord.gateway_shards = SHARDS
    # Discord's IDENTIFY limit per 5 s (large bots get 16): a replica's two shards go at
    # once instead of 5 s apart.
    fake_discord.max_concurrency = SHARDS
    env = {
        "GEMINI_BASE_URL": fake_gemini.base_url,
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_URL": fake_discord.api_url,
        "DISCORD_GATEWAY_URL": fake_discord.gateway_url,
        "DISCORD_SHARD_COUNT": str(SHARDS),
    }
    procs = {
        name: ServiceProcess(tmp_path / name, {**env, "DISCORD_SHARD_IDS": ",".join(map(str, ids))})
        for name, ids in REPLICAS.items()
    }
    try:
        yield procs
    finally:
        await asyncio.gather(*(p.stop() for p in procs.values()))


async def test_two_replicas_with_two_shards_each_answer_each_guild_once(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, replicas: dict[str, ServiceProcess]
) -> None:
    channels: dict[str, str] = {}  # guild -> its text channel
    for shard in range(SHARDS):
        for k in range(PER_SHARD):
            gid = guild_on(shard, k)
            fake_discord.add_guild(gid, f"guild {shard}.{k}")
            channels[gid] = str(int(gid) + 1)
            fake_discord.add_channel(channels[gid], "general", guild=gid)
    for ch in fake_discord.channels.values():  # and the fake's own guild and channel
        channels.setdefault(ch["guild_id"], ch["id"])
    guilds = sorted(channels)
    assert {shard_of(g, SHARDS) for g in guilds} == set(range(SHARDS))

    def respond(rec: Recorded) -> Reply:
        m = re.search(r"question (\d\d)", rec.texts()[-1])
        assert m is not None, rec.texts()
        return Reply([answer(int(m.group(1)))])

    fake_gemini.responder = respond

    await asyncio.gather(*(p.start() for p in replicas.values()))  # each until /healthz 200
    assert fake_discord.connected_shards() == [(s, SHARDS) for s in range(SHARDS)]
    for name, ids in REPLICAS.items():
        status, parts = await components(replicas[name])
        assert status == 200
        assert parts == {
            "store": "ok",
            "discord": "connected",
            **{f"discord:shard:{i}": "connected" for i in ids},
        }

    asked = {}  # guild -> the mention's message id (= the thread the bot makes from it)
    for i, guild in enumerate(guilds):
        msg = await fake_discord.say(channels[guild], ADA, f"<@{BOT_ID}> question {i:02d}?")
        asked[guild] = str(msg["id"])

    def answered() -> bool:
        return all(
            [m["content"] for m in fake_discord.bot_messages(tid)] == [answer(i)]
            for i, tid in enumerate(asked.values())
        )

    await until(answered, limit=30, message="not every guild was answered")

    # Each guild's events went to its shard's connection only.
    seen: dict[str, set[tuple[int, int] | None]] = defaultdict(set)
    for shard, _event, guild in fake_discord.delivered:
        if guild is not None:
            seen[guild].add(shard)
    assert {g: seen[g] for g in guilds} == {g: {(shard_of(g, SHARDS), SHARDS)} for g in guilds}

    # Exactly once: one thread per mention; every conversation stored by the replica that
    # runs its guild's shard, and by no other.
    await asyncio.gather(*(p.stop() for p in replicas.values()))
    threads = [c for c in fake_discord.calls if c.route == "thread"]
    assert sorted(c.path.split("/")[4] for c in threads) == sorted(asked.values())
    assert answered()
    for name, ids in REPLICAS.items():
        mine = {(g, asked[g]) for g in guilds if shard_of(g, SHARDS) in ids}
        assert conversations(replicas[name].db) == mine, replicas[name].log()[-3000:]
